"""One delivery run over the outbox: claim a batch, build it, send it, record the results in groups."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from nurture.delivery import Breaker, GroupCommit, Pacer, attempt
from nurture.errors import NurtureError
from nurture.message import Envelope
from nurture.models import Lead, Send, SendState
from nurture.outbox import Outbox, Result, final_state

if TYPE_CHECKING:
    from nurture.engine import Engine, Report

Progress = Callable[[int, int], None]  # (done in this batch, size of this batch)


@dataclass(frozen=True)
class Built:
    send: Send
    lead: Lead
    envelope: Envelope


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
        self.commit: GroupCommit[Result, None] = GroupCommit(self._write)
        self.slots = asyncio.Semaphore(engine.settings.smtp.concurrency)

    async def run(self) -> None:
        """Work the outbox until it is empty or the breaker trips.

        The next batch is claimed and built in a thread while the current one is on the wire, so
        rendering overlaps with the SMTP round trips instead of stalling the connections.
        """
        self.outbox.reclaim_orphans()
        upcoming = asyncio.create_task(asyncio.to_thread(self._prepare))
        while True:
            built = await upcoming
            if not built or self.breaker.tripped:
                break
            upcoming = asyncio.create_task(asyncio.to_thread(self._prepare))
            await self._send_all(built)
        if self.breaker.tripped:
            if built:
                self._write([Result(item.send, SendState.QUEUED) for item in built])  # give back the untried
            self.report.paused = f"paused after {self.breaker.failures} failed deliveries in a row"

    def _prepare(self) -> list[Built]:
        """Claim the next batch and build its messages; record at once the ones that cannot be sent."""
        while True:
            sends = self.outbox.claim(self.policy.batch_size, self.now, self.policy.lease_seconds)
            if not sends:
                return []
            self.outbox.renew()  # a long run keeps the leases of what it still holds
            built, broken = self._build(sends)
            if broken:
                self._write(broken)
            if built:
                return built

    async def _send_all(self, built: Sequence[Built]) -> None:
        done = 0

        async def one(item: Built) -> None:
            nonlocal done
            await self._deliver(item)
            done += 1
            if self.progress:
                self.progress(done, len(built))

        await asyncio.gather(*(one(item) for item in built))

    def _build(self, sends: Sequence[Send]) -> tuple[list[Built], list[Result]]:
        leads = self.engine.store.leads_by_id([send.lead_id for send in sends])
        items = self.outbox.items([send.id for send in sends if send.id is not None])
        built, broken, described = [], [], []
        for send in sends:
            lead = leads[send.lead_id]
            if lead.suppressed is not None:
                broken.append(Result(send, SendState.FAILED, f"lead is {lead.suppressed.value}"))
                continue
            try:
                envelope, description = self.engine.compose(send, lead, items.get(send.id or 0, []))
            except NurtureError as error:
                broken.append(Result(send, SendState.FAILED, str(error)))
                self.report.failed.append(f"{lead.email}: {error}")
                continue
            built.append(Built(send, lead, envelope))
            described.append(description)
        self.outbox.describe(described)
        return built, broken

    async def _deliver(self, item: Built) -> None:
        async with self.slots:  # held until the result is stored: at most `concurrency` unrecorded sends
            if self.breaker.tripped:
                await self.commit.put(Result(item.send, SendState.QUEUED))
                return
            await self.pacer.wait()
            state, error = await attempt(self.engine.mailer, item.envelope, self.policy)
            self.breaker.record(state)
            await self.commit.put(Result(item.send, state, error))
        self._note(item, state, error)

    def _note(self, item: Built, state: SendState, error: str | None) -> None:
        email, send = item.lead.email, item.send
        state = final_state(send, state, self.policy.max_attempts)
        if state is SendState.SENT:
            self.report.sent.append(f"{email}: {send.template} {send.step} ({item.envelope.message_id})")
        elif state is SendState.DEFERRED:
            self.report.deferred.append(f"{email}: deferred: {error}")
        else:
            self.report.failed.append(f"{email}: {state.value}: {error}")

    def _write(self, results: Sequence[Result]) -> None:
        retry_after = timedelta(minutes=self.policy.retry_after_minutes)
        self.outbox.finish(results, self.now, self.engine.settings.scoring, retry_after, self.policy.max_attempts)
