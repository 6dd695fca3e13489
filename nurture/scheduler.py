"""`nurture run`: APScheduler jobs and the tracking server in one event loop.

What is due lives in the nurture database, never in APScheduler's job store, so every job is safe to
run twice and a restart picks up where the database says. On PostgreSQL many nodes may run; the jobs
run on the one that holds an advisory lock, and another takes over when that node's connection goes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from nurture.engine import Engine
from nurture.errors import NurtureError
from nurture.inbound.feedback import Feedback
from nurture.inbound.mailbox import poll
from nurture.send.builder import start_fork_server
from nurture.server import create_app
from nurture.store import Store
from nurture.store.locks import TRY_LOCK, UNLOCK, Lock

log = logging.getLogger(__name__)


class Leadership:
    """Whether this node runs the scheduled jobs: always on SQLite, the advisory lock's holder on PostgreSQL."""

    def __init__(self, store: Store):
        self.store = store
        self.connection: Connection | None = None

    def held(self) -> bool:
        if self.store.engine.dialect.name != "postgresql":
            return True
        try:
            if self.connection is None:
                connection = self.store.engine.connect()
                if not connection.execute(TRY_LOCK, {"key": Lock.LEADER}).scalar():
                    connection.close()
                    return False
                connection.commit()
                self.connection = connection
                log.info("this node now runs the scheduled jobs")
            self.connection.execute(text("select 1"))  # still connected, so still the holder
            return True
        except DBAPIError:
            self.release()
            return False

    def release(self) -> None:
        """Give up the lock (a pooled connection would otherwise keep holding it)."""
        if self.connection is not None:
            try:
                self.connection.execute(UNLOCK, {"key": Lock.LEADER})
                self.connection.commit()
            except DBAPIError:
                self.connection.invalidate()
            self.connection.close()
            self.connection = None


async def send_job(engine: Engine, leadership: Leadership) -> None:
    if not leadership.held():
        return
    report = await engine.send_due(datetime.now(UTC))
    if report.enqueued or report.sent or report.bounced or report.failed or report.handoffs:
        log.info("send: %d queued, %d sent, %d deferred, %d bounced, %d failed, %d hand-offs", len(report.enqueued),
                 len(report.sent), len(report.deferred), len(report.bounced), len(report.failed),
                 len(report.handoffs))


async def mailbox_job(engine: Engine, leadership: Leadership) -> None:
    """Take what came back to the bounce mailbox; a mailbox that cannot be opened is logged, and tried
    again at the next poll."""
    if not leadership.held():
        return
    try:
        await asyncio.to_thread(poll, Feedback(engine.settings, engine.store), datetime.now(UTC))
    except NurtureError as error:
        log.error("%s", error)


async def refresh_job(engine: Engine, leadership: Leadership) -> None:
    if not leadership.held():
        return
    for feed, status, detail in await engine.refresh_feeds(datetime.now(UTC)):
        log.info("feed %s: %s %s", feed, status, detail)


async def run(engine: Engine, listening: socket.socket) -> None:
    """Serve (on the bound socket `listening`) and schedule until interrupted."""
    schedule = engine.settings.schedule
    scheduler = AsyncIOScheduler(timezone=UTC)
    leadership = Leadership(engine.store)
    await asyncio.to_thread(engine.store.restore_due, engine.settings.program)  # see Store.restore_due
    await refresh_job(engine, leadership)  # the first digests should see the feeds
    every = timedelta(minutes=schedule.refresh_feeds_every_minutes)
    first = datetime.now(UTC)
    scheduler.add_job(refresh_job, "interval", args=[engine, leadership], seconds=every.total_seconds(),
                      next_run_time=first + every, max_instances=1, coalesce=True, id="refresh-feeds")
    scheduler.add_job(send_job, "interval", args=[engine, leadership], seconds=schedule.send_every_seconds,
                      next_run_time=first, max_instances=1, coalesce=True, id="send-due")
    mailbox = engine.settings.bounces.mailbox
    if mailbox is not None:
        scheduler.add_job(mailbox_job, "interval", args=[engine, leadership], seconds=mailbox.every_minutes * 60,
                          next_run_time=first, max_instances=1, coalesce=True, id="bounce-mailbox")
    server = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning", log_config=None,
                                           forwarded_allow_ips=engine.settings.server.trusted_proxies))
    await asyncio.to_thread(start_fork_server)  # where long runs build their messages (see nurture.send.builder)
    scheduler.start()
    try:
        await server.serve(sockets=[listening])
    finally:
        scheduler.shutdown(wait=False)
        leadership.release()
        await engine.mailer.close()


