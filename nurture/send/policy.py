"""Delivering one message well: quick retries with back-off, a pace, and a breaker for a dead server.

The policies are small and take their clock and randomness from the caller, so tests run them
without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nurture.errors import DeliveryError, Fault
from nurture.models import SendState
from nurture.render.message import Envelope
from nurture.send.mailer import Mailer, Ready
from nurture.settings import Delivery

Sleep = Callable[[float], Awaitable[None]]


def backoff(attempt: int, base: float, jitter: float, cap: float = 30.0) -> float:
    """Seconds to wait before quick retry number `attempt` (0-based): doubling, jittered by 0.5x to 1.5x."""
    return min(cap, base * 2**attempt) * (0.5 + jitter)


async def attempt(mailer: Mailer, envelope: Envelope, policy: Delivery, sleep: Sleep = asyncio.sleep,
                  rand: Callable[[], float] = random.random,
                  ready: Ready | None = None) -> tuple[SendState, DeliveryError | None]:
    """Deliver with quick retries: sent; bounced when the address is refused for good; queued again,
    untouched, when the server refuses us (the run then pauses); deferred when the retries run out.
    `ready` is handed to the mailer (see Mailer.send)."""
    error: DeliveryError | None = None
    for number in range(policy.retries + 1):
        if number:
            await sleep(backoff(number - 1, policy.backoff_seconds, rand()))
        try:
            await (mailer.send(envelope) if ready is None else mailer.send(envelope, ready))
            return SendState.SENT, None
        except DeliveryError as failure:
            if failure.fault is Fault.ADDRESS:
                return SendState.BOUNCED, failure
            if failure.fault is Fault.SENDER:
                return SendState.QUEUED, failure
            error = failure
    return SendState.DEFERRED, error


@dataclass
class Breaker:
    """Trips after `limit` deliveries in a row failed (the server is down: stop burning through the list),
    or at once when the server refuses to take mail from us at all."""

    limit: int
    failures: int = 0
    refusal: str | None = None  # why the server will not take our mail

    def record(self, state: SendState) -> None:
        self.failures = 0 if state in (SendState.SENT, SendState.BOUNCED) else self.failures + 1

    def refused(self, reason: str) -> None:
        self.refusal = self.refusal or reason

    @property
    def tripped(self) -> bool:
        return self.refusal is not None or self.failures >= self.limit


TakeSlot = Callable[[float, float], Awaitable[float]]  # (interval, now) -> the moment taken (Limits.take_slot)


class Pacer:
    """Spaces messages evenly so that neither the per-second nor the per-hour limit is exceeded. The
    slots come from `take_slot`, which the delivery run keeps in the database: every process sending
    through it shares one pace, as the relay's limit is per account."""

    def __init__(self, per_second: float | None, per_hour: int | None, take_slot: TakeSlot,
                 clock: Callable[[], float] = time.time, sleep: Sleep = asyncio.sleep):
        self.interval = max(1 / per_second if per_second else 0.0, 3600 / per_hour if per_hour else 0.0)
        self.take_slot = take_slot
        self.clock = clock
        self.sleep = sleep

    async def wait(self) -> None:
        if self.interval:
            slot = await self.take_slot(self.interval, self.clock())  # taken before waiting: no two share one
            delay = slot - self.clock()
            if delay > 0:
                await self.sleep(delay)
