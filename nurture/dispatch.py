"""One delivery run over the outbox: claim a batch, build it, send it, record the results in groups."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from nurture.delivery import Breaker, GroupCommit, Pacer, attempt
from nurture.errors import NurtureError
from nurture.models import FeedItem, Lead, Send, SendState
from nurture.outbox import Outbox, Result, final_state

if TYPE_CHECKING:
    from nurture.engine import Engine, Report

log = logging.getLogger(__name__)
Progress = Callable[[int, int, bool], None]  # (messages done in this run, messages to do, a batch just ended)


@dataclass(frozen=True)
class Claimed:
    """A claimed send with what it takes to build its message."""

    send: Send
    lead: Lead
    items: list[FeedItem]


class Dispatch:
    def __init__(self, engine: Engine, now: datetime, report: Report, progress: Progress | None = None):
        self.engine = engine
        self.policy = engine.settings.delivery
        self.outbox = Outbox(engine.store)
        self.now = now
        self.report = report
        self.progress = progress
        self.breaker = Breaker(self.policy.pause_after_failures)
        self.pacer = Pacer(self.policy.rate_per_second, self.policy.rate_per_hour)
        local = engine.store.url.startswith("sqlite")  # a SQLite write is shorter than a hop to a thread
        self.commit: GroupCommit[Result, None] = GroupCommit(self._write, in_thread=not local)
        self.slots = asyncio.Semaphore(engine.settings.smtp.concurrency)

    async def run(self) -> None:
        """Work the outbox until it is empty or the breaker trips.

        The next batch is claimed and loaded in a thread while the current one is on the wire. Each
        message is built on the event loop just before it goes out, between the SMTP round trips of the
        other connections; what was built (Message-ID, subject, links) is stored with the send's result,
        and building is deterministic, so a send retried after a crash carries the same message.
        """
        self.outbox.reclaim_orphans()
        counts = self.outbox.counts()
        self.total = sum(counts.get(state, 0) for state in (SendState.QUEUED, SendState.DEFERRED, SendState.SENDING))
        self.done = 0
        renewing = asyncio.create_task(self._renew_leases())
        upcoming = asyncio.create_task(asyncio.to_thread(self._claim))
        try:
            while not self.breaker.tripped:
                claimed = await upcoming
                if not claimed:
                    break
                upcoming = asyncio.create_task(asyncio.to_thread(self._claim))
                await self._send_all(claimed)
        finally:
            renewing.cancel()
            untried = await upcoming  # claimed ahead but not sent (the breaker tripped, or an error): give back
            if untried:
                self._write([Result(item.send, SendState.QUEUED) for item in untried])
        if self.breaker.tripped:
            self.report.paused = f"paused after {self.breaker.failures} failed deliveries in a row"

    async def _renew_leases(self) -> None:
        """Keep the claims of a long run from looking abandoned to other workers."""
        while True:
            await asyncio.sleep(self.policy.lease_seconds / 3)
            await asyncio.to_thread(self.outbox.renew)

    def _claim(self) -> list[Claimed]:
        """Claim the next batch and load its leads and items; sends to suppressed leads fail at once."""
        while True:
            sends = self.outbox.claim(self.policy.batch_size, self.now, self.policy.lease_seconds)
            if not sends:
                return []
            self.outbox.renew()  # a long run keeps the leases of what it still holds
            leads = self.engine.store.leads_by_id([send.lead_id for send in sends])
            items = self.outbox.items([send.id for send in sends if send.id is not None])
            claimed, suppressed = [], []
            for send in sends:
                lead = leads[send.lead_id]
                if lead.suppressed is not None:
                    suppressed.append(Result(send, SendState.FAILED, f"lead is {lead.suppressed.value}"))
                else:
                    claimed.append(Claimed(send, lead, items.get(send.id or 0, [])))
            if suppressed:
                self._write(suppressed)
            if claimed:
                return claimed

    async def _send_all(self, claimed: Sequence[Claimed]) -> None:
        async def one(item: Claimed) -> None:
            await self._deliver(item)
            self.done += 1
            if self.progress:
                self.progress(self.done, max(self.total, self.done), False)

        await asyncio.gather(*(one(item) for item in claimed))
        if self.progress:
            self.progress(self.done, max(self.total, self.done), True)

    async def _deliver(self, item: Claimed) -> None:
        async with self.slots:  # held until the result is stored: at most `concurrency` unrecorded sends
            if self.breaker.tripped:
                await self.commit.put(Result(item.send, SendState.QUEUED))
                return
            try:
                envelope, description = self.engine.compose(item.send, item.lead, item.items)
                await self.pacer.wait()
                state, error = await attempt(self.engine.mailer, envelope, self.policy)
            except Exception as broken:  # noqa: BLE001 - one message that cannot go never stops the run
                if not isinstance(broken, NurtureError):
                    log.exception("send %s failed", item.send.id)
                await self.commit.put(Result(item.send, SendState.FAILED, f"{type(broken).__name__}: {broken}"))
                self.report.failed.append(f"{item.lead.email}: {broken}")
                return
            self.breaker.record(state)
            await self.commit.put(Result(item.send, state, error, description, datetime.now(UTC)))
        self._note(item, envelope.message_id, state, error)

    def _note(self, item: Claimed, message_id: str, state: SendState, error: str | None) -> None:
        email, send = item.lead.email, item.send
        state = final_state(send, state, self.policy.max_attempts)
        if state is SendState.SENT:
            self.report.sent.append(f"{email}: {send.template} {send.step} ({message_id})")
        elif state is SendState.DEFERRED:
            self.report.deferred.append(f"{email}: deferred: {error}")
        else:
            self.report.failed.append(f"{email}: {state.value}: {error}")

    def _write(self, results: Sequence[Result]) -> None:
        retry_after = timedelta(minutes=self.policy.retry_after_minutes)
        self.outbox.finish(results, self.now, self.engine.settings.scoring, retry_after, self.policy.max_attempts)
