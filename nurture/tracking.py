"""Opens, clicks, unsubscribes and preference changes, from a verified token to a recorded event.

The server's handlers parse the request and call these; the decisions (is it a machine, what is the
credit) are made by the pure functions of nurture.machines and nurture.scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture import machines, scoring
from nurture.errors import InputError, TokenError
from nurture.feeds import Catalog
from nurture.models import Event, EventKind, Handoff, Lead, Outcome, Send, Suppression
from nurture.settings import Settings
from nurture.store import Hit, Recorded, Store
from nurture.tokens import Purpose, Signer


@dataclass(frozen=True)
class Request:
    """What the server knows about one hit."""

    method: str
    user_agent: str
    client: str | None
    at: datetime


@dataclass(frozen=True)
class Profile:
    lead: Lead
    handoff: Handoff | None
    events: list[Event]
    sends: list[Send]


class Tracking:
    def __init__(self, settings: Settings, store: Store, catalog: Catalog):
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.signer = Signer(settings.secret_key)

    def open(self, token: str, request: Request) -> Recorded:
        send = self._send(self.signer.verify(token, Purpose.OPEN).subject)
        credit = scoring.credit_open(send.id or 0, self.settings.scoring)
        return self.store.record(self._hit(send, EventKind.OPEN, credit, request, None, None), self.settings.scoring)

    def click(self, token: str, request: Request) -> tuple[str, Recorded]:
        """Record a click and return where it goes: always the URL stored with the send."""
        claim = self.signer.verify(token, Purpose.CLICK)
        send = self._send(claim.subject)
        if claim.link >= len(send.links):
            raise TokenError("no such link in this email")
        link = send.links[claim.link]
        credit = scoring.credit_click(send.id or 0, claim.link, link, self.settings.scoring)
        hit = self._hit(send, EventKind.CLICK, credit, request, claim.link, link.get("action"))
        return link["url"], self.store.record(hit, self.settings.scoring)

    def _hit(self, send: Send, kind: EventKind, credit: scoring.Credit, request: Request,
             link: int | None, action: str | None) -> Hit:
        reason = machines.machine_reason(
            machines.Hit(request.method, request.user_agent, request.at, send.sent_at))
        return Hit(send.lead_id, kind, request.at, credit, send_id=send.id, link=link, action=action,
                   ignored=reason, method=request.method, user_agent=request.user_agent, client=request.client)

    def _send(self, send_id: int) -> Send:
        send = self.store.send(send_id)
        if send is None:
            raise TokenError("no such email")
        return send

    def lead_for(self, token: str, purpose: Purpose) -> Lead:
        lead_id = self.signer.verify(token, purpose).subject
        try:
            return self.store.lead(lead_id)
        except InputError:
            raise TokenError("no such lead") from None

    def unsubscribe(self, token: str, at: datetime) -> Lead:
        lead = self.lead_for(token, Purpose.UNSUBSCRIBE)
        assert lead.id is not None
        self.store.suppress(lead.id, Suppression.UNSUBSCRIBED, at, self.settings.scoring)
        return lead

    def save_preferences(self, token: str, interests: Sequence[str], industry: str) -> Lead:
        """Change a lead's interests and industry; unknown values are an InputError naming them."""
        lead = self.lead_for(token, Purpose.PREFERENCES)
        assert lead.id is not None
        unknown = [interest for interest in interests if interest not in self.catalog.interests]
        if unknown:
            raise InputError(f"unknown interest: {', '.join(unknown)}")
        if industry and industry not in self.catalog.industries:
            raise InputError(f"unknown industry: {industry}")
        self.store.set_preferences(lead.id, list(dict.fromkeys(interests)), industry)
        return self.store.lead(lead.id)

    def handoff_for(self, token: str) -> Handoff:
        handoff = self.store.handoff(self.signer.verify(token, Purpose.PROFILE).subject)
        if handoff is None:
            raise TokenError("no such hand-off")
        return handoff

    def profile(self, lead_id: int) -> Profile:
        lead = self.store.lead(lead_id)
        handoffs = self.store.handoffs_of(lead_id)
        open_handoff = next((h for h in reversed(handoffs) if h.outcome is None and h.cycle == lead.cycle), None)
        return Profile(lead, open_handoff, self.store.events_of(lead_id), self.store.sends_of(lead_id))

    def decide(self, handoff_id: int, outcome: str, at: datetime) -> Lead:
        try:
            chosen = Outcome(outcome)
        except ValueError:
            raise InputError(f"unknown outcome: {outcome!r} (expected won or no_result)") from None
        return self.store.decide(handoff_id, chosen, at)
