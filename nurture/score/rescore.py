"""Replaying the event log under (new) rules: what each lead would score, and who would change stage."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nurture.models import Event, Handoff, Lead, Outcome, Send, Stage, link_at
from nurture.score import rules as scoring
from nurture.settings import Scoring
from nurture.store import Store


@dataclass(frozen=True)
class Change:
    email: str
    stage: Stage
    old_score: int
    new_score: int
    would_qualify: bool  # an MQL that reaches its threshold under the new rules
    would_drop: bool  # an SQL that would no longer reach it (sales keeps it; this is only reported)


def replay(lead: Lead, events: Sequence[Event], sends: Sequence[Send], rules: Scoring,
           now: datetime) -> tuple[list[tuple[int, int]], int]:
    """New points for each event and the resulting score (pure)."""
    by_send = {send.id: send for send in sends}
    points = []
    for event in events:
        send = by_send.get(event.send_id)
        link = link_at(send.links if send else None, event.link)
        assert event.id is not None
        points.append((event.id, scoring.points_of(event.kind, event.action, link, send.step if send else None,
                                                   rules)))
    within = scoring.scope(rules, lead.cycle, now)
    worth = dict(points)
    score = sum(worth[e.id or 0] for e in events if e.counted and within.excludes(e.cycle, e.occurred_at) is None)
    return points, score


def crossings(lead: Lead, events: Sequence[Event], points: Mapping[int, int], rules: Scoring) -> dict[int, datetime]:
    """For each cycle of the lead's history, when its score would first have reached its threshold (or it
    asked for sales: a form, a call back where that qualifies) had `points` been what its events earned
    (pure). Events are taken as they were counted; points expire and cycles reset as `rules` say."""
    line = scoring.threshold(rules, lead.customer, lead.industry)
    window: deque[tuple[datetime, int, int]] = deque()  # (when, points, cycle) of the counted events in scope
    score, reached = 0, {}
    for event in sorted((e for e in events if e.counted), key=lambda e: (e.occurred_at, e.id or 0)):
        if rules.reset_on_recycle:
            while window and window[0][2] < event.cycle:
                score -= window.popleft()[1]
        if rules.expiry_days:
            while window and window[0][0] < event.occurred_at - timedelta(days=rules.expiry_days):
                score -= window.popleft()[1]
        worth = points.get(event.id or 0, event.points)
        window.append((event.occurred_at, worth, event.cycle))
        score += worth
        if event.cycle not in reached and (score >= line or scoring.asks(event.kind, event.action, rules)):
            reached[event.cycle] = event.occurred_at
    return reached


@dataclass
class Replayed:
    """The funnel the rules would have produced on the stored history, next to what happened: leads sent
    to sales, and of the hand-offs sales decided, the won ones the rules keep or miss and the others
    (lost, no result, not a fit) they still send or spare; `new`: leads they would send that never went."""

    leads: int = 0
    sql_then: int = 0
    sql_now: int = 0
    won_kept: int = 0
    won_missed: int = 0
    others_sent: int = 0
    others_spared: int = 0
    new: int = 0

    def add(self, reached: Mapping[int, datetime], handoffs: Sequence[Handoff]) -> None:
        self.leads += 1
        self.sql_then += bool(handoffs)
        self.sql_now += bool(reached)
        self.new += bool(reached) and not handoffs
        for handoff in handoffs:
            if handoff.outcome is None:
                continue
            kept = handoff.cycle in reached
            if handoff.outcome is Outcome.WON:
                self.won_kept += kept
                self.won_missed += not kept
            else:
                self.others_sent += kept
                self.others_spared += not kept


def rescore(store: Store, rules: Scoring, now: datetime, dry_run: bool,
            replayed: Replayed | None = None) -> list[Change]:
    """Score every lead under `rules`; unless dry_run, store the new points and qualify who now qualifies.
    `replayed` gathers the funnel the rules would have produced over the whole history."""
    changes = []
    for lead in store.leads(limit=10_000_000):
        assert lead.id is not None
        events = store.events_of(lead.id)
        points, score = replay(lead, events, store.sends_of(lead.id), rules, now)
        if replayed is not None and lead.erased_at is None:  # an erased lead is nobody to send to sales
            replayed.add(crossings(lead, events, dict(points), rules), store.handoffs_of(lead.id))
        line = scoring.threshold(rules, lead.customer, lead.industry)
        change = Change(lead.email, lead.stage, lead.score, score,
                        would_qualify=lead.stage is Stage.MQL and lead.suppressed is None and score >= line,
                        would_drop=lead.stage is Stage.SQL and score < line)
        if score != lead.score or change.would_qualify or change.would_drop:
            changes.append(change)
        if not dry_run:
            store.repoint(points)
            store.rescore(lead.id, rules, now)
    return changes
