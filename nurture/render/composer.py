"""Composing one send's message: the lead's variables rendered into MIME with its tracked links.

A composer is what the delivery run and its builder are given to build messages: it holds the compiled
templates, the URL signer and the sender's settings, and does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from nurture import program
from nurture.models import FeedItem, Lead
from nurture.render.cache import TemplateCache
from nurture.render.message import Envelope, build, dkim_signed, domain_of, message_id
from nurture.render.templates import Renderer
from nurture.render.variables import email_variables
from nurture.settings import Settings
from nurture.track.tokens import Signer
from nurture.track.urls import ReturnPaths, Urls


class Addressed(Protocol):
    """What composing needs of a send: a queued one, or one claimed for delivery."""

    @property
    def id(self) -> int | None: ...
    @property
    def template(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


@dataclass
class Composer:
    settings: Settings
    renderer: Renderer
    urls: Urls
    return_paths: ReturnPaths | None = None  # with bounces.domain set: each send's own return path (VERP)

    @classmethod
    def from_settings(cls, settings: Settings) -> Composer:
        """The templates of `settings` (compiled on first use, kept in its cache_dir) and its signing key."""
        renderer = Renderer(settings.templates_dir, settings.program.default_locale,
                            cache=TemplateCache.under(settings.cache_dir))
        signer = Signer(settings.secret_key, settings.old_secret_keys)
        bounces = settings.bounces
        return_paths = ReturnPaths(bounces.local_part, bounces.domain, signer) if bounces.domain else None
        return cls(settings, renderer, Urls(settings.base_url, signer), return_paths)

    @property
    def domain(self) -> str:
        return domain_of(self.settings.mail.from_email)

    def signed(self, envelope: Envelope) -> Envelope:
        """The envelope with a DKIM signature where a key is configured (mail.dkim_selector and the key)."""
        if not self.settings.dkim_key:
            return envelope
        return dkim_signed(envelope, self.settings.mail.dkim_selector, self.settings.mail.dkim_domain or self.domain,
                           self.settings.dkim_key)

    def warm(self) -> None:
        """Compile the program's templates in the default locale before the first message needs them."""
        self.renderer.warm((program.CONFIRMATION, program.DIGEST), self.settings.program.default_locale)

    def compose_reconfirmation(self, lead: Lead, now: datetime) -> Envelope:
        """The confirmation again, for an unsubscribed lead that signed up anew: it asks, echoes nothing typed
        but the address, and tracks nothing (no send is recorded: consent comes only with the click)."""
        assert lead.id is not None
        asking = lead.model_copy(update={"confirmed_at": None})
        unsubscribe = self.urls.unsubscribe(lead.id)
        variables = email_variables(self.settings, asking, [], unsubscribe_url=unsubscribe,
                                    preferences_url=self.urls.preferences(lead.id),
                                    confirm_url=self.urls.confirm(lead.id))
        rendered = self.renderer.render(program.CONFIRMATION, lead.locale, variables)
        mid = message_id(self.settings.secret_key, f"reconfirm{int(now.timestamp())}", lead.id, self.domain)
        return self.signed(build(
            sender=self.settings.mail.from_email, to=lead.email, subject=rendered.subject, html=rendered.html,
            text=rendered.text, message_id=mid, date=now,
            headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}))

    def compose(self, send: Addressed, lead: Lead, items: list[FeedItem]) -> tuple[Envelope, dict[str, Any]]:
        """Render and build one send's message; also return what the outbox keeps about it (its
        Message-ID, subject and links). Deterministic: a send built again carries the same message."""
        assert send.id is not None and lead.id is not None
        send_id = send.id
        unsubscribe = self.urls.unsubscribe(lead.id, send_id)
        variables = email_variables(self.settings, lead, items, unsubscribe_url=unsubscribe,
                                    preferences_url=self.urls.preferences(lead.id),
                                    confirm_url=self.urls.confirm(lead.id))
        tracked = self.settings.mail.tracking and lead.tracking  # else no pixel and plain links
        rendered = self.renderer.render(send.template, lead.locale, variables,
                                        url_for=(lambda link: self.urls.click(send_id, link)) if tracked else None,
                                        pixel_url=self.urls.pixel(send_id) if tracked else None)
        mid = message_id(self.settings.secret_key, "send", send_id, self.domain)
        envelope = build(
            sender=self.settings.mail.from_email, to=lead.email, subject=rendered.subject,
            html=rendered.html, text=rendered.text, message_id=mid, date=send.created_at,
            return_path=self.return_paths.address(send_id) if self.return_paths else None,
            headers={"List-Unsubscribe": f"<{unsubscribe}>",
                     "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        )
        envelope = self.signed(envelope)
        description = {"message_id": mid, "subject": rendered.subject,
                       "links": [link.as_dict() for link in rendered.links]}
        return envelope, description
