"""The next batch of the outbox, claimed and built ahead of the sender: in a thread, or in a process of its own.

Building a message (render, CSS-inlined HTML, MIME) costs about as much CPU as sending it, and the event
loop that talks SMTP is a single thread: for a long run the batches are built in a forked process, on
another core, while the loop delivers the batch before. Building is deterministic, so what a process
builds is what a retry after a crash builds again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nurture.errors import NurtureError
from nurture.message import Envelope
from nurture.models import SendState
from nurture.outbox import ClaimedSend, Outbox, Result
from nurture.settings import Delivery

if TYPE_CHECKING:
    from nurture.engine import Engine

log = logging.getLogger(__name__)
Write = Callable[[list[Result]], None]
ORPHAN_CHECK_SECONDS = 0.5


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

    def __init__(self, engine: Engine, outbox: Outbox, now: datetime, policy: Delivery, write: Write):
        self.engine = engine
        self.outbox = outbox
        self.now = now
        self.policy = policy
        self.write = write

    def next(self) -> list[Prepared]:
        """The next batch, built; empty when nothing is left to claim."""
        while True:
            sends = self.outbox.claim(self.policy.batch_size, self.now, self.policy.lease_seconds)
            if not sends:
                return []
            leads = self.engine.store.leads_by_id([send.lead_id for send in sends])
            items = self.outbox.items([send.id for send in sends if send.id is not None])
            ready, suppressed = [], []
            for send in sends:
                lead = leads[send.lead_id]
                if lead.suppressed is not None:
                    suppressed.append(Result(send, SendState.FAILED, f"lead is {lead.suppressed.value}"))
                else:
                    ready.append(self._build(send, lead, items.get(send.id or 0, [])))
            if suppressed:
                self.write(suppressed)
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
    """Where batches are built: a thread for a short run, a forked process when there is much to send.

    A process forks only while it runs a single thread: a lock another thread holds at that moment
    (SQLite's, the connection pool's) would stay locked forever in the child. With other threads about
    (the scheduler, a server in the same process, tests) batches are built in a thread.
    """

    def __init__(self, preparer: Preparer, in_process: bool):
        self.preparer = preparer
        self.pool: Executor | None = None
        if in_process and threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
            self.pool = ProcessPoolExecutor(1, multiprocessing.get_context("fork"), _adopt, (preparer, os.getpid()))
            self.pool.submit(os.getpid)  # fork now, before this process starts threads of its own

    def submit(self) -> Any:
        """An awaitable of the next batch."""
        loop = asyncio.get_running_loop()
        if self.pool is None:
            return loop.run_in_executor(None, self.preparer.next)
        return loop.run_in_executor(self.pool, _next)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


_adopted: tuple[Preparer, int] | None = None  # in the forked process: the preparer, and the parent's pid


def _adopt(preparer: Preparer, parent: int) -> None:
    """Start of the forked process: its own database connections, never the parent's."""
    global _adopted
    preparer.engine.store.engine.dispose(close=False)
    _adopted = (preparer, parent)
    threading.Thread(target=_leave_with, args=(parent,), daemon=True, name="orphan-watch").start()


def _leave_with(parent: int) -> None:
    """Exit once the sender is gone (kill -9): an idle builder would otherwise wait for work forever."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(0)


def _next() -> list[Prepared]:
    assert _adopted is not None
    preparer, parent = _adopted
    if os.getppid() != parent:  # the sender died (kill -9): claim nothing more in its name
        return []
    return preparer.next()


class Backlog:
    """The built sends no lane has taken yet, refilled a batch at a time while the next batch is built."""

    def __init__(self, workshop: Workshop):
        self.workshop = workshop
        self.items: deque[Prepared] = deque()
        self.upcoming = workshop.submit()
        self.refilling = asyncio.Lock()
        self.exhausted = False
        self.batches = 0  # batches taken so far

    async def take(self) -> Prepared | None:
        """The next send to deliver; None once the outbox has nothing more for this run."""
        if not self.items:
            async with self.refilling:
                if not self.items and not self.exhausted:  # another lane may have refilled while this one waited
                    await self._refill()
        return self.items.popleft() if self.items else None

    async def _refill(self) -> None:
        batch = await self.upcoming
        if not batch:
            self.exhausted = True
            return
        self.items.extend(batch)
        self.batches += 1
        self.upcoming = self.workshop.submit()

    async def untaken(self) -> list[Prepared]:
        """What was claimed but never taken: the rest of the backlog and the batch built ahead."""
        rest = list(self.items)
        self.items.clear()
        return rest + (await self.upcoming if not self.exhausted else [])
