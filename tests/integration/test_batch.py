"""Batches built ahead of the sender (nurture.send.batch), in a process of its own for a long run
(nurture.send.builder)."""

from __future__ import annotations

import asyncio
import multiprocessing.connection
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import nurture.engine
from nurture.engine import Engine, Report
from nurture.errors import DeliveryError, NurtureError, RunFailed
from nurture.models import Lead, SendState, Suppression
from nurture.render.composer import Composer
from nurture.render.message import Envelope
from nurture.send import backlog as backlog_
from nurture.send import batch
from nurture.send import builder as workshop_
from nurture.send.mailer import MemoryMailer, Ready
from nurture.send.outbox import Outbox
from nurture.send.results import Finished, Result
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import T0, make_lead
from tests.system.test_crash import alive, children

LEADS = 23
BATCH = 5  # LEADS is more than two batches: built in a process


def many(store: Store) -> list[Lead]:
    return [make_lead(store, email=f"lead{n:02}@example.com") for n in range(LEADS)]


def small_batches(settings: Settings, store: Store, mailer: MemoryMailer) -> Engine:
    return Engine(settings.model_copy(update={"delivery": settings.delivery.model_copy(update={"batch_size": BATCH})}),
                  store, mailer)


def server_down(settings: Settings, store: Store) -> Engine:
    """Small batches over a server that answers 421 to everyone: the run pauses after two failures."""
    mailer = MemoryMailer(fail={f"lead{n:02}@example.com": DeliveryError("421 busy") for n in range(LEADS)})
    policy = settings.delivery.model_copy(update={"batch_size": BATCH, "pause_after_failures": 2, "retries": 0})
    return Engine(settings.model_copy(update={"delivery": policy}), store, mailer)


@pytest.fixture
def workshops(monkeypatch: pytest.MonkeyPatch) -> list[workshop_.Builder]:
    """Every Builder a run opens, to see where its batches were built."""
    opened: list[workshop_.Builder] = []
    original = workshop_.Builder.__init__

    def spy(self: workshop_.Builder, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(workshop_.Builder, "__init__", spy)
    return opened


@contextmanager
def another_thread() -> Iterator[None]:
    """A thread besides the main one, as `nurture run`'s scheduler and server have."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        yield
    finally:
        stop.set()
        other.join()


class Noting(MemoryMailer):
    """A MemoryMailer that tells when its first message has gone."""

    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()

    async def send(self, envelope: Envelope, ready: Any = None) -> None:
        await super().send(envelope, ready)
        self.first.set()


def paged(monkeypatch: pytest.MonkeyPatch, page: Any) -> list[int]:
    """Plans of BATCH leads a page, each recorded through `page(pages so far)` first; the pages' sizes."""
    monkeypatch.setattr(nurture.engine, "PAGE", BATCH)
    pages: list[int] = []
    original = Engine._enqueue

    def enqueue(self: Engine, now: Any, report: Report, steps: Any) -> int:
        page(len(pages))
        pages.append(len(steps))
        return original(self, now, report, steps)

    monkeypatch.setattr(Engine, "_enqueue", enqueue)
    return pages


def test_a_pass_delivers_while_its_plan_is_recorded(settings: Settings, store: Store,
                                                   workshops: list[workshop_.Builder],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page after the first waits here until a message has gone: were the plan recorded before the run
    began to deliver, it would wait in vain. Every lead gets its one mail, and the long pass's builder is
    still forked from this process (before the planner's thread starts)."""
    if threading.active_count() > 1:
        pytest.skip("another thread runs: a builder cannot be forked from this process")
    mailer = Noting()
    engine = small_batches(settings, store, mailer)
    many(store)
    pages = paged(monkeypatch, lambda done: done == 0 or mailer.first.wait(30) or pytest.fail("nothing went out"))
    report = asyncio.run(engine.send_due(T0))
    assert pages == [BATCH] * (LEADS // BATCH) + [LEADS % BATCH]
    assert sorted(envelope.recipient for envelope in mailer.sent) == [f"lead{n:02}@example.com" for n in range(LEADS)]
    assert len(report.sent) == LEADS and not report.failed
    assert [(workshop.pool is not None, workshop.forked) for workshop in workshops] == [(True, True)]


def test_a_pass_that_pauses_stops_its_plan_after_the_page_under_way(settings: Settings, store: Store,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The mail server refuses everyone: the breaker pauses the run while the third page waits here, and
    the plan ends with that page (the leads not planned are due at the next pass), not after every page."""
    engine = server_down(settings, store)
    many(store)
    stopping = threading.Event()
    stop = backlog_.Planning.stop

    def stopped(self: backlog_.Planning) -> None:
        stop(self)
        stopping.set()

    monkeypatch.setattr(backlog_.Planning, "stop", stopped)
    pages = paged(monkeypatch, lambda done: done < 2 or stopping.wait(30) or pytest.fail("the plan was not stopped"))
    report = asyncio.run(engine.send_due(T0))
    assert report.paused is not None and pages == [BATCH] * 3
    assert sum(Outbox(store).counts().values()) == 3 * BATCH


def test_a_plan_that_fails_halfway_fails_the_pass_once_what_it_recorded_has_gone(
        settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    mailer = Noting()
    engine = small_batches(settings, store, mailer)
    many(store)

    def page(done: int) -> None:
        if done == 2:
            raise NurtureError("the third page could not be read")

    paged(monkeypatch, page)
    with pytest.raises(NurtureError, match="third page"):
        asyncio.run(engine.send_due(T0))
    assert len(mailer.sent) == 2 * BATCH
    assert Outbox(store).counts() == {SendState.SENT: 2 * BATCH}


@pytest.mark.parametrize("threads", [False, True], ids=["forked", "from the fork server"])
def test_messages_built_in_a_process_are_the_messages_built_here(settings: Settings, store: Store, threads: bool,
                                                                 workshops: list[workshop_.Builder]) -> None:
    if not threads and threading.active_count() > 1:
        pytest.skip("another thread runs: a builder cannot be forked from this process")
    mailer = MemoryMailer()
    engine = small_batches(settings, store, mailer)
    leads = {lead.id or 0: lead for lead in many(store)}
    report = Report()
    engine.enqueue_due(T0, report)
    store.suppress(min(leads), Suppression.UNSUBSCRIBED, T0, settings.scoring)
    with another_thread() if threads else nullcontext():
        asyncio.run(engine.deliver(T0, report))
    assert [(workshop.pool is not None, workshop.forked) for workshop in workshops] == [(True, not threads)]
    assert len(report.sent) == LEADS - 1 and len(mailer.sent) == LEADS - 1
    for envelope in mailer.sent:
        lead = next(lead for lead in leads.values() if lead.email == envelope.recipient)
        assert lead.id is not None
        [send] = store.sends_of(lead.id)
        assert send.state is SendState.SENT and send.message_id == envelope.message_id
        rebuilt, described = engine.composer.compose(send, lead, [])
        assert rebuilt == envelope and send.subject == described["subject"] and send.links == described["links"]
    [refused] = store.sends_of(min(leads))
    assert refused.state is SendState.FAILED and refused.error == "lead is unsubscribed"


class Looking(MemoryMailer):
    """As each message goes out, reads what the database holds of its send."""

    def __init__(self, store: Store):
        super().__init__()
        self.store = store
        self.seen: dict[str, Any] = {}

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> None:
        found = re.match(r"<send\.(\d+)\.", envelope.message_id)
        assert found, envelope.message_id
        self.seen[envelope.message_id] = self.store.send(int(found[1]))
        await super().send(envelope, ready)


def test_what_a_message_carries_is_stored_before_it_goes_out(settings: Settings, store: Store) -> None:
    """A click can come as soon as a message is delivered: its links must be there to go to."""
    mailer = Looking(store)
    engine = small_batches(settings, store, mailer)
    many(store)
    report = asyncio.run(engine.send_due(T0))
    assert len(report.sent) == LEADS and len(mailer.seen) == LEADS
    for message_id, send in mailer.seen.items():
        assert send.state is SendState.SENDING and send.message_id == message_id
        assert send.subject.startswith("Welcome to") and send.links  # the confirmation tracks its call back
        assert send.links == store.send(send.id).links  # what the result stored later left as it was


class Patient(MemoryMailer):
    """Takes no message after the first until the first one's result is in the outbox table."""

    def __init__(self, store: Store):
        super().__init__()
        self.store = store

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> None:
        if ready is not None:
            await ready()
        if self.sent:
            found = re.match(r"<send\.(\d+)\.", self.sent[0].message_id)
            assert found, self.sent[0].message_id
            for _ in range(100):
                if self.store.send(int(found[1])).state is SendState.SENT:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the first result never reached the outbox table")
        self.sent.append(envelope)


def test_a_run_stores_its_results_every_second_however_slowly_it_goes(settings: Settings, store: Store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite the builder stores the run's log before each claim; a run that claims nothing more (here
    its lanes wait) stores it on a timer, so the judge soon sees what was delivered."""
    build = batch.Preparer.next

    def claiming_only(self: batch.Preparer, size: int | None = None) -> list[batch.Prepared]:
        self.log = None  # the builder stores nothing: only the run itself can
        return build(self, size)

    monkeypatch.setattr(batch.Preparer, "next", claiming_only)
    mailer = Patient(store)
    engine = small_batches(settings, store, mailer)
    many(store)
    report = asyncio.run(engine.send_due(T0))
    assert len(report.sent) == LEADS and not report.failed


def test_a_long_run_starts_its_builder_before_it_records_the_sends(settings: Settings, store: Store,
                                                                   workshops: list[workshop_.Builder],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder forks and compiles the templates meanwhile; the run then uses that one builder."""
    seen: list[str] = []
    enqueue = Outbox.enqueue_many

    def noting(self: Outbox, *args: Any) -> Any:
        seen.append(f"recorded with {len(workshops)} builder(s) started")
        return enqueue(self, *args)

    monkeypatch.setattr(Outbox, "enqueue_many", noting)
    mailer = MemoryMailer()
    engine = small_batches(settings, store, mailer)
    many(store)
    report = asyncio.run(engine.send_due(T0))
    assert seen == ["recorded with 1 builder(s) started"]  # every send in one transaction
    assert len(workshops) == 1 and workshops[0].pool is not None
    assert len(report.sent) == LEADS == len(mailer.sent)


def test_sends_that_could_not_be_enqueued_are_planned_again(settings: Settings, store: Store,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The database fails while the sends are recorded: nothing is delivered, the run tells the failure,
    and the next run sends every mail once."""
    enqueue = Outbox.enqueue_many

    def failing(self: Outbox, steps: Any, now: Any) -> Any:
        raise OSError("disk I/O error")

    monkeypatch.setattr(Outbox, "enqueue_many", failing)
    mailer = MemoryMailer()
    engine = small_batches(settings, store, mailer)
    many(store)
    with pytest.raises(OSError, match="disk I/O error"):
        asyncio.run(engine.send_due(T0))
    assert mailer.sent == []
    monkeypatch.setattr(Outbox, "enqueue_many", enqueue)
    report = asyncio.run(engine.send_due(T0))
    assert len(report.sent) == LEADS == len({envelope.recipient for envelope in mailer.sent}) == len(mailer.sent)


@pytest.mark.parametrize("week", [0, 1], ids=["confirmations", "digests without items"])
def test_the_progress_counts_the_sends_enqueued_and_nothing_else(settings: Settings, store: Store, week: int) -> None:
    """The total is what was enqueued; a digest skipped for want of items is never in it."""
    seen: list[tuple[int, int, bool]] = []
    engine = small_batches(settings, store, MemoryMailer())
    many(store)
    if week:
        asyncio.run(engine.send_due(T0))  # the confirmations; the feeds were never read: no items
    report = asyncio.run(engine.send_due(T0 + timedelta(days=7 * week),
                                         progress=lambda *args: seen.append(args)))
    expected = 0 if week else LEADS
    assert len(report.skipped) == LEADS - expected
    assert seen[-1] == (expected, expected, True)
    assert all(total <= expected for _, total, _ in seen)  # never a skipped digest counted


def test_a_short_run_builds_its_batch_in_a_thread(settings: Settings, store: Store,
                                                  workshops: list[workshop_.Builder]) -> None:
    mailer = MemoryMailer()
    engine = small_batches(settings, store, mailer)
    for n in range(2 * BATCH):  # not more than two batches
        make_lead(store, email=f"lead{n:02}@example.com")
    report = asyncio.run(engine.send_due(T0))
    assert [workshop.pool for workshop in workshops] == [None]
    assert len(report.sent) == 2 * BATCH and len({envelope.message_id for envelope in mailer.sent}) == 2 * BATCH


def scheduling(pid: int) -> int:
    return os.sched_getscheduler(pid)


@pytest.fixture
def idle_builder() -> None:
    """Skips a test that needs a builder forked from this process and free to leave idle priority."""
    if threading.active_count() > 1:
        pytest.skip("another thread runs: the builder is not forked from this process")
    if not workshop_._can_leave_idle():
        pytest.skip("this system does not let a process leave idle priority (no CAP_SYS_NICE, RLIMIT_NICE)")


@pytest.mark.usefixtures("idle_builder")
def test_the_builder_builds_at_idle_priority_and_claims_at_normal_priority(settings: Settings, store: Store,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """It never holds the database's lock at idle priority; between batches it is a normal process."""
    claimed_at: list[int] = []  # in the builder process (forked with these patches)
    claim = Outbox.claim

    def noting_claim(self: Outbox, *args: Any) -> Any:
        claimed_at.append(os.sched_getscheduler(0))
        return claim(self, *args)

    class Noting(Composer):  # tells, as the message's problem, how it was claimed and built
        def compose(self, *args: Any) -> Any:
            raise NurtureError(f"claimed {claimed_at[-1]}, built {os.sched_getscheduler(0)}")

    monkeypatch.setattr(Outbox, "claim", noting_claim)
    engine = small_batches(settings, store, MemoryMailer())
    many(store)
    engine.enqueue_due(T0, Report())

    async def main() -> tuple[set[str | None], int]:
        noting = Noting(engine.settings, engine.renderer, engine.composer.urls)
        preparer = batch.Preparer(engine.settings, noting, store, Outbox(store), T0)
        workshop = workshop_.Builder(preparer, in_process=True)
        try:
            built = await workshop.submit()
            assert workshop.builder_pid is not None
            return {item.problem for item in built}, scheduling(await asyncio.wrap_future(workshop.builder_pid))
        finally:
            workshop.close()

    built, between = asyncio.run(main())
    assert built == {f"NurtureError: claimed {os.SCHED_OTHER}, built {os.SCHED_IDLE}"}
    assert between == os.SCHED_OTHER


@pytest.mark.usefixtures("idle_builder")
def test_a_sender_that_waits_hurries_the_builder(settings: Settings, store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    class Slow(Composer):
        def compose(self, *args: Any) -> Any:
            time.sleep(0.1)
            return super().compose(*args)

    engine = small_batches(settings, store, MemoryMailer())
    many(store)
    engine.enqueue_due(T0, Report())

    async def main() -> list[int]:
        slow = Slow(engine.settings, engine.renderer, engine.composer.urls)
        preparer = batch.Preparer(engine.settings, slow, store, Outbox(store), T0)
        workshop = workshop_.Builder(preparer, in_process=True)
        try:
            assert workshop.builder_pid is not None
            pid = await asyncio.wrap_future(workshop.builder_pid)
            upcoming = workshop.submit()
            await asyncio.sleep(0.2)  # building, at idle priority
            seen = [scheduling(pid)]
            await workshop.hurry()
            seen.append(scheduling(pid))
            assert len(await upcoming) == BATCH
            return seen
        finally:
            workshop.close()

    assert asyncio.run(main()) == [os.SCHED_IDLE, os.SCHED_OTHER]


@pytest.mark.timeout(60)
@pytest.mark.usefixtures("idle_builder")
def test_a_builder_killed_while_it_writes_a_batch_back_ends_the_run(settings: Settings, store: Store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed halfway through sending a batch back (its pipe holds half a message), the builder is still
    found dead: the run ends with the reason (it waited forever for the rest of the message)."""
    sender, send_bytes = os.getpid(), multiprocessing.connection.Connection.send_bytes
    sent = [0]  # in the builder (forked with this patch): its first answer is its pid, its second a batch

    def half_then_die(self: Any, buf: Any, *args: Any) -> None:
        if os.getpid() == sender:
            return send_bytes(self, buf, *args)
        sent[0] += 1
        if sent[0] < 2:
            return send_bytes(self, buf, *args)
        self._send(struct.pack("!i", len(bytes(buf)) + 1_000) + bytes(buf)[:16])  # the header, a little of it
        os._exit(9)

    monkeypatch.setattr(multiprocessing.connection.Connection, "send_bytes", half_then_die)
    engine = small_batches(settings, store, MemoryMailer())
    many(store)
    engine.enqueue_due(T0, Report())

    async def main() -> BaseException:
        preparer = batch.Preparer(engine.settings, engine.composer, store, Outbox(store), T0)
        workshop = workshop_.Builder(preparer, in_process=True)
        try:
            with pytest.raises(RunFailed) as failed:
                await asyncio.wait_for(backlog_.Backlog(workshop).take(), 30)
            return failed.value
        finally:
            workshop.close()

    assert str(asyncio.run(main())) == workshop_.BUILDER_DIED


@pytest.mark.parametrize("ahead", [1, 2, 3])
def test_a_run_stopped_early_gives_back_every_batch_built_ahead(settings: Settings, store: Store, ahead: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workshop_, "BATCHES_AHEAD", ahead)
    engine = server_down(settings, store)
    many(store)
    report = asyncio.run(engine.send_due(T0))
    assert report.paused is not None
    counts = Outbox(store).counts()
    assert counts.get(SendState.SENDING, 0) == 0  # nothing left claimed
    assert counts[SendState.QUEUED] + counts[SendState.DEFERRED] == LEADS


def test_the_first_batches_are_small_so_that_delivery_starts_at_once(settings: Settings, store: Store,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []  # of the batches built for the lanes, in the order they were asked for
    submit = workshop_.Builder.submit

    def noting(self: workshop_.Builder, size: int | None = None) -> Any:
        upcoming = submit(self, size)
        sizes.append(-1)
        place = len(sizes) - 1
        upcoming.add_done_callback(lambda done: sizes.__setitem__(place, len(done.result())))
        return upcoming

    monkeypatch.setattr(workshop_.Builder, "submit", noting)
    monkeypatch.setattr(backlog_, "FIRST_BATCH", 1)
    engine = small_batches(settings, store, MemoryMailer())
    many(store)
    report = Report()
    engine.enqueue_due(T0, report)  # all of them before the run (send_due delivers while it enqueues)
    asyncio.run(engine.deliver(T0, report))
    assert len(report.sent) == LEADS
    assert sizes == [1, 3, BATCH, BATCH, BATCH, 4, 0, 0]  # 23 leads, three times more a batch up to BATCH; the
    # last two asked for (two ahead, in a process) find the outbox empty


SENDER = """
import asyncio, sys, threading
from pathlib import Path
from nurture.send.batch import Preparer
from nurture.send.builder import Builder
from nurture.engine import Engine, Report
from nurture.send.mailer import MemoryMailer
from nurture.send.outbox import Outbox
from nurture.send.results import Finished
from nurture.settings import load_settings
from nurture.store import Store
from tests.conftest import T0, make_lead

settings = load_settings({"NURTURE_DATABASE_URL": sys.argv[1], "NURTURE_SECRET_KEY": "test"}, Path(sys.argv[2]))
store = Store(settings.database_url)
store.create()
engine = Engine(settings, store, MemoryMailer())
for n in range(30):
    make_lead(store, email=f"lead{n:02}@example.com")
engine.enqueue_due(T0, Report())
threading.Thread(target=threading.Event().wait, daemon=True).start()  # as `nurture run` has

async def main():
    workshop = Builder(Preparer(engine.settings, engine.composer, store, Outbox(store), T0), in_process=True)
    print(await asyncio.wrap_future(workshop.builder_pid), flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.mark.timeout(60)
def test_a_builder_from_the_fork_server_leaves_when_its_sender_is_killed(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    arguments = [f"sqlite:///{tmp_path / 'n.db'}", str(root / "nurture.yaml")]
    sender = subprocess.Popen([sys.executable, "-c", SENDER, *arguments], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert sender.stdout is not None
        builder = int(sender.stdout.readline())
        assert builder not in children(sender.pid) and alive(builder)  # a child of the fork server
    finally:
        sender.kill()
        sender.wait()
    deadline = time.monotonic() + 10
    while alive(builder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(builder), "a builder process outlived its sender"


def test_a_run_whose_results_cannot_be_stored_stops_and_the_next_run_ends_the_work(
        settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database fails once the first results are stored (where a run logs them, when it applies its
    log): the run stops, and the next one sends the rest; none went twice but the few out, unrecorded."""
    write_in = Outbox.write_in

    def failing(self: Outbox, connection: Any, sends: list[Finished], *args: Any) -> None:
        if any(finished.row["send_id"] > 8 for finished in sends):
            raise RuntimeError("the database went away")
        write_in(self, connection, sends, *args)

    async def failing_ahead(self: Outbox, results: list[Result], *args: Any) -> None:  # PostgreSQL's way
        if any(result.send.id > 8 for result in results):
            raise RuntimeError("the database went away")
        await finish_ahead(self, results, *args)

    finish_ahead = Outbox.finish_ahead
    monkeypatch.setattr(Outbox, "write_in", failing)
    monkeypatch.setattr(Outbox, "finish_ahead", failing_ahead)
    mailer = MemoryMailer()
    engine = small_batches(settings, store, mailer)
    many(store)
    with pytest.raises(RuntimeError, match="the database went away"):
        asyncio.run(engine.send_due(T0))
    monkeypatch.setattr(Outbox, "write_in", write_in)
    monkeypatch.setattr(Outbox, "finish_ahead", finish_ahead)
    asyncio.run(engine.send_due(T0))
    counts = Outbox(store).counts()
    assert counts == {SendState.SENT: LEADS}  # nothing left claimed, nothing lost
    assert {envelope.recipient for envelope in mailer.sent} == {f"lead{n:02}@example.com" for n in range(LEADS)}
    assert len(mailer.sent) - LEADS <= settings.smtp.concurrency  # sent again: only what was out, unrecorded


def test_the_progress_of_a_paused_run_counts_what_it_tried(settings: Settings, store: Store) -> None:
    seen: list[tuple[int, int, bool]] = []
    engine = server_down(settings, store)
    many(store)
    report = asyncio.run(engine.send_due(T0, progress=lambda *args: seen.append(args)))
    assert report.paused is not None
    tried = len(report.deferred) + len(report.failed)
    done, total, _ = seen[-1]
    assert (done, total) == (tried, LEADS) and tried < LEADS  # not "23 of 23" after trying a few
