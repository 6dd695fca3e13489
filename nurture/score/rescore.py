"""Replaying the event log under (new) rules: what each lead would score, and who would change stage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.models import Event, Lead, Send, Stage, link_at
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


def rescore(store: Store, rules: Scoring, now: datetime, dry_run: bool) -> list[Change]:
    """Score every lead under `rules`; unless dry_run, store the new points and qualify who now qualifies."""
    changes = []
    for lead in store.leads(limit=10_000_000):
        assert lead.id is not None
        points, score = replay(lead, store.events_of(lead.id), store.sends_of(lead.id), rules, now)
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
