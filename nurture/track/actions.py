"""Opens, clicks, unsubscribes and preference changes, from a verified token to a recorded event.

The server's handlers parse the request and call these. Opens and clicks are stored in group commits
by nurture.track.journal and judged afterwards by nurture.score.judge, whose decisions (is it a machine, what is the
credit) are made by the pure functions of nurture.score.machines and nurture.score.rules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import NamedTuple

from starlette.concurrency import run_in_threadpool

from nurture.content.catalog import Catalog
from nurture.errors import InputError, TokenError
from nurture.models import Handoff, Lead, Outcome, Send, Suppression, link_at
from nurture.score import rules as scoring
from nurture.score.history import Line, Why, history, why
from nurture.settings import Settings
from nurture.store import Store
from nurture.track.journal import Arrival, Journal
from nurture.track.tokens import Purpose, Signer

log = logging.getLogger(__name__)


class Request(NamedTuple):
    """What the server knows about one hit."""

    method: str
    user_agent: str | None
    client: str | None
    at: float  # seconds since the epoch


NOTE_CHARS = 1000


@dataclass(frozen=True)
class Profile:
    """A lead's profile, as sales and the admin read it."""

    lead: Lead
    handoff: Handoff | None  # the open hand-off of its current cycle
    lines: list[Line]  # its score history (nurture.score.history)
    sends: list[Send]
    threshold: int  # the score at which this lead goes to sales (its segment's)
    why: Why  # why it went to sales (or would): what made its score, what it asked for and read, earlier cycles


class Tracking:
    def __init__(self, settings: Settings, store: Store, catalog: Catalog):
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.signer = Signer(settings.secret_key, settings.old_secret_keys)
        self.journal = Journal(store)

    async def open(self, token: str, request: Request) -> None:
        """Store an open; a forged token raises TokenError before anything is written."""
        claim = self.signer.verify(token, Purpose.OPEN)
        await self.journal.put(Arrival("open", claim.subject, None, *request))

    async def click(self, token: str, request: Request) -> str:
        """Store a click and return where it goes: the URL stored with the email, never one from the request.

        If the click cannot be stored (logged), the person still goes on to the link.
        """
        claim = self.signer.verify(token, Purpose.CLICK)
        try:
            url = await self.journal.put(Arrival("click", claim.subject, claim.link, *request))
        except Exception:
            log.exception("click on send %s not stored", claim.subject)
            url = await run_in_threadpool(self._url, claim.subject, claim.link)
        if url is None:
            raise TokenError("no such email or link")
        return url

    def _url(self, send_id: int, index: int) -> str | None:
        send = self.store.send(send_id)
        link = link_at(send.links if send else None, index)
        return None if link is None else str(link["url"])

    def untracked(self, html: str) -> str:
        """A mail's HTML as the admin reads it (the sink viewer): its pixel gone and each tracked link
        pointing where it leads, so reading it loads no tracking URL and credits nobody."""
        base = re.escape(self.settings.base_url)

        def target(match: re.Match[str]) -> str:
            try:
                claim = self.signer.verify(match.group(1), Purpose.CLICK)
            except TokenError:
                return "#"
            url = self._url(claim.subject, claim.link)
            return escape(url) if url else "#"

        html = re.sub(rf"{base}/o/[A-Za-z0-9_-]+\.gif", "data:,", html)
        return re.sub(rf"{base}/c/([A-Za-z0-9_-]+)", target, html)

    def lead_for(self, token: str, purpose: Purpose) -> Lead:
        return self._living(self.signer.verify(token, purpose).subject)

    def _living(self, lead_id: int) -> Lead:
        """The lead, unless there is none or it was erased: then no token sent to it works any more."""
        try:
            lead = self.store.lead(lead_id)
        except InputError:
            raise TokenError("no such lead") from None
        if lead.erased_at is not None:
            raise TokenError("no such lead")  # erased: no token sent to it works any more
        return lead

    def unsubscriber(self, token: str) -> tuple[Lead, int | None]:
        """The lead an unsubscribe link belongs to, and the mail it came in where the link names one."""
        try:
            send_id = self.signer.verify(token, Purpose.UNSUBSCRIBE_MAIL).subject
        except TokenError:
            return self.lead_for(token, Purpose.UNSUBSCRIBE), None
        send = self.store.send(send_id)
        if send is None:
            raise TokenError("no such mail")
        lead = self._living(send.lead_id)
        return lead, send_id

    def unsubscribe(self, token: str, at: datetime) -> Lead:
        lead, send_id = self.unsubscriber(token)
        assert lead.id is not None
        self.store.suppress(lead.id, Suppression.UNSUBSCRIBED, at, self.settings.scoring, send_id=send_id)
        return lead

    def confirm(self, token: str, client: str | None, at: datetime) -> Lead:
        """The lead confirms its address (double opt-in); confirming again changes nothing."""
        lead = self.lead_for(token, Purpose.CONFIRM)
        assert lead.id is not None
        if lead.suppressed is Suppression.UNSUBSCRIBED:  # it unsubscribed, then signed up anew: mailed again
            self.store.lift_suppression(lead.id, "the lead, signing up anew", self.settings.scoring, at,
                                        self.settings.program)
            self.store.add_consent(lead.id, "re-subscribed: confirmed by link", client, at)
        self.store.confirm(lead.id, "confirmed by link", client, at, self.settings.program)
        return self.store.lead(lead.id)

    def save_preferences(self, token: str, interests: Sequence[str], industry: str, client: str | None = None,
                         at: datetime | None = None, tracking: bool | None = None) -> Lead:
        """Change a lead's interests and industry, which confirms an unconfirmed address too; unknown values
        are an InputError naming them."""
        lead = self.lead_for(token, Purpose.PREFERENCES)
        assert lead.id is not None
        unknown = [interest for interest in interests if interest not in self.catalog.interests]
        if unknown:
            raise InputError(f"unknown interest: {', '.join(unknown)}")
        if industry and industry not in self.catalog.industries:
            raise InputError(f"unknown industry: {industry}")
        self.store.set_preferences(lead.id, list(dict.fromkeys(interests)), industry, tracking)
        if lead.confirmed_at is None:
            self.store.confirm(lead.id, "topics saved", client, at or self.store.clock(), self.settings.program)
        return self.store.lead(lead.id)

    def handoff_for(self, token: str) -> Handoff:
        handoff = self.store.handoff(self.signer.verify(token, Purpose.PROFILE).subject)
        if handoff is None or self.store.lead(handoff.lead_id).erased_at is not None:
            raise TokenError("no such hand-off")
        return handoff

    def profile(self, lead_id: int) -> Profile:
        lead = self.store.lead(lead_id)
        handoffs = self.store.handoffs_of(lead_id)
        open_handoff = next((h for h in reversed(handoffs) if h.outcome is None and h.cycle == lead.cycle), None)
        sends = self.store.sends_of(lead_id)
        rules = self.settings.scoring
        lines = history(self.store.events_of(lead_id), lead.cycle, rules, self.store.clock())
        threshold = scoring.threshold(rules, lead.customer, lead.industry)
        return Profile(lead, open_handoff, lines, sends, threshold, why(lines, lead.cycle, threshold, rules, handoffs))

    def decide(self, handoff_id: int, outcome: str, at: datetime, note: str = "") -> Lead:
        """Sales' outcome of a hand-off, with an optional note of at most NOTE_CHARS."""
        try:
            chosen = Outcome(outcome)
        except ValueError:
            expected = ", ".join(choice.value for choice in Outcome)
            raise InputError(f"unknown outcome: {outcome!r} (expected one of {expected})") from None
        if len(note) > NOTE_CHARS:
            raise InputError(f"the note is longer than {NOTE_CHARS} characters")
        return self.store.decide(handoff_id, chosen, at, self.settings.scoring, self.settings.program,
                                 note.strip() or None)
