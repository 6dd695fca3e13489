"""`nurture run`: APScheduler jobs and the tracking server in one event loop.

What is due lives in the nurture database, never in APScheduler's job store, so every job is safe to
run twice and a restart picks up where the database says.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from nurture.engine import Engine
from nurture.server import create_app

log = logging.getLogger(__name__)


async def send_job(engine: Engine) -> None:
    report = await engine.send_due(datetime.now(UTC))
    if report.enqueued or report.sent or report.failed or report.handoffs:
        log.info("send: %d queued, %d sent, %d deferred, %d failed, %d hand-offs", len(report.enqueued),
                 len(report.sent), len(report.deferred), len(report.failed), len(report.handoffs))


async def refresh_job(engine: Engine) -> None:
    for feed, status, detail in await engine.refresh_feeds(datetime.now(UTC)):
        log.info("feed %s: %s %s", feed, status, detail)


async def run(engine: Engine, host: str, port: int) -> None:
    """Serve and schedule until interrupted."""
    schedule = engine.settings.schedule
    scheduler = AsyncIOScheduler(timezone=UTC)
    await refresh_job(engine)  # the first digests should see the feeds
    every = timedelta(minutes=schedule.refresh_feeds_every_minutes)
    first = datetime.now(UTC)
    scheduler.add_job(refresh_job, "interval", args=[engine], seconds=every.total_seconds(),
                      next_run_time=first + every, max_instances=1, coalesce=True, id="refresh-feeds")
    scheduler.add_job(send_job, "interval", args=[engine], seconds=schedule.send_every_seconds,
                      next_run_time=first, max_instances=1, coalesce=True, id="send-due")
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host=host, port=port, log_level="warning"))
    scheduler.start()
    try:
        await server.serve()
    finally:
        scheduler.shutdown(wait=False)
        await engine.mailer.close()


