"""Many small writes as one transaction: a group commit, for writers on an event loop.

Delivery results and tracking hits each must be stored before their sender goes on (a message is
taken, a hit answered), yet a transaction per item would cap either at the speed of a commit. Items
that arrive while one group is being written form the next group.

Where the write runs: in a thread; on the event loop where it is a coroutine (an async driver's
connection, which waits for the database without a thread or the GIL); or, for SQLite (a local file, a
write shorter than a hop to a thread), on the event loop itself. There SQLite's own wait for another
writer's lock would block the loop, sleeping up to 100 ms at a time; the writer's connection instead
fails at once ("database is locked", see Store.connection) and the write is tried again after a
millisecond, then at growing intervals up to five, while the loop goes on serving everything else.
(uvloop rounds its timers to whole milliseconds: a shorter wait would not wait at all.)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

T = TypeVar("T")
R = TypeVar("R")
LOCK_RETRY_SECONDS = (0.001, 0.002, 0.005)  # the waits between tries, the last repeated
LOCK_WAIT_SECONDS = 30.0
log = logging.getLogger(__name__)


class GroupCommit(Generic[T, R]):
    """Collects items and writes them in groups; `put` returns once its item is committed, with what
    `write` returned for it (write returns one result per item, or None for none).

    `write` may be a coroutine function: it is awaited on the event loop.
    `on_loop`: write on the event loop, waiting for SQLite's lock without blocking it (see above).
    `attempts`: how often a group is tried when the write fails for another reason; the last failure
    goes to every waiter of the group.
    """

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R] | None | Awaitable[Sequence[R] | None]], *,
                 on_loop: bool = False, attempts: int = 1, lock_wait: float = LOCK_WAIT_SECONDS):
        self.write = write
        self.on_loop = on_loop
        self.attempts = attempts
        self.lock_wait = lock_wait
        self.pending: list[tuple[T, asyncio.Future[R | None]]] = []
        self.running: asyncio.Task[None] | None = None

    async def put(self, item: T) -> R | None:
        return await self.committed(self.add(item))

    def add(self, item: T) -> asyncio.Future[R | None]:
        """Queue an item for the next group without starting a write; the future is done once the item
        is committed. It goes with any write under way or to come: `committed` starts one if need be."""
        future: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        return future

    async def committed(self, future: asyncio.Future[R | None]) -> R | None:
        """Wait until the item of `future` (from `add`) is committed, writing what waits if no write is under way."""
        if not future.done() and (self.running is None or self.running.done()):
            self.running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.pending:
            group, self.pending = self.pending, []
            try:
                results = await self.store([item for item, _ in group])
            except Exception as error:  # noqa: BLE001 - handed to every waiter of the group
                for _, future in group:
                    if not future.done():  # a waiter may have been cancelled meanwhile
                        future.set_exception(error)
                continue
            for index, (_, future) in enumerate(group):
                if not future.done():
                    future.set_result(None if results is None else results[index])

    async def store(self, items: list[T]) -> Sequence[R] | None:
        """Write one group; kept waiting while SQLite's write lock is held, tried again on other failures."""
        failures = waits = 0
        deadline = time.monotonic() + self.lock_wait
        while True:
            try:
                if self.on_loop or inspect.iscoroutinefunction(self.write):
                    written = self.write(items)
                    return await written if inspect.isawaitable(written) else written
                return await asyncio.to_thread(self.write, items)  # type: ignore[return-value, arg-type]
            except DBAPIError as error:
                if locked(error) and time.monotonic() < deadline:
                    await asyncio.sleep(LOCK_RETRY_SECONDS[min(waits, len(LOCK_RETRY_SECONDS) - 1)])
                    waits += 1
                    continue
                failures += 1
                if failures >= self.attempts:
                    raise
                log.warning("writing a group of %d failed; trying again", len(items), exc_info=True)
                await asyncio.sleep(0.05 * failures)


def locked(error: DBAPIError) -> bool:
    """True when SQLite refused a write because another connection holds its lock."""
    return isinstance(error, OperationalError) and "database is locked" in str(error.orig)
