"""Acting on what comes back. A hard bounce suppresses the lead at once and the bounce rule scores it; soft
bounces (a full mailbox) suppress it after `scoring.soft_bounces` within `scoring.soft_bounce_days`; a
complaint suppresses it and the complaint rule scores it; a receiving server that blocked our mail
(policy, content) is noted and blames nobody. Each is an event in the lead's history with its status
code and the server's words, and each message taken is kept with what was made of it (InboundMail).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.errors import Fault, UnknownLead
from nurture.inbound.notices import Notice, Reader, Unrecognized
from nurture.models import EventKind, InboundMail, Suppression
from nurture.score.rules import Credit
from nurture.settings import Settings
from nurture.store import NewEvent, Store
from nurture.track.tokens import Signer
from nurture.track.urls import ReturnPaths

log = logging.getLogger(__name__)
KEPT_BYTES = 256 * 1024  # of each message taken, for an operator to read
ACTIONS = {Fault.ADDRESS: "hard", Fault.TRANSIENT: "soft", Fault.SENDER: "blocked"}  # a bounce event's action


@dataclass
class Feedback:
    settings: Settings
    store: Store

    @property
    def reader(self) -> Reader:
        settings = self.settings
        signer = Signer(settings.secret_key, settings.old_secret_keys)
        bounces = settings.bounces
        paths = ReturnPaths(bounces.local_part, bounces.domain, signer) if bounces.domain else None
        return Reader([settings.secret_key, *settings.old_secret_keys], paths)

    def take(self, data: bytes, mail_from: str, recipients: Sequence[str], via: str, now: datetime) -> InboundMail:
        """Read one message that came back, act on each notice in it, and keep it with what was done."""
        return self.take_notices(self.reader.read(data, recipients), data, mail_from, recipients, via, now)

    def take_notices(self, found: list[Notice] | Unrecognized, data: bytes, mail_from: str,
                     recipients: Sequence[str], via: str, now: datetime) -> InboundMail:
        """Act on notices read from `data` (a message, or a provider's report) and keep it with what was done."""
        outcomes: list[str] = []
        lead_id = send_id = None
        if isinstance(found, Unrecognized):
            outcomes.append(f"unrecognized: {found.reason}")
        for notice in [] if isinstance(found, Unrecognized) else found:
            lead_id, send_id, outcome = self.act(notice, now)
            outcomes.append(outcome)
        recognized = lead_id is not None
        mail = InboundMail(received_at=now, via=via, mail_from=mail_from, recipients=list(recipients),
                           recognized=recognized, outcome="; ".join(outcomes)[:1000], lead_id=lead_id,
                           send_id=send_id, data=data[:KEPT_BYTES])
        log.info("inbound mail via %s: %s", via, mail.outcome)
        return self.store.add_inbound(mail)

    def act(self, notice: Notice, now: datetime) -> tuple[int | None, int | None, str]:
        """Do what one notice calls for; return the lead and send it was about, and what was done."""
        send = self.store.send(notice.send_id) if notice.send_id is not None else None
        lead_id = send.lead_id if send is not None else None
        if lead_id is None and notice.recipient:
            try:
                lead_id = self.store.lead_by_email(notice.recipient).id
            except UnknownLead:
                pass
        what = f"{notice.kind.value} ({notice.format}{', ' + notice.status if notice.status else ''})"
        if lead_id is None:
            return None, None, f"unrecognized: a {what} for no lead of ours ({notice.recipient or 'no address'})"
        send_id = send.id if send is not None else None
        return lead_id, send_id, f"{what}: {self._act_on_lead(notice, lead_id, send_id, now)}"

    def _act_on_lead(self, notice: Notice, lead_id: int, send_id: int | None, now: datetime) -> str:
        rules = self.settings.scoring
        if notice.kind is EventKind.COMPLAINT:
            done = self.store.suppress(lead_id, Suppression.COMPLAINED, now, rules, notice.detail, send_id, "complaint")
            return f"lead {lead_id} " + ("suppressed" if done else "was suppressed already")
        action = ACTIONS[notice.fault]
        if notice.fault is Fault.ADDRESS and self.store.suppress(lead_id, Suppression.BOUNCED, now, rules,
                                                                 notice.detail, send_id, action):
            return f"hard bounce, lead {lead_id} suppressed"
        if notice.fault is Fault.TRANSIENT:
            return self.store.soft_bounce(lead_id, send_id, notice.detail, now, rules)
        self.store.record(NewEvent(lead_id, EventKind.BOUNCE, now, Credit(0, None), send_id=send_id, action=action,
                                   detail=notice.detail), rules)
        if notice.fault is Fault.SENDER:
            return "the receiving server blocked our mail; nobody was suppressed"
        return f"hard bounce, lead {lead_id} was suppressed already"
