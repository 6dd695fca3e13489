"""Opens, clicks, unsubscribes and preference changes, from a verified token to a recorded event.

The server's handlers parse the request and call these; opens and clicks are written in groups by
nurture.recorder, and the decisions (is it a machine, what is the credit) are made by the pure functions
of nurture.machines and nurture.scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from starlette.concurrency import run_in_threadpool

from nurture import recorder
from nurture.delivery import GroupCommit
from nurture.errors import InputError, TokenError
from nurture.feeds import Catalog
from nurture.models import Event, EventKind, Handoff, Lead, Outcome, Send, Suppression
from nurture.recorder import Recorder, Written
from nurture.settings import Settings
from nurture.store import Store
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
        self.recorder = Recorder(store, settings.scoring)
        self.commit: GroupCommit[recorder.Hit, Written] = GroupCommit(self.recorder.write)

    async def open(self, token: str, request: Request) -> Written:
        """Record an open; a forged token raises TokenError before anything is written."""
        claim = self.signer.verify(token, Purpose.OPEN)
        return await self._record(recorder.Hit(EventKind.OPEN, claim.subject, None, request.method,
                                               request.user_agent, request.client, request.at))

    async def click(self, token: str, request: Request) -> Written:
        """Record a click; the result carries the URL stored with the send (never one from the request)."""
        claim = self.signer.verify(token, Purpose.CLICK)
        hit = recorder.Hit(EventKind.CLICK, claim.subject, claim.link, request.method, request.user_agent,
                           request.client, request.at)
        try:
            return await self._record(hit)
        except TokenError:
            raise
        except Exception:  # the recorder already retried it alone and logged why: the person still goes on
            url = await run_in_threadpool(self._url, claim.subject, claim.link)
            return Written(known=url is not None, url=url, reason="not recorded")

    async def _record(self, hit: recorder.Hit) -> Written:
        written = await self.commit.put(hit)
        assert written is not None
        if not written.known:
            raise TokenError("no such email or link")
        return written

    def _url(self, send_id: int, link: int) -> str | None:
        send = self.store.send(send_id)
        if send is None or not 0 <= link < len(send.links):
            return None
        return str(send.links[link]["url"])

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
        return self.store.decide(handoff_id, chosen, at, self.settings.scoring)
