"""The hand-off mail: one message to sales for each qualification, claimed before it is sent."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from nurture.handoff import summary
from nurture.handoff.routing import owner
from nurture.render.composer import Composer
from nurture.render.message import build, message_id
from nurture.send.mailer import Mailer
from nurture.send.run import Report
from nurture.settings import Settings
from nurture.store import Store

log = logging.getLogger(__name__)
STALE_HANDOFF = timedelta(minutes=10)  # a claim this old was left by a worker that died while sending


class HandoffMail:
    """Delivers pending hand-offs. A hand-off is claimed (with its Message-ID) before its mail goes out,
    so two workers never send the same one; a failed attempt leaves it pending for the next tick."""

    def __init__(self, settings: Settings, store: Store, mailer: Mailer, composer: Composer):
        self.settings = settings
        self.store = store
        self.mailer = mailer
        self.composer = composer

    async def deliver_all(self, now: datetime, report: Report | None = None) -> None:
        self.store.release_stale_handoffs(self.store.clock() - STALE_HANDOFF)
        for pending in self.store.pending_handoffs():
            assert pending.id is not None
            await self.deliver(pending.id, now, report)

    async def deliver(self, handoff_id: int, now: datetime, report: Report | None = None) -> bool:
        """Send the hand-off mail once; False when another worker has it, it went already, or it failed."""
        mid = message_id(self.settings.secret_key, "handoff", handoff_id, self.composer.domain)
        pending = self.store.handoff(handoff_id)
        if pending is None:
            return False
        lead = self.store.lead(pending.lead_id)
        chosen = owner(self.settings.sales, lead)
        if not self.store.claim_handoff(handoff_id, mid, chosen.name, chosen.email):
            return False
        record = self.store.handoff(handoff_id)
        assert record is not None
        try:
            events, sends = self.store.events_of(record.lead_id), self.store.sends_of(record.lead_id)
            profile = self.composer.urls.profile(handoff_id)
            variables = summary.context(self.settings, lead, record, events, sends, profile, now,
                                        self.store.handoffs_of(record.lead_id))
            rendered = self.composer.renderer.render("handoff", self.settings.program.default_locale, variables)
            envelope = self.composer.signed(build(
                sender=self.settings.mail.from_email, to=chosen.email, subject=rendered.subject,
                html=rendered.html, text=rendered.text, message_id=mid, date=now, headers={"Reply-To": lead.email}))
            await self.mailer.send(envelope)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the hand-off must stay pending
            log.warning("hand-off %s for %s not delivered: %s: %s", handoff_id, lead.email, type(error).__name__, error)
            self.store.finish_handoff(handoff_id, delivered=False, now=now)
            return False
        self.store.finish_handoff(handoff_id, delivered=True, now=now)
        if report is not None:
            report.handoffs.append(f"{lead.email}: hand-off to {chosen.email} (score {record.score})")
        return True
