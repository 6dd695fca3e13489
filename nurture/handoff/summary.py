"""The sales hand-off: the summary sales reads, built from the lead and its event log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nurture.models import Event, EventKind, Handoff, Lead, Send, link_at
from nurture.score import rules as scoring
from nurture.score.history import Line, history, why
from nurture.settings import Settings


@dataclass(frozen=True)
class Click:
    url: str
    action: str
    points: int
    when: str


def clicks(lines: Sequence[Line], sends: Sequence[Send]) -> list[Click]:
    """The clicks that make the lead's score now (people's, not expired), with the URL each one went to."""
    links = {send.id: send.links for send in sends}
    found = []
    for line in lines:
        event = line.event
        link = link_at(links.get(event.send_id), event.link)
        if event.kind is EventKind.CLICK and line.counts and link is not None:
            found.append(Click(link["url"], link.get("action") or "content", event.points,
                               event.occurred_at.strftime("%Y-%m-%d %H:%M")))
    return found


def context(settings: Settings, lead: Lead, handoff: Handoff, events: Sequence[Event],
            sends: Sequence[Send], profile_url: str, now: datetime, handoffs: Sequence[Handoff] = (),
            follow_up: str | None = None) -> dict[str, Any]:
    """The variables of the hand-off mail, the history read at `now` (expired points do not count);
    `handoffs`, the lead's hand-offs, tell how its earlier cycles ended; `follow_up` (reminder, escalation)
    says the mail is one, for a hand-off that has no outcome yet."""
    cycle_events = [event for event in events if event.cycle == handoff.cycle]
    lines = history(cycle_events, sends, handoff.cycle, settings.scoring, now)
    threshold = scoring.threshold(settings.scoring, lead.customer, lead.industry)
    return {
        "lead": lead,
        "handoff": handoff,
        "follow_up": follow_up,
        "score": handoff.score,
        "threshold": threshold,
        "why": why(lines, handoff.cycle, threshold, settings.scoring, handoffs),
        "events": [event for event in cycle_events if event.points or not event.counted],
        "clicks": clicks(lines, sends),
        "profile_url": profile_url,
        "company": settings.mail.company,
        "website": settings.mail.website,
        "sales": settings.sales,
    }
