"""What a template sees: the lead, its items, the calls to action and the URLs of the email."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nurture.models import FeedItem, Lead
from nurture.render.templates import TrackedHtml, TrackedText
from nurture.render.textpart import text_and_links
from nurture.settings import Settings


@dataclass(frozen=True)
class ItemView:
    title: str
    link: str
    summary: TrackedHtml  # sanitized when the feed was read; its links are tracked when printed
    summary_text: TrackedText
    published: datetime
    feed: str


def item_view(item: FeedItem) -> ItemView:
    return ItemView(item.title, item.link, TrackedHtml.of(item.summary),
                    TrackedText.of(*text_and_links(item.summary)), item.published, item.feed)


def email_variables(settings: Settings, lead: Lead, items: list[FeedItem], **urls: str) -> dict[str, Any]:
    """The variables of a nurture email for one lead."""
    return {
        "lead": lead,
        "items": [item_view(item) for item in items],
        "company": settings.mail.company,
        "website": settings.mail.website,
        "postal_address": settings.mail.postal_address,
        "cta": settings.mail.calls_to_action,
        **urls,
    }


def sample_lead(email: str = "sample@example.com") -> Lead:
    """A lead for previews and lint when no real one is named."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Lead(id=0, email=email, first_name="Sam", last_name="Sample", company="Example Corp",
                industry="finance", interests=["cloud", "security"], cycle_started_at=now, created_at=now,
                confirmed_at=now)
