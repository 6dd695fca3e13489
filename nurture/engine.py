"""One tick of nurture: enqueue what is due, deliver the outbox, hand qualified leads to sales.

The engine ties the stages together over its ports (store, mailer, composer); the clock is read once
by the caller and handed in as `now`. Each stage is given the small things it needs, never the engine.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any, TypeVar

from nurture import program
from nurture.content import digest
from nurture.content.catalog import Catalog, load_catalog
from nurture.content.refresh import FeedResult, refresh
from nurture.errors import DeliveryError
from nurture.handoff.mail import HandoffMail
from nurture.models import EventKind, Send, Stage, Suppression
from nurture.render.composer import Composer
from nurture.render.templates import Renderer
from nurture.score import rules as scoring
from nurture.send.mailer import Mailer
from nurture.send.outbox import Outbox
from nurture.send.run import DeliveryRun, Progress, Report, off_loop
from nurture.settings import Settings
from nurture.store import NewEvent, Store
from nurture.store.base import chunked
from nurture.store.locks import Lock

log = logging.getLogger(__name__)
T = TypeVar("T")
# leads planned and recorded at a time. What a pass holds grows with it (histories, steps, addresses, digests:
# 3.8 MB at 1,000, 7.8 MB at 2,000, 20 MB at 5,000, 81 MB at 20,000) while its speed does not measurably (40,000
# due leads on SQLite: 3.6 s, 3.4 s and 3.7 s at 1,000, 2,000 and 5,000, medians of 3; scripts/bench_due.py --enqueue)
PAGE = 2_000
__all__ = ["Engine", "Report"]


class Engine:
    def __init__(self, settings: Settings, store: Store, mailer: Mailer, composer: Composer | None = None,
                 catalog: Catalog | None = None):
        self.settings = settings
        self.store = store
        self.mailer = mailer
        self.composer = composer or Composer.from_settings(settings)
        self.catalog = catalog or load_catalog(settings.feeds_file)
        self.outbox = Outbox(store)
        self.handoffs = HandoffMail(settings, store, mailer, self.composer)
        self.serving = False  # its event loop serves the tracking server too (create_app): see off_loop

    @property
    def renderer(self) -> Renderer:
        return self.composer.renderer

    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Blocking store work, in a thread while this engine's loop serves the tracking server too."""
        return await off_loop(self.serving, work, *args)

    # the program

    def plan_pages(self, now: datetime) -> Iterator[list[program.Due]]:
        """The steps due at `now`, judged a page of PAGE leads at a time (Store.due_pages): each page is read
        when the one before has been dealt with, so that a pass holds one."""
        rules = self.settings.program
        for histories in self.store.due_pages(now, PAGE):
            yield program.due_all(histories, now, rules)

    def plan(self, now: datetime) -> list[program.Due]:
        """Every step due at `now` at once, the confirmations first, then the digests by due time: a look at
        the plan (tests, benches). A pass goes a page at a time (enqueue_due)."""
        return [step for page in self.plan_pages(now) for step in page]

    def enqueue_due(self, now: datetime, report: Report, steps: Sequence[program.Due] | None = None,
                    recorded: Callable[[int], None] | None = None) -> int:
        """Record a queued send for every lead that is due (`steps`, when planned already) and has content,
        and note the skips, a page at a time, each page in transactions of its own: a pass holds one page
        of histories, steps, addresses and digests, however many leads are due (scripts/bench_due.py
        --enqueue). `recorded` hears how many sends each page recorded. The report keeps its line per
        lead. Return how many sends were recorded."""
        pages = self.plan_pages(now) if steps is None else chunked(steps, PAGE)
        total = 0
        for page in pages:
            count = self._enqueue(now, report, page)
            if recorded is not None:
                recorded(count)
            total += count
        return total

    def _enqueue(self, now: datetime, report: Report, steps: Sequence[program.Due]) -> int:
        emails = self.store.emails_by_id([step.lead_id for step in steps])
        readers = self.store.readers_by_id([step.lead_id for step in steps if step.template == program.DIGEST])
        size, at_least = self.settings.program.items_per_digest, self.settings.program.min_new_items
        items = digest.digests(self.store, self.catalog, list(readers.values()), size)
        chosen: list[tuple[program.Due, list[int]]] = []
        skipped: list[int] = []
        for step in steps:
            is_digest = step.template == program.DIGEST
            item_ids = [item.id for item in items[step.lead_id] if item.id is not None] if is_digest else []
            if is_digest and len(item_ids) < at_least:
                skipped.append(step.lead_id)
                report.skipped.append(f"{emails[step.lead_id]}: digest {step.step} skipped, no new matching items")
                continue
            chosen.append((step, item_ids))
        self.store.note_skips(skipped, "no new matching items", now)
        recorded = [step for (step, _), new in zip(chosen, self.outbox.enqueue_many(chosen, now), strict=True) if new]
        report.enqueued += [_line(step, emails[step.lead_id]) for step in recorded]
        return len(recorded)

    def _say_due(self, now: datetime, report: Report) -> None:
        """What a pass at `now` would send, in the report, recording nothing (`send-due --dry-run`)."""
        for steps in self.plan_pages(now):
            emails = self.store.emails_by_id([step.lead_id for step in steps])
            report.enqueued += [f"{_line(step, emails[step.lead_id])} would be sent" for step in steps]

    def retry(self, sends: Sequence[Send]) -> tuple[list[int], list[str]]:
        """Queue failed sends again for the next run; a digest gets its items chosen anew (a failed send
        gave its items back). Return the ids queued, and why others were not."""
        readers = self.store.readers_by_id([send.lead_id for send in sends if send.template == program.DIGEST])
        program_ = self.settings.program
        items = digest.digests(self.store, self.catalog, list(readers.values()), program_.items_per_digest)
        chosen: dict[int, tuple[int, list[int]]] = {}
        refused = []
        for send in sends:
            assert send.id is not None
            ids = [item.id for item in items.get(send.lead_id, []) if item.id is not None]
            if send.template == program.DIGEST and len(ids) < program_.min_new_items:
                refused.append(f"send {send.id}: no new matching items for its digest")
                continue
            chosen[send.id] = (send.lead_id, ids if send.template == program.DIGEST else [])
        return self.outbox.requeue(chosen), refused

    def apply_rules(self, now: datetime) -> None:
        """The rules that depend on time passing: sign-ups never confirmed are erased, inactivity penalties,
        points that expire."""
        for lead_id in self.store.unconfirmed_since(now - timedelta(days=self.settings.program.unconfirmed_days)):
            self.store.erase(lead_id, now)
        rules = self.settings.scoring
        if rules.inactivity is not None:
            for lead_id, cycle, since in self.store.quiet_leads(rules.inactivity.days, now):
                credit = scoring.credit_inactivity(lead_id, cycle, since, rules)
                if credit.key and self.store.credited(credit.key):
                    continue  # this quiet stretch has been booked
                self.store.record(NewEvent(lead_id, EventKind.INACTIVITY, now, credit,
                                           detail=f"no open or click since {since:%Y-%m-%d}"), rules)
        # with expiring points every MQL is rescored; without, only those that may have a hand-off left to settle
        settling = None if rules.expiry_days is not None else scoring.lowest_threshold(rules)
        for lead_id in self.store.lead_ids_in(Stage.MQL, min_score=settling):
            self.store.rescore(lead_id, rules, now)

    async def reconfirm(self, lead_id: int, now: datetime) -> bool:
        """Ask an unsubscribed lead that signed up anew to confirm (double opt-in once more); only its
        click lifts the suppression. False when it is not unsubscribed, or the mail did not go."""
        lead = self.store.lead(lead_id)
        if lead.suppressed is not Suppression.UNSUBSCRIBED:
            return False  # a bounced or complaining address is not asked again
        try:
            await self.mailer.send(self.composer.compose_reconfirmation(lead, now))
        except DeliveryError as error:
            log.warning("the re-confirmation for lead %s did not go: %s", lead_id, error)
            return False
        return True

    async def welcome(self, lead_id: int, now: datetime) -> Report:
        """Send a new lead its confirmation now rather than at the next tick."""
        report = Report()
        confirmed = self.store.lead(lead_id).confirmed_at is not None
        self.outbox.enqueue(program.confirmation(lead_id, confirmed, now, self.settings.program), now)
        await self.deliver(now, report)
        return report

    # delivery

    async def deliver(self, now: datetime, report: Report, progress: Progress | None = None) -> None:
        """Deliver everything the outbox holds for `now`, `smtp.concurrency` messages at a time."""
        await self._delivery_run(now, report, progress).run()

    def _delivery_run(self, now: datetime, report: Report, progress: Progress | None) -> DeliveryRun:
        return DeliveryRun(self.settings, self.composer, self.store, self.mailer, now, report, progress, self.serving)

    async def send_due(self, now: datetime, dry_run: bool = False, progress: Progress | None = None) -> Report:
        """One pass of the program: enqueue what is due, deliver the outbox, deliver hand-offs. The run
        delivers while the due sends are recorded, from the first page on (_plan, in a thread).

        On PostgreSQL one worker plans at a time (Lock.PLAN, held while it records the due sends): a worker
        that finds another planning does not read the same leads again: it waits until the other has
        recorded the sends, then delivers from the outbox with it (before, it found the outbox empty
        when it came first, and ended). On SQLite, with one writer, every worker plans."""
        report = Report()
        if dry_run:
            await self.off_loop(self._say_due, now, report)
            return report
        await self.off_loop(self.apply_rules, now)
        run = self._delivery_run(now, report, progress)
        with ExitStack() as turn:
            planning = turn.enter_context(self.store.turn(Lock.PLAN))
            expected = await self.off_loop(self.store.may_be_due, now) if planning else 0
            with run.builder(expected):  # a long run's builder forks and compiles while the sends are recorded
                if planning:
                    await run.run(functools.partial(self._plan, now, report, turn))
                else:
                    turn.close()  # the connection it was tried on goes back to the pool
                    log.info("another worker is planning this pass: this one delivers from the outbox")
                    await self.off_loop(self.store.after_turn, Lock.PLAN)
                    await run.run()
        await self.deliver_handoffs(now, report)
        return report

    def _plan(self, now: datetime, report: Report, turn: ExitStack, recorded: Callable[[int], None]) -> int:
        """The planner of a pass, in a thread while its run delivers: the due sends recorded, a page at a
        time; then the plan's `turn` given back, and the other workers deliver with this one."""
        try:
            return self.enqueue_due(now, report, recorded=recorded)
        finally:
            turn.close()

    # hand-offs

    async def deliver_handoffs(self, now: datetime, report: Report | None = None) -> None:
        """Pending hand-off mails, and the reminders and escalations of those that wait for an outcome."""
        await self.handoffs.deliver_all(now, report)
        await self.handoffs.post_webhooks(now)
        await self.handoffs.follow_up(now, report)

    async def deliver_handoff(self, handoff_id: int, now: datetime, report: Report | None = None) -> bool:
        delivered = await self.handoffs.deliver(handoff_id, now, report)
        await self.handoffs.post_webhooks(now)
        return delivered

    # feeds

    async def refresh_feeds(self, now: datetime) -> list[FeedResult]:
        return await refresh(self.store, self.catalog, now)


def _line(step: program.Due, email: str) -> str:
    """A step's line in the report."""
    return f"{email}: {step.template} (cycle {step.cycle}, step {step.step})"
