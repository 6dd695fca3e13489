"""The built sends no lane has taken yet: refilled a batch at a time from the builder while the lanes deliver."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from concurrent.futures.process import BrokenProcessPool

from nurture.errors import RunFailed
from nurture.send.batch import Prepared
from nurture.send.builder import BUILDER_DIED, Builder

log = logging.getLogger(__name__)
FIRST_BATCH = 20  # sends: the run's first batch is small, so that delivery starts at once
RAMP = 3  # each batch after it as much larger, up to the policy's size: each is built while the one before goes
HURRY_AGAIN_SECONDS = 0.02


Asked = asyncio.Future[list[Prepared]]  # a batch to come


class Backlog:
    """The built sends no lane has taken yet, refilled a batch at a time while the next ones are built.
    An empty batch ends it: every send of the run was enqueued before it started."""

    def __init__(self, builder: Builder):
        self.builder = builder
        self.items: deque[Prepared] = deque()
        self.size = min(FIRST_BATCH, builder.preparer.policy.batch_size)  # of the next batch to ask for
        self.upcoming: deque[Asked] = deque(self._ask() for _ in range(builder.ahead))
        self.refilling = asyncio.Lock()
        self.exhausted = False
        self.failure: BaseException | None = None  # a batch that could not be built (its builder died, say)

    async def take(self) -> Prepared | None:
        """The next send to deliver; None once the outbox has nothing more for this run."""
        while not self.items and not self.exhausted:
            async with self.refilling:
                if not self.items and not self.exhausted:  # another lane may have refilled while this one waited
                    await self._refill()
        return self.items.popleft() if self.items else None

    async def _refill(self) -> None:
        upcoming = self.upcoming.popleft()
        while not upcoming.done():  # hurried again and again: the builder lowers itself for each batch
            if self.builder.gone():
                self.builder.abandon()
            await self.builder.hurry()
            await asyncio.wait([upcoming], timeout=HURRY_AGAIN_SECONDS)
        try:
            batch = upcoming.result()
        except BrokenProcessPool:  # killed (the kernel's OOM killer picks the biggest process): say so in one line
            self.failure, self.exhausted = RunFailed(BUILDER_DIED), True
            raise self.failure from None
        except BaseException as error:  # this lane tells it; the others find the backlog exhausted
            self.failure, self.exhausted = error, True
            raise
        if not batch:
            self.exhausted = True
            return
        self.items.extend(batch)
        self.upcoming.append(self._ask())

    def _ask(self) -> Asked:
        """Ask for the next batch."""
        upcoming = self.builder.submit(self.size)
        self.size = min(self.size * RAMP, self.builder.preparer.policy.batch_size)
        return upcoming

    async def untaken(self) -> list[Prepared]:
        """What was claimed but never taken: the rest of the backlog and the batches built ahead (once
        they are built: nothing is claimed after this returns)."""
        rest = list(self.items)
        self.items.clear()
        if self.builder.gone():  # its pool would wait for a batch it died writing
            self.builder.abandon()
        built = await asyncio.gather(*self.upcoming, return_exceptions=True)
        self.upcoming.clear()
        for batch in built:
            if isinstance(batch, BaseException):
                log.error("a batch could not be built: %s: %s", type(batch).__name__, batch)
                self.failure = batch
            else:
                rest += batch
        return rest
