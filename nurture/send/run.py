"""One delivery run over the outbox: claim a batch, build it, send it, record the results in groups."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from nurture.errors import Fault
from nurture.models import SendState
from nurture.send import resultlog
from nurture.send.backlog import Backlog, Planner, Planning
from nurture.send.batch import Prepared, Preparer
from nurture.send.builder import Builder
from nurture.send.outbox import OPEN, Outbox
from nurture.send.policy import Breaker, Pacer, attempt
from nurture.send.resultlog import ResultLog
from nurture.send.results import Result, final_state
from nurture.store.groupcommit import GroupCommit

if TYPE_CHECKING:
    from nurture.render.composer import Composer
    from nurture.send.mailer import Mailer
    from nurture.settings import Scoring, Settings
    from nurture.store import Store

log = logging.getLogger(__name__)
PROCESS_AFTER_BATCHES = 2  # a run of more batches than this builds its messages in a process of its own
STORE_SECONDS = 1.0  # a run's log reaches the outbox, and its results are settled, at least this often
Stored = asyncio.Future[None]  # a result handed to the run's results: done once it is recorded
Progress = Callable[[int, int, bool], None]  # (messages done in this run, messages to do, a batch just ended)
T = TypeVar("T")


@dataclass
class Report:
    """What one pass did, for the command line and the logs."""

    enqueued: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    bounced: list[str] = field(default_factory=list)  # the server refused the address for good
    failed: list[str] = field(default_factory=list)
    handoffs: list[str] = field(default_factory=list)
    paused: str | None = None  # why delivery stopped early
    refused: str | None = None  # the mail server would not take mail from us: a failed run


async def off_loop(threaded: bool, work: Callable[..., T], *args: Any) -> T:
    """Do blocking store work (thousands of leads: up to a second) in a thread where the event loop
    serves the tracking server too (`threaded`), so that a run never holds up its answers; at once in a
    run of its own, which may fork its builder only while it has a single thread (nurture.send.builder)."""
    if threaded:
        return await asyncio.to_thread(work, *args)
    return work(*args)


class DeliveryRun:
    """A delivery run. It is given what it needs: the settings, the composer that builds messages, the
    store, the mailer, and whether its event loop serves the tracking server too (`threaded`)."""

    def __init__(self, settings: Settings, composer: Composer, store: Store, mailer: Mailer, now: datetime,
                 report: Report, progress: Progress | None = None, threaded: bool = False):
        self.settings = settings
        self.store = store
        self.mailer = mailer
        self.threaded = threaded
        self.policy = self.settings.delivery
        self.outbox = Outbox(store)
        self.now = now
        self.report = report
        self.progress = progress
        self.breaker = Breaker(self.policy.pause_after_failures)
        self.pacer = Pacer(self.policy.rate_per_second, self.policy.rate_per_hour, self._take_slot)
        self.sqlite = store.is_sqlite  # a SQLite write is shorter than a hop to a thread
        folder = resultlog.folder_for(store.url)
        self.log_path = None if folder is None else resultlog.path_for(folder, self.outbox.worker)  # see _results
        self.ahead = not self.sqlite  # results stored ahead of what they lead to, settled in batches: see _results
        self.results: GroupCommit[Result, None] | ResultLog[Result]  # where the lanes record what they did
        self.stopping = False  # a lane failed: the others finish the send they hold and stop
        self.preparer = Preparer(settings, composer, store, self.outbox, now, self.log_path)
        self.early_builder: Builder | None = None  # started before the run by `builder`

    async def _take_slot(self, interval: float, now: float) -> float:
        return await off_loop(self.threaded, self.store.take_slot, "delivery", interval, now)

    @contextmanager
    def builder(self, expected: int) -> Iterator[None]:
        """For a run of more than PROCESS_AFTER_BATCHES batches `expected`, start its builder process
        now: it forks and compiles the templates while the caller records the sends, and `run` uses it.
        It is closed when the block ends."""
        if expected > PROCESS_AFTER_BATCHES * self.policy.batch_size:
            self.early_builder = Builder(self.preparer, in_process=True)
        try:
            yield
        finally:
            if self.early_builder is not None:
                self.early_builder.close()

    async def run(self, planner: Planner | None = None) -> None:
        """Work the outbox until it is empty or the breaker trips; with a `planner`, deliver while it
        records the due sends (in a thread: see Planning), and end once it has and they are delivered.

        `smtp.concurrency` lanes take sends from one backlog; the next batches are claimed and built (see
        nurture.send.batch and nurture.send.builder) while the lanes deliver. What was built (Message-ID, subject,
        links) is stored before the message goes out, and building is deterministic, so a send retried
        after a crash carries the same message.
        """
        rules = self.settings.scoring
        await off_loop(self.threaded, self.outbox.reclaim_orphans, rules)
        await off_loop(self.threaded, self.outbox.settle, self.now, rules)  # what a run that died left, on any host
        counts = await off_loop(self.threaded, self.outbox.counts, OPEN)  # not the history: a tick's cost
        self.total = sum(counts.get(state, 0) for state in (SendState.QUEUED, SendState.DEFERRED, SendState.SENDING))
        self.done = 0
        builder = self.early_builder or Builder(self.preparer,  # one `builder` started is closed by it
                                             in_process=self.total > PROCESS_AFTER_BATCHES * self.policy.batch_size)
        planning = None if planner is None else Planning(planner, self._planned)  # after the fork: a thread
        try:
            await self._work(builder, planning)
        finally:
            try:
                if planning is not None:
                    planning.stop()  # over already, unless the run stopped early: then no page more
                    await planning.over()
            finally:
                if builder is not self.early_builder:
                    builder.close()

    def _planned(self, count: int) -> None:
        self.total += count

    async def _work(self, builder: Builder, planning: Planning | None) -> None:
        """Deliver with the lanes, store every result, and give back what was claimed but not sent."""
        rules = self.settings.scoring
        renewing = asyncio.create_task(self._renew_leases())  # until every result is stored
        try:
            async with self._results() as self.results:  # after the fork: the builder holds no copy of a log's lock
                over = asyncio.Event()
                storing = asyncio.create_task(self._keep_storing(rules, over))
                try:
                    failures, backlog = await self._deliver_all(Backlog(builder, planning))
                finally:
                    over.set()
                    await storing
                stored = await self._conclude(rules, failures)  # while this run holds its log: no other takes it
        finally:
            renewing.cancel()
        if not stored:
            raise failures[0]  # the claims stay with the log: the next run stores it, then gives them back
        if failures or backlog.failure:  # what a failed lane or batch left claimed goes back to the outbox
            await off_loop(self.threaded, self.outbox.release)
        if failures:
            raise failures[0]
        if self.progress:
            self.progress(self.done, max(self.total, self.done), True)
        if self.breaker.refusal:
            self.report.refused = self.breaker.refusal
            self.report.paused = (f"paused: the mail server refused to take mail from us ({self.breaker.refusal}); "
                                  "nobody was suppressed")
        elif self.breaker.tripped:
            self.report.paused = f"paused after {self.breaker.failures} failed deliveries in a row"

    async def _deliver_all(self, backlog: Backlog) -> tuple[list[BaseException], Backlog]:
        """Run the lanes until the outbox is empty or they stop; give back what they never took."""
        try:
            lanes = (self._lane(backlog) for _ in range(self.settings.smtp.concurrency))
            outcomes = await asyncio.gather(*lanes, return_exceptions=True)
        finally:
            await self._give_back(await backlog.untaken())
        return [outcome for outcome in outcomes if isinstance(outcome, BaseException)], backlog

    async def _conclude(self, rules: Scoring, failures: list[BaseException]) -> bool:
        """Store the rest of the run's log, if it has one, or settle its results; False when that failed
        after a lane failed (the lane's failure is the one to tell), and raise when it failed alone."""
        try:
            if self.log_path is not None:
                await off_loop(self.threaded, self.outbox.conclude_log, self.log_path, rules)
            elif self.ahead:
                await off_loop(self.threaded, self.outbox.settle, self.now, rules)
        except Exception:
            if not failures:
                raise
            log.exception("the results of a failed run are left for the next run to store (%s)",
                          self.log_path or "unsettled in the outbox")
            return False
        return True

    @asynccontextmanager
    async def _results(self) -> AsyncIterator[GroupCommit[Result, None] | ResultLog[Result]]:
        """Where the lanes' results go: on a SQLite file, the run's log (nurture.send.resultlog); elsewhere to
        the database in group commits, each one transaction that writes only the sends this worker still
        holds (HELD): trying a failed group again (a deadlock broken by PostgreSQL, say) is safe.

        On PostgreSQL a group stores the results alone, in one statement on a connection of the event
        loop's own, each marked unsettled where it leads to more (a digest's cost, a bounce's suppression):
        the lanes wait for that write only, and what the results lead to is stored in batches (`settle`,
        every STORE_SECONDS and at the end). A result is stored before
        its lane's next message goes, so kill -9 still sends at most `smtp.concurrency` messages twice,
        and the next run, on any host, settles what a dead one left. Its commits do not wait for the disk
        (synchronous_commit off, as the result log's writes and SQLite's `synchronous=NORMAL` commits do
        not): a killed nurture loses none of them, a crash of the database server or a power cut may lose
        the last fraction of a second of them, whose messages go out again."""
        if self.log_path is not None:
            logged: ResultLog[Result] = ResultLog(self.log_path, self.outbox.worker, self.now,
                                                  lambda result: self.outbox.log_record(result, self.now, self.policy))
            try:
                yield logged
            finally:
                logged.close()
            return
        if self.ahead:
            async with self.store.loop_connection() as self.loop_connection:
                await self.loop_connection.execute("SET synchronous_commit = off")
                yield GroupCommit(self._record_ahead, attempts=3)
            return
        with self.store.connection(on_loop=self.sqlite) as self.connection:
            yield GroupCommit(self._record, on_loop=self.sqlite, attempts=3)

    async def _give_back(self, untried: list[Prepared]) -> None:
        """Claimed, never sent (the breaker tripped, or a lane failed): queued again for the next run."""
        results = [self.results.add(Result(item.send, SendState.QUEUED)) for item in untried]
        try:
            await asyncio.gather(*(self.results.committed(result) for result in results))
        except Exception:  # noqa: BLE001 - the claims then go back with the rest (Outbox.release)
            log.exception("%d untried sends not given back", len(untried))
            self.stopping = True
            return

    async def _keep_storing(self, rules: Scoring, over: asyncio.Event) -> None:
        """Until the lanes are done, store what the run's log holds, or settle its results, every
        STORE_SECONDS. On SQLite the builder also stores the log before each claim, which a slow run (a low
        rate limit) seldom makes; the judge counts no hit of a message whose result is not stored yet
        (nurture.score.machines: "during delivery")."""
        if self.log_path is None and not self.ahead:
            return
        while not over.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(over.wait(), STORE_SECONDS)
                return
            try:
                if self.log_path is not None:
                    await asyncio.to_thread(self.outbox.apply_log, self.log_path, rules)
                else:
                    await asyncio.to_thread(self.outbox.settle, self.now, rules)
            except Exception:  # noqa: BLE001 - the end of the run stores it, or the next run does
                log.exception("results of %s not stored yet", self.log_path or "this run")

    async def _renew_leases(self) -> None:
        """Keep the claims of a long run from looking abandoned to other workers. A renewal that fails (the
        database away for a moment) is tried again at the next turn: a lease outlasts two of them."""
        while True:
            await asyncio.sleep(self.policy.lease_seconds / 3)
            try:
                await asyncio.to_thread(self.outbox.renew)
            except Exception:  # noqa: BLE001 - never let the renewals end with the run going on
                log.exception("the leases of %s were not renewed", self.outbox.worker)

    async def _lane(self, backlog: Backlog) -> None:
        """Deliver one send after another. The result of a send is written while the next one's envelope
        goes out, but the server can take the next message only once that result is stored (see
        `_deliver`): a lane has at most one send out but unrecorded, the run `concurrency`, and the
        results of several lanes are recorded together (one write to the log, or one transaction)."""
        stored: Stored | None = None  # the last send's result: recorded, or on its way
        try:
            while not self.breaker.tripped and not self.stopping:
                item = await backlog.take()
                if item is None:
                    return
                stored = await self._deliver(item, stored)
                if self.progress and not self.breaker.tripped:  # a send given back untried is no progress
                    self.progress(self.done, max(self.total, self.done), self.done % self.policy.batch_size == 0)
        except BaseException:
            self.stopping = True
            raise
        finally:
            if stored is not None:
                await self.results.committed(stored)

    async def _deliver(self, item: Prepared, previous: Stored | None) -> Stored:
        """Deliver one send; return its result, queued to be recorded with the next group."""

        async def ready() -> None:  # before the server can take this message; raises if that write failed
            if previous is not None:
                await self.results.committed(previous)

        if self.breaker.tripped or item.envelope is None:
            await ready()
            if item.envelope is None:
                self.done += 1
                return self._fail(item, item.problem or "not built")
            return self.results.add(Result(item.send, SendState.QUEUED))  # it tripped while this lane waited
        self.done += 1  # tried: `done` counts the sends a run tried, not those it gave back
        try:
            await self.pacer.wait()
            state, failure = await attempt(self.mailer, item.envelope, self.policy, ready=ready)
        except Exception as broken:  # noqa: BLE001 - one message that cannot go never stops the run
            await ready()  # ...but a result that cannot be stored does
            log.exception("send %s failed", item.send.id)
            return self._fail(item, f"{type(broken).__name__}: {broken}")
        await ready()  # when the server refused early, before asking
        if failure is not None and failure.fault is Fault.SENDER:  # not this send's doing: it waits, untouched
            log.error("the mail server refused our mail: %s", failure)
            self.breaker.refused(str(failure))
            return self.results.add(Result(item.send, SendState.QUEUED))
        self.breaker.record(state)
        error = None if failure is None else str(failure)
        self._note(item, item.envelope.message_id, state, error)
        return self.results.add(Result(item.send, state, error, self.outbox.clock()))

    def _fail(self, item: Prepared, problem: str) -> Stored:
        self.report.failed.append(f"{item.email}: {problem}")
        return self.results.add(Result(item.send, SendState.FAILED, problem))

    def _note(self, item: Prepared, message_id: str, state: SendState, error: str | None) -> None:
        email, send = item.email, item.send
        state = final_state(send, state, self.policy.max_attempts)
        if state is SendState.SENT:
            self.report.sent.append(f"{email}: {send.template} {send.step} ({message_id})")
        elif state is SendState.DEFERRED:
            self.report.deferred.append(f"{email}: deferred: {error}")
        elif state is SendState.BOUNCED:
            self.report.bounced.append(f"{email}: {error}")
        else:
            self.report.failed.append(f"{email}: {state.value}: {error}")

    def _record(self, results: Sequence[Result]) -> None:
        """Write delivery results on the run's own connection: a pool checkout costs as much as the update."""
        self.outbox.finish(results, self.now, self.settings.scoring, self.policy, self.connection)

    async def _record_ahead(self, results: Sequence[Result]) -> None:
        """Write delivery results, unsettled, on the run's connection of the event loop (see _results)."""
        await self.outbox.finish_ahead(results, self.now, self.policy, self.loop_connection)
