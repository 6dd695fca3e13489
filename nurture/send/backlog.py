"""The built sends no lane has taken yet: refilled a batch at a time from the builder while the lanes deliver,
and while a planner records more sends (Planning)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

from nurture.errors import RunFailed
from nurture.send.batch import Prepared
from nurture.send.builder import BUILDER_DIED, Builder

log = logging.getLogger(__name__)
FIRST_BATCH = 20  # sends: the run's first batch is small, so that delivery starts at once
RAMP = 3  # each batch after it as much larger, up to the policy's size: each is built while the one before goes
HURRY_AGAIN_SECONDS = 0.02


Asked = tuple[asyncio.Future[list[Prepared]], int]  # a batch to come, and the pages planned when it was asked for
Planner = Callable[[Callable[[int], None]], object]  # records the due sends, telling how many after each page


class PlanStopped(Exception):
    """Raised in the planner's thread as it tells of a page after the run asked it to stop."""


class Planning:
    """A plan recorded while the run delivers: `planner` runs in a thread and tells the run of each page
    of sends it recorded (Engine.send_due). A backlog that finds the outbox empty asks again once a page
    more is recorded, and ends when the plan is over. `on_page` hears each page's count, on the loop.
    A run that stops early (the breaker tripped, a lane failed, Ctrl-C) stops the plan after its page
    under way: the leads not planned are due at the next pass."""

    def __init__(self, planner: Planner, on_page: Callable[[int], None]):
        loop = asyncio.get_running_loop()
        self.pages = 0
        self.on_page = on_page
        self.changed = asyncio.Event()
        self.stopped = threading.Event()

        def recorded(count: int) -> None:  # in the planner's thread
            loop.call_soon_threadsafe(self._recorded, count)
            if self.stopped.is_set():
                raise PlanStopped

        self.task = asyncio.ensure_future(asyncio.to_thread(planner, recorded))
        self.task.add_done_callback(lambda _: self.changed.set())

    def _recorded(self, count: int) -> None:
        self.pages += 1
        self.on_page(count)
        self.changed.set()

    async def more_since(self, pages: int) -> bool:
        """Whether a page was recorded after the first `pages`: at once if one was, else once the next is
        (True) or the plan is over (False)."""
        while self.pages == pages and not self.task.done():
            self.changed.clear()
            await self.changed.wait()
        return self.pages > pages

    def stop(self) -> None:
        """Record no page after the one under way."""
        self.stopped.set()

    async def over(self) -> None:
        """Wait for the planner to finish; raise what it raised, unless it was stopped."""
        with contextlib.suppress(PlanStopped):
            await self.task


class Backlog:
    """The built sends no lane has taken yet, refilled a batch at a time while the next ones are built.
    An empty batch ends it, unless `planning` records more: then it asks again after the next page."""

    def __init__(self, builder: Builder, planning: Planning | None = None):
        self.builder = builder
        self.planning = planning
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
        upcoming, planned = self.upcoming.popleft()
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
        if batch:
            self.items.extend(batch)
        elif self.planning is None or not await self.planning.more_since(planned):
            self.exhausted = True
            return
        self.upcoming.append(self._ask())

    def _ask(self) -> Asked:
        """Ask for the next batch."""
        upcoming = self.builder.submit(self.size)
        self.size = min(self.size * RAMP, self.builder.preparer.policy.batch_size)
        return upcoming, 0 if self.planning is None else self.planning.pages

    async def untaken(self) -> list[Prepared]:
        """What was claimed but never taken: the rest of the backlog and the batches built ahead (once
        they are built: nothing is claimed after this returns)."""
        rest = list(self.items)
        self.items.clear()
        if self.builder.gone():  # its pool would wait for a batch it died writing
            self.builder.abandon()
        built = await asyncio.gather(*(upcoming for upcoming, _ in self.upcoming), return_exceptions=True)
        self.upcoming.clear()
        for batch in built:
            if isinstance(batch, BaseException):
                log.error("a batch could not be built: %s: %s", type(batch).__name__, batch)
                self.failure = batch
            else:
                rest += batch
        return rest
