"""Running the judge: after each stored hit (inline), or in a process beside the server; and what a
judged batch sets off: a hand-off mail, or a lead to qualify once its score has settled."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import Coroutine
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from typing import Any

from nurture.engine import Engine
from nurture.score import machines, relays
from nurture.score.judge import Judge, Judged
from nurture.settings import Settings

log = logging.getLogger(__name__)
POLL_SECONDS = 0.05  # how soon a judge of its own process sees new hits
BATCH = 50  # hits per transaction: short, so other writers (API events, the outbox) never wait long
JUDGE_NICENESS = 10  # answering comes first: under a burst the judge lags behind and catches up after it
RETRY_SECONDS = 1.0  # after a failure to reach the database
WATCH_SECONDS = 5.0  # how often the server looks whether its judge still runs
STOP_SECONDS = 30.0  # how long a stopping judge may take to finish its batch and hand-offs
GAP_SECONDS = 0.002  # between two full batches, time for other writers to take SQLite's write lock


class Judging:
    """A judge and what its batches set off. `loop` is the event loop that runs the follow-ups of
    `judge_now`, which judges inline, in the journal's writer thread; `run` judges in a loop of its own."""

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop | None = None):
        self.engine = engine
        settings = engine.settings
        signals = machines.Signals(relays=relays.load(settings.server.relay_ranges, settings.cache_dir))
        self.judge = Judge(engine.store, settings.scoring, signals)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.loop = loop
        self.stopping = False

    def judge_now(self) -> None:
        """Judge everything stored; hand the follow-ups to the event loop (from any thread)."""
        judged = self.judge.drain()
        if self.loop is not None and (judged.handoffs or judged.settle):
            self.loop.call_soon_threadsafe(self.follow_up, judged)

    def stop(self) -> None:
        """Stop after the batch under way (its follow-ups are awaited)."""
        self.stopping = True

    async def run(self, parent: int | None = None) -> None:
        """Judge batch after batch, polling while there is nothing; stop when told or when the parent
        process is gone."""
        while not self.stopping and (parent is None or os.getppid() == parent):
            try:
                judged = await asyncio.to_thread(self.judge.next_batch, BATCH)
            except Exception:  # noqa: BLE001 - the database is away: the hits wait in the journal
                log.exception("judging failed; trying again in %s s", RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.follow_up(judged)
            await asyncio.sleep(GAP_SECONDS if judged.taken == BATCH else POLL_SECONDS)
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def follow_up(self, judged: Judged) -> None:
        """Deliver new hand-offs; qualify settling leads once their score has settled."""
        for handoff_id in judged.handoffs:
            self._background(self._hand_off(handoff_id))
        delay = self.engine.settings.scoring.settle_seconds
        for lead_id in judged.settle:
            asyncio.get_running_loop().call_later(delay, self._background, self._qualify_settled(lead_id))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _hand_off(self, handoff_id: int) -> None:
        """The scheduler retries a hand-off whose mail fails here."""
        await self.engine.deliver_handoff(handoff_id, datetime.now(UTC))

    async def _qualify_settled(self, lead_id: int) -> None:
        """Qualify a lead whose points survived the settle time (a burst since would have taken them back)."""
        try:
            _, handoff_id = await asyncio.to_thread(self.engine.store.rescore, lead_id,
                                                    self.engine.settings.scoring, datetime.now(UTC))
        except Exception:  # noqa: BLE001 - the scheduler's tick settles it later
            log.exception("lead %s not settled", lead_id)
            return
        if handoff_id is not None:
            await self._hand_off(handoff_id)


class Supervisor:
    """The judge's process: started with the server, started again if it dies, stopped with the server."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.process = start_process(settings)

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            if not self.process.is_alive():
                log.error("the judge process stopped (exit code %s); starting another", self.process.exitcode)
                self.process = start_process(self.settings)

    async def stop(self) -> None:
        """Ask the judge to finish its batch and its hand-offs; kill it if it takes too long."""
        self.process.terminate()
        await asyncio.to_thread(self.process.join, STOP_SECONDS)
        if self.process.is_alive():
            log.error("the judge process did not stop within %s s; killed", STOP_SECONDS)
            self.process.kill()


def start_process(settings: Settings) -> BaseProcess:
    """A judge in a process of its own; it stops by itself when this process is gone."""
    process = multiprocessing.get_context("spawn").Process(target=_judge_forever, args=(settings, os.getpid()),
                                                           name="nurture-judge", daemon=True)
    process.start()
    return process


def _judge_forever(settings: Settings, parent: int) -> None:
    from nurture.runtime import configure_logging, open_store, smtp_mailer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the server stops its judge
    configure_logging(tag="judge: ")
    gc.collect()
    gc.freeze()
    os.nice(JUDGE_NICENESS)
    store = open_store(settings)
    engine = Engine(settings, store, smtp_mailer(settings))
    try:
        asyncio.run(_judge_until_told(Judging(engine), parent))
    finally:
        store.close()


async def _judge_until_told(judging: Judging, parent: int) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, judging.stop)  # the server stops
    await judging.run(parent)
