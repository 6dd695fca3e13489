"""The next batches of the outbox, claimed and built ahead of the sender: in a thread, or in a process of its own.

Building a message (render, CSS-inlined HTML, MIME) costs about as much CPU as sending it, and the event
loop that talks SMTP is a single thread: for a long run the batches are built in a forked process, on
another core, two batches ahead of the loop. Building is deterministic, so what a process builds is
what a retry after a crash builds again.

The builder runs at idle priority (SCHED_IDLE) while it is ahead: the sender, and an SMTP server on
the same machine, never wait for a core it holds. When the sender does wait for a batch, the builder is
hurried to normal priority until that batch is done. Where the system would not let it leave idle
priority again (no CAP_SYS_NICE, a low RLIMIT_NICE) it keeps normal priority throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from nurture.errors import NurtureError
from nurture.message import Envelope
from nurture.models import SendState
from nurture.outbox import ClaimedSend, Outbox, Result
from nurture.runtime import smtp_mailer
from nurture.settings import Settings
from nurture.store import Store

if TYPE_CHECKING:
    from nurture.engine import Engine

log = logging.getLogger(__name__)
ORPHAN_CHECK_SECONDS = 0.5
FIRST_BATCH = 20  # sends: the run's first batch is small, so that delivery starts at once
BATCHES_AHEAD = 2  # built ahead of the sender, in a process
HURRY_AGAIN_SECONDS = 0.02


@dataclass(frozen=True)
class Recipe:
    """How to make a Preparer in a process started afresh (Preparer.from_recipe)."""

    settings: Settings
    database_url: str
    worker: str  # claims are made in the sender's name: its lease, and its pid for a restart to see
    now: datetime


@dataclass(frozen=True)
class Prepared:
    """A claimed send with its message built, or with the reason it could not be built."""

    send: ClaimedSend
    email: str
    envelope: Envelope | None = None
    described: dict[str, Any] | None = None  # what was built: message_id, subject, links
    problem: str | None = None  # set when there is no envelope


class Preparer:
    """Claims the next batch for one worker and builds its messages; sends to suppressed leads fail at once."""

    def __init__(self, engine: Engine, outbox: Outbox, now: datetime):
        self.engine = engine
        self.outbox = outbox
        self.now = now
        self.policy = engine.settings.delivery
        self.quietly: Callable[[], AbstractContextManager[object]] = nullcontext  # how to build (see _idle_priority)

    def recipe(self) -> Recipe:
        """What a process started afresh needs to build as this preparer does."""
        return Recipe(self.engine.settings, self.engine.store.url, self.outbox.worker, self.now)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Preparer:
        """A preparer made from a recipe, in another process: its own store and renderer, the same worker."""
        from nurture.engine import Engine  # the engine runs its batches through this module

        store = Store(recipe.database_url)
        engine = Engine(recipe.settings, store, smtp_mailer(recipe.settings))  # the mailer is never used here
        return cls(engine, Outbox(store, recipe.worker), recipe.now)

    def next(self, size: int | None = None) -> list[Prepared]:
        """The next batch (of `size`, or the policy's batch size), built; empty when nothing is left to claim."""
        while True:
            sends = self.outbox.claim(size or self.policy.batch_size, self.now, self.policy.lease_seconds)
            if not sends:
                return []
            with self.quietly():  # reads take no lock
                leads = self.engine.store.leads_by_id([send.lead_id for send in sends])
                items = self.outbox.items([send.id for send in sends if send.id is not None])
                ready = [self._build(send, leads[send.lead_id], items.get(send.id or 0, [])) for send in sends
                         if leads[send.lead_id].suppressed is None]
            suppressed = [Result(send, SendState.FAILED, f"lead is {reason.value}") for send in sends
                          if (reason := leads[send.lead_id].suppressed) is not None]
            if suppressed:
                self.outbox.finish(suppressed, self.now, self.engine.settings.scoring, self.policy)
            if ready:
                return ready

    def _build(self, send: ClaimedSend, lead: Any, items: list[Any]) -> Prepared:
        try:
            envelope, described = self.engine.compose(send, lead, items)
        except Exception as broken:  # noqa: BLE001 - one message that cannot be built never stops the run
            if not isinstance(broken, NurtureError):
                log.exception("send %s failed", send.id)
            return Prepared(send, lead.email, problem=f"{type(broken).__name__}: {broken}")
        return Prepared(send, lead.email, envelope, described)


class Workshop:
    """Where batches are built: a thread for a short run, a process of its own when there is much to send.

    The process is forked from this one while it runs a single thread (`nurture send-due`): it starts at
    once and shares what is loaded. With other threads about (`nurture run`'s scheduler and server), a
    lock one of them held at the fork would stay locked forever in the child; the process is then
    forked from multiprocessing's fork server instead, and builds its own engine from the settings.
    """

    def __init__(self, preparer: Preparer, in_process: bool):
        self.preparer = preparer
        self.pool: Executor | None = None
        self.builder_pid: Future[int] | None = None
        self.forked = False
        self.lifeline: Connection | None = None
        if not in_process or "fork" not in multiprocessing.get_all_start_methods():
            return
        if threading.active_count() == 1:
            gc.freeze()  # what both processes hold at the fork is never scanned by a collector (nor copied by one)
            self.forked = True
            self.pool = ProcessPoolExecutor(1, multiprocessing.get_context("fork"), _adopt, (preparer, os.getpid()))
            self.builder_pid = self.pool.submit(os.getpid)  # fork now, before this process starts threads of its own
            return
        lifeline, self.lifeline = multiprocessing.Pipe(duplex=False)  # the builder leaves once this end closes
        self.pool = ProcessPoolExecutor(1, _fork_server(), _adopt_recipe, (preparer.recipe(), lifeline))
        self.builder_pid = self.pool.submit(os.getpid)  # starts the process, which takes its copy of `lifeline`
        lifeline.close()

    @property
    def ahead(self) -> int:
        """How many batches to have built ahead of the sender."""
        return 1 if self.pool is None else BATCHES_AHEAD

    def submit(self, size: int | None = None) -> asyncio.Future[list[Prepared]]:
        """The next batch (of `size`, or the policy's), to come."""
        loop = asyncio.get_running_loop()
        if self.pool is None:
            return loop.run_in_executor(None, self.preparer.next, size)
        return loop.run_in_executor(self.pool, _next, size)

    async def hurry(self) -> None:
        """The sender waits for a batch: let the builder have a core as any process would."""
        if self.builder_pid is None:
            return
        pid = await asyncio.wrap_future(self.builder_pid)
        with contextlib.suppress(OSError):  # it may have left
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.lifeline is not None:
            self.lifeline.close()
        if self.forked:
            gc.unfreeze()


_adopted: tuple[Preparer, Callable[[], bool]] | None = None  # in the builder: the preparer, and orphaned?


def start_fork_server() -> None:
    """Start the fork server now rather than in the first long run that needs it (half a second, with
    nurture loaded): for a process that has other threads, such as `nurture run`."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        _fork_server()
        multiprocessing.forkserver.ensure_running()  # type: ignore[attr-defined]


def _fork_server() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "nurture.engine"])  # each builder starts with nurture loaded
    return context


def _adopt(preparer: Preparer, sender: int) -> None:
    """Start of a forked builder: its own database connections, never the sender's. It is orphaned once
    its parent, the sender, is gone."""
    preparer.engine.store.after_fork()
    _start_building(preparer, lambda: os.getppid() != sender)


def _adopt_recipe(recipe: Recipe, lifeline: Connection) -> None:
    """Start of a builder forked from the fork server: an engine of its own, from the settings. Its parent
    is the fork server, which outlives the sender as long as any of its children runs: the builder is
    orphaned once the sender's end of `lifeline` closes."""
    _start_building(Preparer.from_recipe(recipe), lifeline.poll)


def _start_building(preparer: Preparer, orphaned: Callable[[], bool]) -> None:
    global _adopted
    if _can_leave_idle():
        preparer.quietly = _idle_priority
    _adopted = (preparer, orphaned)
    threading.Thread(target=_leave_when, args=(orphaned,), daemon=True, name="orphan-watch").start()


def _leave_when(orphaned: Callable[[], bool]) -> None:
    """Exit once the sender is gone (kill -9): an idle builder would otherwise wait for work forever."""
    while not orphaned():
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)


def _next(size: int | None) -> list[Prepared]:
    assert _adopted is not None
    preparer, orphaned = _adopted
    if orphaned():  # the sender died (kill -9): claim nothing more in its name
        return []
    return preparer.next(size)


@contextmanager
def _idle_priority() -> Iterator[None]:
    """Build at idle priority; claim and write (holding the database's lock) at normal priority."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _can_leave_idle() -> bool:
    """Whether this process may go back from idle to normal priority: tried on a thread of its own."""
    if not hasattr(os, "SCHED_IDLE"):
        return False
    allowed: list[bool] = []

    def trial() -> None:
        thread = threading.get_native_id()
        try:
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
            os.sched_setscheduler(thread, os.SCHED_OTHER, os.sched_param(0))
            allowed.append(True)
        except OSError:
            allowed.append(False)

    thread = threading.Thread(target=trial, name="priority-trial")
    thread.start()
    thread.join()
    return allowed == [True]


class Backlog:
    """The built sends no lane has taken yet, refilled a batch at a time while the next ones are built."""

    def __init__(self, workshop: Workshop):
        self.workshop = workshop
        self.items: deque[Prepared] = deque()
        self.upcoming: deque[asyncio.Future[list[Prepared]]] = deque([workshop.submit(FIRST_BATCH)])
        self.upcoming.extend(workshop.submit() for _ in range(workshop.ahead - 1))
        self.refilling = asyncio.Lock()
        self.exhausted = False
        self.batches = 0  # batches taken so far
        self.failure: BaseException | None = None  # a batch that could not be built (its builder died, say)

    async def take(self) -> Prepared | None:
        """The next send to deliver; None once the outbox has nothing more for this run."""
        if not self.items:
            async with self.refilling:
                if not self.items and not self.exhausted:  # another lane may have refilled while this one waited
                    await self._refill()
        return self.items.popleft() if self.items else None

    async def _refill(self) -> None:
        upcoming = self.upcoming.popleft()
        while not upcoming.done():  # hurried again and again: the builder lowers itself for each batch
            await self.workshop.hurry()
            await asyncio.wait([upcoming], timeout=HURRY_AGAIN_SECONDS)
        batch = upcoming.result()
        if not batch:
            self.exhausted = True
            return
        self.items.extend(batch)
        self.batches += 1
        self.upcoming.append(self.workshop.submit())

    async def untaken(self) -> list[Prepared]:
        """What was claimed but never taken: the rest of the backlog and the batches built ahead (once
        they are built: nothing is claimed after this returns)."""
        rest = list(self.items)
        self.items.clear()
        built = await asyncio.gather(*self.upcoming, return_exceptions=True)
        self.upcoming.clear()
        for batch in built:
            if isinstance(batch, BaseException):
                log.error("a batch could not be built: %s: %s", type(batch).__name__, batch)
                self.failure = batch
            else:
                rest += batch
        return rest
