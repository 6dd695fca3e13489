"""Delivering one message well: quick retries with back-off, a pace, and a breaker for a dead server.

The policies are small and take their clock and randomness from the caller, so tests run them
without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from nurture.errors import DeliveryError
from nurture.mailer import Mailer, Ready
from nurture.message import Envelope
from nurture.models import SendState
from nurture.settings import Delivery

T = TypeVar("T")
R = TypeVar("R")
Sleep = Callable[[float], Awaitable[None]]


def backoff(attempt: int, base: float, jitter: float, cap: float = 30.0) -> float:
    """Seconds to wait before quick retry number `attempt` (0-based): doubling, jittered by 0.5x to 1.5x."""
    return min(cap, base * 2**attempt) * (0.5 + jitter)


async def attempt(mailer: Mailer, envelope: Envelope, policy: Delivery, sleep: Sleep = asyncio.sleep,
                  rand: Callable[[], float] = random.random,
                  ready: Ready | None = None) -> tuple[SendState, str | None]:
    """Deliver with quick retries: sent; bounced on a 5xx; deferred when the retries run out. `ready` is
    handed to the mailer (see Mailer.send)."""
    error: DeliveryError | None = None
    for number in range(policy.retries + 1):
        if number:
            await sleep(backoff(number - 1, policy.backoff_seconds, rand()))
        try:
            await (mailer.send(envelope) if ready is None else mailer.send(envelope, ready))
            return SendState.SENT, None
        except DeliveryError as failure:
            if failure.permanent:
                return SendState.BOUNCED, str(failure)
            error = failure
    return SendState.DEFERRED, str(error)


@dataclass
class Breaker:
    """Trips after `limit` deliveries in a row failed: the server is down, stop burning through the list."""

    limit: int
    failures: int = 0

    def record(self, state: SendState) -> None:
        self.failures = 0 if state in (SendState.SENT, SendState.BOUNCED) else self.failures + 1

    @property
    def tripped(self) -> bool:
        return self.failures >= self.limit


class Pacer:
    """Spaces messages evenly so that neither the per-second nor the per-hour limit is exceeded."""

    def __init__(self, per_second: float | None, per_hour: int | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep):
        self.interval = max(1 / per_second if per_second else 0.0, 3600 / per_hour if per_hour else 0.0)
        self.clock = clock
        self.sleep = sleep
        self.next: float | None = None

    def reserve(self) -> float:
        """Take the next free slot; return how long until it comes."""
        now = self.clock()
        slot = now if self.next is None else max(now, self.next)
        self.next = slot + self.interval
        return slot - now

    async def wait(self) -> None:
        if self.interval:
            delay = self.reserve()  # reserved before awaiting, so concurrent senders never share a slot
            if delay > 0:
                await self.sleep(delay)


class GroupCommit(Generic[T, R]):
    """Collects items and writes them in groups; `put` returns once its item is committed, with what
    `write` returned for it (write returns one result per item, or None for none).

    A delivery holds its concurrency slot until its result is stored, so after a crash at most
    `concurrency` messages can have gone out without being recorded; a tracking hit is answered only
    once its event is stored, yet a thousand concurrent hits cost one transaction, not a thousand.
    """

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R] | None], in_thread: bool = True):
        self.write = write
        self.in_thread = in_thread  # False: write on the event loop (a local database, short writes)
        self.pending: list[tuple[T, asyncio.Future[R | None]]] = []
        self.running: asyncio.Task[None] | None = None

    async def put(self, item: T) -> R | None:
        return await self.settle(self.add(item))

    def add(self, item: T) -> asyncio.Future[R | None]:
        """Queue an item for the next group without starting a write; the future is done once the item
        is committed. It goes with any write under way or to come: `settle` starts one if need be."""
        future: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        return future

    async def settle(self, future: asyncio.Future[R | None]) -> R | None:
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
        """Write one group: in a thread, or on the event loop."""
        return await asyncio.to_thread(self.write, items) if self.in_thread else self.write(items)
