"""A lead's score history as people read it: each event, the link it names, and whether it makes the score.

The CLI (`leads show`), the profile pages and the hand-off mail all show this one history, so that the
points listed as counted add up to the score shown beside them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.models import Event, Send, link_at
from nurture.score.rules import scope
from nurture.settings import Scoring


@dataclass(frozen=True)
class Line:
    event: Event
    url: str | None  # where a click went
    counts: bool  # its points make the score now
    reason: str | None  # why not: the judge's reason, a person's, expiry or an earlier cycle


def history(events: Sequence[Event], sends: Sequence[Send], cycle: int, rules: Scoring, now: datetime) -> list[Line]:
    """The lines of a lead in `cycle`, at `now`, in the order of `events`."""
    links = {send.id: send.links for send in sends}
    within = scope(rules, cycle, now)
    lines = []
    for event in events:
        link = link_at(links.get(event.send_id), event.link)
        reason = event.reason if not event.counted else within.excludes(event.cycle, event.occurred_at)
        lines.append(Line(event, str(link["url"]) if link else None, event.counted and reason is None, reason))
    return lines


def score(lines: Sequence[Line]) -> int:
    """The sum of the points that count: the lead's score, as the store keeps it."""
    return sum(line.event.points for line in lines if line.counts)
