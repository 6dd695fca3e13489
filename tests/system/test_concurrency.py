"""Exactly once under load: many parallel hits on one lead's mail give one SQL transition and one hand-off."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest

from nurture.engine import Engine
from nurture.models import EventKind, Stage
from nurture.send.mailer import MemoryMailer
from nurture.send.sink import start_sink
from nurture.server import create_app
from nurture.store import Store
from nurture.track.tokens import Purpose, Signer
from tests.conftest import SECRET, free_port, make_lead
from tests.servers import serving

BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


def callback(engine: Engine, path: str) -> bool:
    """The "Call me back" link: clicking it in several emails at once is what a keen person does; every
    link of one email at once is what a scanner does (that is judged elsewhere)."""
    claim = Signer(SECRET).verify(path.removeprefix("/c/"), Purpose.CLICK)
    send = engine.store.send(claim.subject)
    return send is not None and send.links[claim.link]["action"] == "callback"


def tracked_paths(engine: Engine, mailer: MemoryMailer) -> list[str]:
    paths = []
    for envelope in mailer.sent:
        html = message_from_bytes(envelope.data, policy=policy.default).get_body(("html",)).get_content()
        for url in re.findall(r'(?:href|src)="([^"]+)"', html):
            path = url.removeprefix(engine.settings.base_url)
            if path.startswith("/o/") or (path.startswith("/c/") and callback(engine, path)):
                paths.append(path)
    return paths


async def hammer(base: str, paths: list[str], count: int) -> list[int]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, headers={"User-Agent": BROWSER}, timeout=30) as web:
        chosen = [paths[i % len(paths)] for i in range(count)]
        responses = await asyncio.gather(*(web.get(path, follow_redirects=False) for path in chosen))
    return [response.status_code for response in responses]


@pytest.mark.parametrize("judge", ["inline", "process"])
def test_200_parallel_hits_make_one_hand_off(engine: Engine, mailer: MemoryMailer, tmp_path: Path,
                                             judge: str) -> None:
    asyncio.run(engine.refresh_feeds(datetime.now(UTC)))
    make_lead(engine.store, cycle_started_at=datetime.now(UTC) - timedelta(days=30))
    start = datetime.now(UTC) - timedelta(days=22)
    for week in range(3):
        asyncio.run(engine.send_due(start + timedelta(days=7 * week)))
    paths = tracked_paths(engine, mailer)
    assert len(mailer.sent) == 3 and len(paths) == 6  # three pixels, three call-backs

    # inline: judged in the server, whose engine mails through `mailer`; process: judged by a process of
    # the server's own, which mails over SMTP, here to a sink
    sink_store = Store(f"sqlite:///{tmp_path / 'sink.db'}")
    sink_store.create()
    smtp = engine.settings.smtp.model_copy(update={"port": free_port()})
    server = engine.settings.server.model_copy(update={"judge": judge})
    engine.settings = engine.settings.model_copy(update={"smtp": smtp, "server": server})
    sink = start_sink(sink_store, "127.0.0.1", smtp.port)
    try:
        with serving(create_app(engine), free_port()) as base:
            statuses = asyncio.run(hammer(base, paths, 200))
            deadline = time.monotonic() + 20
            while len(sales_mail(mailer, sink_store)) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
    finally:
        sink.stop()

    assert set(statuses) <= {200, 302} and len(statuses) == 200
    assert engine.store.pending_hits() == 0
    events = engine.store.events_of(1)
    hits = [e for e in events if e.kind in (EventKind.OPEN, EventKind.CLICK)]
    assert len(hits) == 200, "every hit is stored and judged"
    lead = engine.store.lead(1)
    assert lead.stage is Stage.SQL
    assert lead.score == sum(e.points for e in events if e.counted)
    assert len(engine.store.handoffs_of(1)) == 1
    assert len(sales_mail(mailer, sink_store)) == 1
    credited = [e.credit_key for e in events if e.credit_key]
    assert len(credited) == len(set(credited))


def sales_mail(mailer: MemoryMailer, sink: Store) -> list[str]:
    return ([m.recipient for m in mailer.sent if m.recipient == "sales@example.com"]
            + ["sales@example.com" for _ in sink.sink_messages(100, "sales@example.com")])
