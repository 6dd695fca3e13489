"""A template rendered for a real lead, to look at or to mail to oneself: nothing is stored or scored.

A preview is what the lead would get next, with one difference: its links lead straight to their
targets and it has no open pixel, so opening or clicking it records nothing, and its unsubscribe and
preference links carry no token, so a click (or a mail client's one-click unsubscribe) cannot act on
the lead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from nurture import program
from nurture.content import digest as content
from nurture.content.catalog import load_catalog
from nurture.models import Lead
from nurture.render.cache import TemplateCache
from nurture.render.message import Envelope, build, domain_of, message_id
from nurture.render.templates import Rendered, Renderer
from nurture.render.variables import email_variables
from nurture.send.mailer import Mailer
from nurture.settings import Settings
from nurture.store import Store


@dataclass(frozen=True)
class Preview:
    lead: Lead
    rendered: Rendered
    note: str | None = None  # why this email would not go out as it is


def preview(settings: Settings, store: Store, template: str, email: str, renderer: Renderer | None = None) -> Preview:
    """Render `template` for the lead with this address, with the items its next digest would carry."""
    lead = store.lead_by_email(email)
    catalog = load_catalog(settings.feeds_file)
    items = content.digest_items(store, catalog, lead, settings.program.items_per_digest)
    base = settings.base_url
    variables = email_variables(settings, lead, items, unsubscribe_url=f"{base}/u/preview",
                                preferences_url=f"{base}/p/preview", confirm_url=f"{base}/confirm/preview")
    renderer = renderer or Renderer(settings.templates_dir, settings.program.default_locale,
                                    cache=TemplateCache.under(settings.cache_dir))
    rendered = renderer.render(template, lead.locale, variables)
    return Preview(lead, rendered, _note(settings, template, len(items)))


def _note(settings: Settings, template: str, items: int) -> str | None:
    wanted = settings.program.min_new_items
    if template == program.DIGEST and items < wanted:
        return (f"the lead has {items} new matching items, fewer than program.min_new_items ({wanted}): "
                "its digest would be skipped")
    return None


def as_message(settings: Settings, shown: Preview, to: str, now: datetime) -> Envelope:
    """The preview as one real message to `to` (the marketer), marked as a test in its headers."""
    rendered = shown.rendered
    mid = message_id(settings.secret_key, "test", time.time_ns(), domain_of(settings.mail.from_email))
    return build(sender=settings.mail.from_email, to=to, subject=rendered.subject, html=rendered.html,
                 text=rendered.text, message_id=mid, date=now,
                 headers={"X-Nurture-Test": f"preview for lead {shown.lead.id}",
                          "List-Unsubscribe": f"<{settings.base_url}/u/preview>"})


async def send_test(settings: Settings, store: Store, mailer: Mailer, template: str, email: str,
                    to: str) -> tuple[Preview, Envelope]:
    """Mail the preview of `template` for a lead to `to`; no send, event or score is recorded."""
    shown = preview(settings, store, template, email)
    envelope = as_message(settings, shown, to, datetime.now(UTC))
    try:
        await mailer.send(envelope)
    finally:
        await mailer.close()
    return shown, envelope
