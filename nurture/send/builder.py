"""Where a run's batches are built: in a thread for a short run, in a process of its own for a long one.

The builder process works at idle priority (SCHED_IDLE) while it builds: the sender, and an SMTP server
on the same machine, never wait for a core it holds. It claims and writes, which holds the database's
lock, at normal priority. When the sender waits for a batch, it hurries the builder back to normal
priority. Where the system would not let a process leave idle priority again (no CAP_SYS_NICE, a low
RLIMIT_NICE) the builder keeps normal priority throughout.

What it buys (`python scripts/bench_send.py --without ...`, 5,000 confirmations, medians of 5 interleaved
rounds on 2 cores, nurture against the raw blast of the same run): 0.85x with both; 0.64x with every
batch built in a thread of the sender (`--without builder-process`); 0.75x with the process at normal
priority (`--without idle-priority`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.connection import Connection

from nurture.errors import RunFailed
from nurture.send.batch import Prepared, Preparer, Recipe

BUILDER_DIED = ("the builder process died (killed, or out of memory); the sends it held were given back: "
                "run send-due again")
ORPHAN_CHECK_SECONDS = 0.5
BATCHES_AHEAD = 2  # built ahead of the sender, in a process


class Builder:
    """Where batches are built: a thread for a short run, a process of its own when there is much to send.

    The process is forked from this one while it runs a single thread (`nurture send-due`): it starts at
    once and shares what is loaded. With other threads about (`nurture run`'s scheduler and server), a
    lock one of them held at the fork would stay locked forever in the child; the process is then
    forked from multiprocessing's fork server instead, and makes its own store and composer from the settings.
    """

    def __init__(self, preparer: Preparer, in_process: bool):
        self.preparer = preparer
        self.pool: Executor | None = None
        self.builder_pid: Future[int] | None = None
        self.forked = False  # forked from this process, rather than from the fork server
        self.thaw = False  # whether close() gives what the fork froze back to the collector
        self.lifeline: Connection | None = None
        if not in_process or "fork" not in multiprocessing.get_all_start_methods():
            return
        if threading.active_count() == 1:
            self.thaw = gc.get_freeze_count() == 0  # else run_async froze what was loaded: it stays frozen
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
        try:
            return loop.run_in_executor(self.pool, _next, size)
        except BrokenProcessPool:  # it died after building the last batch
            raise RunFailed(BUILDER_DIED) from None

    async def hurry(self) -> None:
        """The sender waits for a batch: let the builder have a core as any process would."""
        if self.builder_pid is None:
            return
        pid = await asyncio.wrap_future(self.builder_pid)
        with contextlib.suppress(OSError):  # it may have left
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))

    def gone(self) -> bool:
        """Whether the builder process has died. A builder killed while it wrote a batch back leaves half a
        message in the pipe, which the pool's reader waits for the rest of forever: `abandon` it then."""
        if self.builder_pid is None or not self.builder_pid.done() or self.builder_pid.exception() is not None:
            return False
        pid = self.builder_pid.result()
        try:  # a child of this process: dead, not yet collected (WNOWAIT: the pool still collects it)
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # a child of the fork server
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False

    def abandon(self) -> None:
        """End the wait of the pool's reader for a dead builder's half-written batch: with this process's end
        of the pipe closed as well, the reader meets its end, and the pool breaks (BrokenProcessPool) as it
        does for a builder that died between batches."""
        queue = getattr(self.pool, "_result_queue", None)  # CPython's ProcessPoolExecutor: no public way
        writer = getattr(queue, "_writer", None)
        if writer is not None and not writer.closed:
            writer.close()

    def close(self) -> None:
        """Let the builder go."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.lifeline is not None:
            self.lifeline.close()
        if self.thaw:
            gc.unfreeze()
            self.thaw = False


_adopted: tuple[Preparer, Callable[[], bool]] | None = None  # in the builder: the preparer, and orphaned?


def start_fork_server() -> None:
    """Start the fork server now rather than in the first long run that needs it (half a second, with
    nurture loaded): for a process that has other threads, such as `nurture run`."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        _fork_server()
        multiprocessing.forkserver.ensure_running()  # type: ignore[attr-defined]


def _fork_server() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "nurture.render.composer"])  # each builder starts with nurture loaded
    return context


def _adopt(preparer: Preparer, sender: int) -> None:
    """Start of a forked builder: its own database connections, never the sender's. It is orphaned once
    its parent, the sender, is gone."""
    preparer.store.after_fork()
    _start_building(preparer, lambda: os.getppid() != sender)


def _adopt_recipe(recipe: Recipe, lifeline: Connection) -> None:
    """Start of a builder forked from the fork server: a store and composer of its own, from the settings. Its parent
    is the fork server, which outlives the sender as long as any of its children runs: the builder is
    orphaned once the sender's end of `lifeline` closes."""
    _start_building(Preparer.from_recipe(recipe), lifeline.poll)


def _start_building(preparer: Preparer, orphaned: Callable[[], bool]) -> None:
    global _adopted
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the sender stops its builder
    if _can_leave_idle():
        preparer.quietly = _idle_priority
    _adopted = (preparer, orphaned)
    with preparer.quietly():
        preparer.warm()
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
