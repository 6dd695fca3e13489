"""One tick of nurture: enqueue what is due, deliver the outbox, hand qualified leads to sales.

The engine ties the stages together over its ports (store, mailer, renderer); the clock is read once
by the caller and handed in as `now`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nurture import program
from nurture.content import digest as content
from nurture.content.catalog import Catalog, load_catalog
from nurture.content.refresh import FeedResult, refresh
from nurture.handoff import summary as handoff
from nurture.models import EventKind, FeedItem, Lead, Send, Stage
from nurture.render.cache import TemplateCache
from nurture.render.message import Envelope, build, domain_of, message_id
from nurture.render.templates import Renderer
from nurture.render.variables import email_variables
from nurture.score import rules as scoring
from nurture.send.mailer import Mailer
from nurture.send.outbox import ClaimedSend, Outbox
from nurture.send.run import Dispatch, Enqueuer, Progress
from nurture.settings import Settings
from nurture.store import Hit, Store
from nurture.track.tokens import Signer
from nurture.track.urls import Urls

log = logging.getLogger(__name__)
T = TypeVar("T")
STALE_HANDOFF = timedelta(minutes=10)


@dataclass
class Report:
    """What one pass did, for the command line and the logs."""

    enqueued: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    handoffs: list[str] = field(default_factory=list)
    paused: str | None = None  # why delivery stopped early


class Engine:
    def __init__(self, settings: Settings, store: Store, mailer: Mailer, renderer: Renderer | None = None,
                 catalog: Catalog | None = None):
        self.settings = settings
        self.store = store
        self.mailer = mailer
        self.renderer = renderer or Renderer(settings.templates_dir, settings.program.default_locale,
                                             cache=TemplateCache.under(settings.cache_dir))
        self.catalog = catalog or load_catalog(settings.feeds_file)
        self.urls = Urls(settings.base_url, Signer(settings.secret_key))
        self.domain = domain_of(settings.mail.from_email)
        self.outbox = Outbox(store)
        self.serving = False  # its event loop serves the tracking server too (create_app): see off_loop

    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Do blocking store work (thousands of leads: up to a second) in a thread where the event loop
        serves the tracking server too, so that a tick never holds up its answers; at once in a run of
        its own, which may fork its builder only while it has a single thread (nurture.send.builder)."""
        if self.serving:
            return await asyncio.to_thread(work, *args)
        return work(*args)

    # the program

    def plan(self, now: datetime) -> list[program.Due]:
        return program.due_all(self.store.histories(), now, self.settings.program)

    def enqueue_due(self, now: datetime, report: Report, steps: list[program.Due] | None = None) -> int:
        """Record a queued send for every lead that is due (`steps`, when planned already) and has
        content; note the skips. Return how many were recorded."""
        steps = self.plan(now) if steps is None else steps
        emails = self.store.emails_by_id([step.lead_id for step in steps])
        readers = self.store.profiles_by_id([step.lead_id for step in steps if step.template == program.DIGEST])
        size, at_least = self.settings.program.items_per_digest, self.settings.program.min_new_items
        items = content.digests(self.store, self.catalog, list(readers.values()), size)
        chosen: list[tuple[program.Due, list[int]]] = []
        skipped: list[int] = []
        for step in steps:
            digest = step.template == program.DIGEST
            item_ids = [item.id for item in items[step.lead_id] if item.id is not None] if digest else []
            if digest and len(item_ids) < at_least:
                skipped.append(step.lead_id)
                report.skipped.append(f"{emails[step.lead_id]}: digest {step.step} skipped, no new matching items")
                continue
            chosen.append((step, item_ids))
        self.store.note_skips(skipped, "no new matching items", now)
        recorded = [step for (step, _), new in zip(chosen, self.outbox.enqueue_many(chosen, now), strict=True) if new]
        report.enqueued += [f"{emails[step.lead_id]}: {step.template} (cycle {step.cycle}, step {step.step})"
                            for step in recorded]
        return len(recorded)

    def apply_rules(self, now: datetime) -> None:
        """The rules that depend on time passing: inactivity penalties and points that expire."""
        rules = self.settings.scoring
        if rules.inactivity is not None:
            for lead_id, cycle, since in self.store.quiet_leads(rules.inactivity.days, now):
                credit = scoring.credit_inactivity(lead_id, cycle, since, rules)
                if credit.key and self.store.credited(credit.key):
                    continue  # this quiet stretch has been booked
                self.store.record(Hit(lead_id, EventKind.INACTIVITY, now, credit,
                                      detail=f"no open or click since {since:%Y-%m-%d}"), rules)
        lowest = min(rules.threshold, rules.customer_threshold, *rules.industry_thresholds.values())
        settling = None if rules.expiry_days is not None else lowest  # expiring points, or leads left to settle
        for lead_id in self.store.lead_ids_in(Stage.MQL, min_score=settling):
            self.store.rescore(lead_id, rules, now)

    async def welcome(self, lead_id: int, now: datetime) -> Report:
        """Send a new lead its confirmation now rather than at the next tick."""
        report = Report()
        self.outbox.enqueue(program.Due(lead_id, 0, 0, program.CONFIRMATION), now)
        await self.deliver(now, report)
        return report

    # delivery

    async def deliver(self, now: datetime, report: Report, progress: Progress | None = None) -> None:
        """Deliver everything the outbox holds for `now`, `smtp.concurrency` messages at a time."""
        await Dispatch(self, now, report, progress).run()

    def compose(self, send: Send | ClaimedSend, lead: Lead, items: list[FeedItem]) -> tuple[Envelope, dict[str, Any]]:
        """Render and build one send's message (no I/O); also return what the outbox keeps about it."""
        assert send.id is not None and lead.id is not None
        send_id = send.id
        unsubscribe = self.urls.unsubscribe(lead.id)
        variables = email_variables(self.settings, lead, items, unsubscribe_url=unsubscribe,
                                    preferences_url=self.urls.preferences(lead.id))
        rendered = self.renderer.render(send.template, lead.locale, variables,
                                        url_for=lambda link: self.urls.click(send_id, link),
                                        pixel_url=self.urls.pixel(send_id))
        mid = message_id(self.settings.secret_key, "send", send_id, self.domain)
        envelope = build(
            sender=self.settings.mail.from_email, to=lead.email, subject=rendered.subject,
            html=rendered.html, text=rendered.text, message_id=mid, date=send.created_at,
            headers={"List-Unsubscribe": f"<{unsubscribe}>",
                     "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        )
        description = {"message_id": mid, "subject": rendered.subject,
                       "links": [link.as_dict() for link in rendered.links]}
        return envelope, description

    async def send_due(self, now: datetime, dry_run: bool = False, progress: Progress | None = None) -> Report:
        """One pass of the program: enqueue what is due, deliver the outbox, deliver hand-offs."""
        report = Report()
        if dry_run:
            steps = self.plan(now)
            emails = self.store.emails_by_id([step.lead_id for step in steps])
            report.enqueued = [f"{emails[step.lead_id]}: {step.template} (cycle {step.cycle}, "
                               f"step {step.step}) would be sent" for step in steps]
            return report
        await self.off_loop(self.apply_rules, now)
        steps = await self.off_loop(self.plan, now)
        dispatch = Dispatch(self, now, report, progress)
        first = self.settings.delivery.batch_size
        with dispatch.builder(len(steps)):  # a long run's builder gets ready while the first batch is enqueued
            await self.off_loop(self.enqueue_due, now, report, steps[:first])
            await dispatch.run(self._enqueuer(now, report, steps[first:]) if steps[first:] else None)
        await self.deliver_handoffs(now, report)
        return report

    def _enqueuer(self, now: datetime, report: Report, steps: list[program.Due]) -> Enqueuer:
        """What enqueues `steps` while a run delivers (see Dispatch.run): a batch a transaction, short, as
        the builder's claims wait for it. A crash before a step is enqueued leaves it to the next plan."""
        size = self.settings.delivery.batch_size

        def enqueue(stop: threading.Event, enqueued: Callable[[int], None]) -> None:
            for start in range(0, len(steps), size):
                if stop.is_set():
                    return
                enqueued(self.enqueue_due(now, report, steps[start : start + size]))

        return enqueue

    # hand-offs

    async def deliver_handoffs(self, now: datetime, report: Report | None = None) -> None:
        self.store.release_stale_handoffs(datetime.now(UTC) - STALE_HANDOFF)  # a worker died while sending
        for pending in self.store.pending_handoffs():
            assert pending.id is not None
            await self.deliver_handoff(pending.id, now, report)

    async def deliver_handoff(self, handoff_id: int, now: datetime, report: Report | None = None) -> bool:
        """Send the hand-off mail once; a failed attempt leaves it pending for the next tick."""
        mid = message_id(self.settings.secret_key, "handoff", handoff_id, self.domain)
        if not self.store.claim_handoff(handoff_id, mid):
            return False
        record = self.store.handoff(handoff_id)
        assert record is not None
        lead = self.store.lead(record.lead_id)
        try:
            variables = handoff.context(self.settings, lead, record, self.store.events_of(record.lead_id),
                                        self.store.sends_of(record.lead_id), self.urls.profile(handoff_id))
            rendered = self.renderer.render("handoff", self.settings.program.default_locale, variables)
            envelope = build(sender=self.settings.mail.from_email, to=self.settings.sales.email,
                             subject=rendered.subject, html=rendered.html, text=rendered.text,
                             message_id=mid, date=now, headers={"Reply-To": lead.email})
            await self.mailer.send(envelope)
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the hand-off must stay pending
            log.warning("hand-off %s for %s not delivered: %s: %s", handoff_id, lead.email, type(error).__name__, error)
            self.store.finish_handoff(handoff_id, delivered=False, now=now)
            return False
        self.store.finish_handoff(handoff_id, delivered=True, now=now)
        if report is not None:
            report.handoffs.append(f"{lead.email}: hand-off to {self.settings.sales.email} (score {record.score})")
        return True

    # feeds

    async def refresh_feeds(self, now: datetime) -> list[FeedResult]:
        return await refresh(self.store, self.catalog, now)
