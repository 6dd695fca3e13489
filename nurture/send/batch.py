"""The next batches of the outbox, claimed and built ahead of the sender, and the backlog the lanes take them from.

Building a message (render, CSS-inlined HTML, MIME) costs about as much CPU as sending it, and the event
loop that talks SMTP is a single thread: a long run has its batches built in a process of its own (see
nurture.send.builder), two batches ahead of the loop. Building is deterministic, so what a process builds is
what a retry after a crash builds again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nurture.errors import NurtureError
from nurture.models import FeedItem, SendState
from nurture.render.composer import Composer
from nurture.render.message import Envelope
from nurture.send.outbox import ClaimedSend, Outbox, Result
from nurture.settings import Settings
from nurture.store import Store

if TYPE_CHECKING:
    from nurture.send.builder import Workshop

log = logging.getLogger(__name__)
FIRST_BATCH = 20  # sends: the run's first batch is small, so that delivery starts at once
RAMP = 3  # each batch after it as much larger, up to the policy's size: each is built while the one before goes
HURRY_AGAIN_SECONDS = 0.02
ENQUEUED_AGAIN_SECONDS = 0.02  # an empty claim while sends are being enqueued: claim again after this, or once they are


Asked = tuple[asyncio.Future[list["Prepared"]], bool]  # a batch to come, and whether it is the last if empty


@dataclass(frozen=True)
class Recipe:
    """How to make a Preparer in a process started afresh (Preparer.from_recipe)."""

    settings: Settings
    database_url: str
    worker: str  # claims are made in the sender's name: its lease, and its pid for a restart to see
    now: datetime
    log: Path | None  # the sender's result log, applied before each claim


@dataclass(frozen=True)
class Prepared:
    """A claimed send with its message built, or with the reason it could not be built."""

    send: ClaimedSend
    email: str
    envelope: Envelope | None = None
    problem: str | None = None  # set when there is no envelope


class Preparer:
    """Claims the next batch for one worker and builds its messages; sends to suppressed leads fail at once.
    What the messages carry is stored before the batch is handed on (Outbox.describe).

    Before each claim it stores what the sender's result log (nurture.send.resultlog) holds by then: in
    groups of a batch, a transaction the sender need not wait for.
    """

    def __init__(self, settings: Settings, composer: Composer, store: Store, outbox: Outbox, now: datetime,
                 log: Path | None = None):
        self.composer = composer
        self.settings = settings
        self.store = store
        self.outbox = outbox
        self.now = now
        self.log = log
        self.policy = self.settings.delivery
        self.quietly: Callable[[], AbstractContextManager[object]] = nullcontext  # how to build (see _idle_priority)
        self.items: dict[int, FeedItem] = {}  # the feed items of this run's sends read so far, by id

    def recipe(self) -> Recipe:
        """What a process started afresh needs to build as this preparer does."""
        return Recipe(self.settings, self.store.url, self.outbox.worker, self.now, self.log)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Preparer:
        """A preparer made from a recipe, in another process: its own store and templates, the same worker."""
        store = Store(recipe.database_url)
        return cls(recipe.settings, Composer.from_settings(recipe.settings), store, Outbox(store, recipe.worker),
                   recipe.now, recipe.log)

    def warm(self) -> None:
        """Compile the program's templates in the default locale before the first claim needs them."""
        self.composer.warm()

    def next(self, size: int | None = None) -> list[Prepared]:
        """The next batch (of `size`, or the policy's batch size), built; empty when nothing is left to claim."""
        while True:
            if self.log is not None and self.log.exists():
                self.outbox.apply_log(self.log, self.settings.scoring)
            sends = self.outbox.claim(size or self.policy.batch_size, self.now, self.policy.lease_seconds)
            if not sends:
                return []
            with self.quietly():  # reads take no lock
                leads = self.store.leads_by_id([send.lead_id for send in sends])
                items = self.outbox.items([send.id for send in sends], self.items)
                built = [self._build(send, leads[send.lead_id], items.get(send.id, [])) for send in sends
                         if leads[send.lead_id].suppressed is None]
            self.outbox.describe([(prepared.send.id, described) for prepared, described in built if described])
            suppressed = [Result(send, SendState.FAILED, f"lead is {reason.value}") for send in sends
                          if (reason := leads[send.lead_id].suppressed) is not None]
            if suppressed:
                self.outbox.finish(suppressed, self.now, self.settings.scoring, self.policy)
            if built:
                return [prepared for prepared, _ in built]

    def _build(self, send: ClaimedSend, lead: Any, items: list[Any]) -> tuple[Prepared, dict[str, Any] | None]:
        """The send with its message, and what the message carries (None when it could not be built)."""
        try:
            envelope, described = self.composer.compose(send, lead, items)
        except Exception as broken:  # noqa: BLE001 - one message that cannot be built never stops the run
            if not isinstance(broken, NurtureError):
                log.exception("send %s failed", send.id)
            return Prepared(send, lead.email, problem=f"{type(broken).__name__}: {broken}"), None
        return Prepared(send, lead.email, envelope), described


class Backlog:
    """The built sends no lane has taken yet, refilled a batch at a time while the next ones are built.

    While `enqueuing` is not done, more sends are on their way to the outbox: an empty batch ends the
    backlog only if it was asked for after they were all enqueued, or once the lanes stop `going`.
    """

    def __init__(self, workshop: Workshop, enqueuing: asyncio.Future[None] | None = None,
                 going: Callable[[], bool] = lambda: True):
        self.workshop = workshop
        self.enqueuing = enqueuing
        self.going = going
        self.items: deque[Prepared] = deque()
        self.size = min(FIRST_BATCH, workshop.preparer.policy.batch_size)  # of the next batch to ask for
        self.upcoming: deque[Asked] = deque(self._ask() for _ in range(workshop.ahead))
        self.refilling = asyncio.Lock()
        self.exhausted = False
        self.batches = 0  # batches taken so far
        self.failure: BaseException | None = None  # a batch that could not be built (its builder died, say)

    async def take(self) -> Prepared | None:
        """The next send to deliver; None once the outbox has nothing more for this run."""
        while not self.items and not self.exhausted:
            async with self.refilling:
                if not self.items and not self.exhausted:  # another lane may have refilled while this one waited
                    await self._refill()
        return self.items.popleft() if self.items else None

    async def _refill(self) -> None:
        upcoming, last = self.upcoming.popleft()
        while not upcoming.done():  # hurried again and again: the builder lowers itself for each batch
            await self.workshop.hurry()
            await asyncio.wait([upcoming], timeout=HURRY_AGAIN_SECONDS)
        try:
            batch = upcoming.result()
        except BaseException as error:  # this lane tells it; the others find the backlog exhausted
            self.failure, self.exhausted = error, True
            raise
        if not batch and (last or not self.going()):
            self.exhausted = True
            return
        if batch:
            self.items.extend(batch)
            self.batches += 1
        elif self.enqueuing is not None:  # claimed before the sends on their way were enqueued
            await asyncio.wait([self.enqueuing], timeout=ENQUEUED_AGAIN_SECONDS)
        self.upcoming.append(self._ask())

    def _ask(self) -> Asked:
        """Ask for the next batch; say whether nothing more is on its way to the outbox then."""
        last = self.enqueuing is None or self.enqueuing.done()
        upcoming = self.workshop.submit(self.size)
        self.size = min(self.size * RAMP, self.workshop.preparer.policy.batch_size)
        return upcoming, last

    async def untaken(self) -> list[Prepared]:
        """What was claimed but never taken: the rest of the backlog and the batches built ahead (once
        they are built: nothing is claimed after this returns)."""
        rest = list(self.items)
        self.items.clear()
        built = await asyncio.gather(*(upcoming for upcoming, _ in self.upcoming), return_exceptions=True)
        self.upcoming.clear()
        for batch in built:
            if isinstance(batch, BaseException):
                log.error("a batch could not be built: %s: %s", type(batch).__name__, batch)
                self.failure = batch
            else:
                rest += batch
        return rest
