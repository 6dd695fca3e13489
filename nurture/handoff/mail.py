"""The hand-off mail: one message to sales for each qualification, claimed before it is sent."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta

import httpx

from nurture.handoff import summary, webhook
from nurture.handoff.routing import owner
from nurture.models import Handoff, Lead
from nurture.render.composer import Composer
from nurture.render.message import Envelope, build, message_id
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
        if chosen.webhook:  # recorded before anything goes; posted by post_webhooks, tried until taken
            self.store.add_webhook(handoff_id, chosen.webhook, now)
        record = self.store.handoff(handoff_id)
        assert record is not None
        try:
            await self.mailer.send(self._mail(record, lead, chosen.email, mid, now))
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the hand-off must stay pending
            log.warning("hand-off %s for %s not delivered: %s: %s", handoff_id, lead.email, type(error).__name__, error)
            self.store.finish_handoff(handoff_id, delivered=False, now=now)
            return False
        self.store.finish_handoff(handoff_id, delivered=True, now=now)
        if report is not None:
            report.handoffs.append(f"{lead.email}: hand-off to {chosen.email} (score {record.score})")
        return True

    def _mail(self, record: Handoff, lead: Lead, to: str, mid: str, now: datetime, follow_up: str | None = None
              ) -> Envelope:
        """The hand-off mail (or its `follow_up`: reminder, escalation) for `record`, to `to`."""
        assert record.id is not None
        variables = summary.context(self.settings, lead, record, self.store.events_of(record.lead_id),
                                    self.composer.urls.profile(record.id), now, self.store.handoffs_of(record.lead_id),
                                    follow_up)
        rendered = self.composer.renderer.render("handoff", self.settings.program.default_locale, variables)
        return self.composer.signed(build(
            sender=self.settings.mail.from_email, to=to, subject=rendered.subject, html=rendered.html,
            text=rendered.text, message_id=mid, date=now, headers={"Reply-To": lead.email}))

    async def post_webhooks(self, now: datetime) -> None:
        """Post the hand-offs due to their owners' webhooks (a try, or a retry after its back-off)."""
        due = self.store.due_webhooks(now)
        if not due:
            return
        async with httpx.AsyncClient() as client:
            for delivery in due:
                if not self.store.claim_webhook(delivery, now, webhook.LEASE):
                    continue
                record = self.store.handoff(delivery.handoff_id)
                assert record is not None and record.id is not None
                body = json.dumps(webhook.payload(self.settings, self.store, record, self.store.lead(record.lead_id),
                                                  self.composer.urls.profile(record.id), now)).encode()
                await webhook.post(client, self.settings, self.store, delivery, body, now, time.time())

    async def follow_up(self, now: datetime, report: Report | None = None) -> None:
        """The clock on the follow-up: a hand-off without an outcome `sales.remind_after_hours` after its mail
        reminds its owner, and `escalate_after_hours` after it tells `sales.escalate_to`; each once (claimed
        before it goes, so two workers never send it twice) and kept on the hand-off."""
        sales = self.settings.sales
        for hours, unset, kind in ((sales.remind_after_hours, "reminded_at", "reminder"),
                                   (sales.escalate_after_hours, "escalated_at", "escalation")):
            if hours is None:
                continue
            for record in self.store.waiting_for_outcome(now - timedelta(hours=hours), unset):
                assert record.id is not None
                if not self.store.claim_follow_up(record.id, unset, now):
                    continue
                to = (sales.escalate_to or sales.email) if kind == "escalation" else (record.owner_email or sales.email)
                lead = self.store.lead(record.lead_id)
                mid = message_id(self.settings.secret_key, f"handoff-{kind}", record.id, self.composer.domain)
                try:
                    await self.mailer.send(self._mail(record, lead, to, mid, now, kind))
                except Exception as error:  # noqa: BLE001 - logged; a follow-up is sent at most once
                    log.warning("the %s of hand-off %s did not go: %s: %s", kind, record.id, type(error).__name__,
                                error)
                    continue
                if report is not None:
                    report.handoffs.append(f"{lead.email}: {kind} to {to} (no outcome since {record.sent_at:%Y-%m-%d})")
