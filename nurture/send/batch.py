"""The next batches of the outbox, claimed and built ahead of the sender, and the backlog the lanes take them from.

Building a message (render, CSS-inlined HTML, MIME) costs about as much CPU as sending it, and the event
loop that talks SMTP is a single thread: a long run has its batches built in a process of its own (see
nurture.send.builder), two batches ahead of the loop. Building is deterministic, so what a process builds is
what a retry after a crash builds again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nurture.errors import NurtureError
from nurture.models import FeedItem, SendState
from nurture.render.composer import Composer
from nurture.render.message import Envelope
from nurture.send.outbox import Outbox
from nurture.send.results import ClaimedSend, Result
from nurture.settings import Settings
from nurture.store import Store

log = logging.getLogger(__name__)




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

    Before each claim it stores what the sender's result log (nurture.send.resultlog) holds by then, on SQLite:
    in groups of a batch, a transaction the sender need not wait for.
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
            self._store_results()
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

    def _store_results(self) -> None:
        """Before a claim, store what the run's log holds (SQLite). On PostgreSQL the run settles the results
        it stored ahead (DeliveryRun._keep_storing), not the builder: two settlers took turns at the same
        leads' locks, and the builder, which paces a long run, waited on them (10,000 digests, 3 runs:
        851 -> 914 mails/s median)."""
        if self.log is not None and self.log.exists():
            self.outbox.apply_log(self.log, self.settings.scoring)

    def _build(self, send: ClaimedSend, lead: Any, items: list[Any]) -> tuple[Prepared, dict[str, Any] | None]:
        """The send with its message, and what the message carries (None when it could not be built)."""
        try:
            envelope, described = self.composer.compose(send, lead, items)
        except Exception as broken:  # noqa: BLE001 - one message that cannot be built never stops the run
            if not isinstance(broken, NurtureError):
                log.exception("send %s failed", send.id)
            return Prepared(send, lead.email, problem=f"{type(broken).__name__}: {broken}"), None
        return Prepared(send, lead.email, envelope), described
