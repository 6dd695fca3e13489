"""The sales hand-off: the summary sales reads, built from the lead and its event log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nurture.models import Event, EventKind, Handoff, Lead
from nurture.score import rules as scoring
from nurture.score.history import Line, history, why
from nurture.settings import Settings


@dataclass(frozen=True)
class Click:
    url: str
    action: str
    points: int
    when: str


def clicks(lines: Sequence[Line]) -> list[Click]:
    """The clicks that make the lead's score now (people's, not expired), with the URL each one went to."""
    return [Click(line.url, line.event.action or "content", line.event.points,
                  line.event.occurred_at.strftime("%Y-%m-%d %H:%M"))
            for line in lines if line.event.kind is EventKind.CLICK and line.counts and line.url is not None]


def context(settings: Settings, lead: Lead, handoff: Handoff, events: Sequence[Event], profile_url: str,
            now: datetime, handoffs: Sequence[Handoff] = (), follow_up: str | None = None) -> dict[str, Any]:
    """The variables of the hand-off mail, the history read at `now` (expired points do not count);
    `handoffs`, the lead's hand-offs, tell how its earlier cycles ended; `follow_up` (reminder, escalation)
    says the mail is one, for a hand-off that has no outcome yet."""
    cycle_events = [event for event in events if event.cycle == handoff.cycle]
    lines = history(cycle_events, handoff.cycle, settings.scoring, now)
    threshold = scoring.threshold(settings.scoring, lead.customer, lead.industry)
    return {
        "lead": lead,
        "handoff": handoff,
        "follow_up": follow_up,
        "score": handoff.score,
        "threshold": threshold,
        "why": why(lines, handoff.cycle, threshold, settings.scoring, handoffs),
        "events": [event for event in cycle_events if event.points or not event.counted],
        "clicks": clicks(lines),
        "profile_url": profile_url,
        "company": settings.mail.company,
        "website": settings.mail.website,
        "sales": settings.sales,
    }
