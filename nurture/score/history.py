"""A lead's score history as people read it: each event, the link it names, and whether it makes the score.

The CLI (`leads show`), the profile pages and the hand-off mail all show this one history, so that the
points listed as counted add up to the score shown beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.models import Event, EventKind, Handoff
from nurture.score.rules import scope
from nurture.settings import Scoring


@dataclass(frozen=True)
class Line:
    event: Event
    url: str | None  # where a click went (the link it kept: Event.url)
    counts: bool  # its points make the score now
    reason: str | None  # why not: the judge's reason, a person's, expiry or an earlier cycle


def history(events: Sequence[Event], cycle: int, rules: Scoring, now: datetime) -> list[Line]:
    """The lines of a lead in `cycle`, at `now`, in the order of `events`."""
    within = scope(rules, cycle, now)
    lines = []
    for event in events:
        reason = event.reason if not event.counted else within.excludes(event.cycle, event.occurred_at)
        url = event.url if event.kind is EventKind.CLICK else None
        lines.append(Line(event, url, event.counted and reason is None, reason))
    return lines


def score(lines: Sequence[Line]) -> int:
    """The sum of the points that count: the lead's score, as the store keeps it."""
    return sum(line.event.points for line in lines if line.counts)


@dataclass(frozen=True)
class Why:
    """Why a lead went to sales, as sales reads it: the events that made its score (the one that took it
    over its threshold, or the request that qualifies at once, first), what it asked for (the detail the
    website posted: a form's message, a page, a download), what it read (its clicks), and how earlier
    cycles ended."""

    crossed: Line | None
    reasons: list[Line]
    asked: list[Line]
    read: list[Line]
    earlier: list[Handoff]


def why(lines: Sequence[Line], cycle: int, threshold: int, rules: Scoring, handoffs: Sequence[Handoff] = ()) -> Why:
    """`Why` of the lines of one cycle (those of `history`)."""
    mine = [line for line in lines if line.event.cycle == cycle]
    crossed, total = None, 0
    for line in mine:
        if not line.counts:
            continue
        total += line.event.points
        rule = rules.external.get(line.event.action or "") if line.event.kind is EventKind.EXTERNAL else None
        if total >= threshold or (rule is not None and rule.qualify):
            crossed = line
            break
    scoring = sorted((line for line in mine if line.counts and line.event.points > 0 and line is not crossed),
                     key=lambda line: -line.event.points)
    asked = [line for line in mine if line.event.kind is EventKind.EXTERNAL and line.event.detail]
    read = [line for line in mine if line.event.kind is EventKind.CLICK and line.counts and line.url]
    earlier = [handoff for handoff in handoffs if handoff.cycle < cycle]
    return Why(crossed, ([crossed] if crossed else []) + scoring, asked, read, earlier)
