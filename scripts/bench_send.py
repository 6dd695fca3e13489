#!/usr/bin/env python3
"""How fast `send-due` delivers, against the speed of the SMTP server itself.

Starts an aiosmtpd sink in its own process, seeds N leads (default 5,000) in a fresh SQLite database,
and times one `send-due` pass (enqueue, render, build, deliver, record). In the same run it times a raw
blast of the very same messages over the same number of connections (the limit: what the sink takes),
and a naive baseline on a sample: premailer per email, the stdlib EmailMessage, and smtplib with a new
connection per message. Prints emails/s for each and the ratios; with --runs, medians.

--mail digest times the first digest instead, a week after the confirmations (sent first, not timed),
with the bundled sample feeds read: choosing each lead's items and booking each digest's cost are in it.

    python scripts/bench_send.py [--leads 5000] [--connections 4] [--runs 3] [--naive 300] [--mail digest]
                                 [--without builder-process|idle-priority|result-log|enqueue-thread]...

--without times nurture without one piece of its delivery machinery, to measure what that piece buys.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import smtplib
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.content import digest as content  # noqa: E402
from nurture.engine import Engine, Report  # noqa: E402
from nurture.models import Lead  # noqa: E402
from nurture.render.message import Envelope  # noqa: E402
from nurture.render.templates import Renderer  # noqa: E402
from nurture.render.variables import email_variables, sample_lead  # noqa: E402
from nurture.runtime import run_async  # noqa: E402
from nurture.send.mailer import Ready, SmtpMailer  # noqa: E402
from nurture.settings import Settings, load_settings  # noqa: E402
from nurture.store import Store  # noqa: E402
from tests.conftest import postgres_schema  # noqa: E402

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def sink_process(port: int, ready: multiprocessing.synchronize.Event, spool: bool) -> None:  # type: ignore[name-defined]
    """An SMTP server in a process of its own: it spools each message to a file, as an MTA queues it
    (without fsync), or with --sink count only answers 250."""
    from aiosmtpd.controller import Controller

    folder = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    received = iter(range(1 << 62))

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            if spool:  # 10,000 files a folder: what comes later is not written into a larger folder
                number = next(received)
                shelf = folder / str(number // 10_000)
                if number % 10_000 == 0:
                    shelf.mkdir()
                (shelf / f"{number}.eml").write_bytes(envelope.content)  # type: ignore[attr-defined]
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Recording(SmtpMailer):
    """The real SMTP mailer, keeping each message for the raw blast."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.kept: list[Envelope] = []

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> None:
        await super().send(envelope, ready)
        self.kept.append(envelope)


def seed(url: str, count: int) -> Store:
    store = Store(url)
    store.create()
    interests = [["cloud"], ["security"], ["cloud", "security"], ["devops"]]
    store.add_leads([Lead(email=f"lead{n}@example.com", first_name=f"Lead{n}", company=f"Company {n % 97}",
                          interests=interests[n % 4], industry=("finance", "manufacturing", "")[n % 3],
                          cycle_started_at=NOW, created_at=NOW, confirmed_at=NOW) for n in range(count)],
                    "bench_send.py")
    return store


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database: a SQLite file, or a schema of its own on the test PostgreSQL (dropped after)."""
    if kind == "sqlite":
        yield f"sqlite:///{tempfile.mkdtemp(prefix='bench-send-')}/bench.db"
        return
    with postgres_schema("bench_send") as url:
        yield url


def nurture_run(port: int, leads: int, connections: int, mail: str,
                kind: str = "sqlite") -> tuple[float, list[Envelope]]:
    """Time one `send-due` pass on run_async's event loop, as the command runs it. For the digest, the
    confirmations go first in a loop of their own, as an earlier `send-due` would send them."""
    with database(kind) as url:
        return _nurture_run(url, port, leads, connections, mail)


def _nurture_run(url: str, port: int, leads: int, connections: int, mail: str) -> tuple[float, list[Envelope]]:
    environ = {"NURTURE_DATABASE_URL": url, "NURTURE_SECRET_KEY": "bench",
               "NURTURE_SMTP_PORT": str(port), "NURTURE_SMTP_SINK": "false",
               **{name: os.environ[name] for name in ("HOME", "XDG_CACHE_HOME", "NURTURE_CACHE_DIR")
                  if name in os.environ}}  # where compiled templates are kept, as for the command
    settings = load_settings(environ, ROOT / "nurture.yaml")
    settings = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"concurrency": connections})})
    store = seed(settings.database_url, leads)
    at = NOW
    if mail == "digest":
        run_async(earlier_send_due(settings, store, connections))
        at = NOW + timedelta(days=settings.program.digest_every_days)
    mailer = Recording("127.0.0.1", port, connections=connections)
    engine = Engine(settings, store, mailer)

    async def timed() -> float:
        started = time.perf_counter()
        report = await engine.send_due(at)
        elapsed = time.perf_counter() - started
        await mailer.close()
        assert len(report.sent) == leads, f"sent {len(report.sent)} of {leads}: {report.failed[:3]} {report.paused}"
        return elapsed

    try:
        return run_async(timed()), mailer.kept
    finally:
        store.close()


async def earlier_send_due(settings: Settings, store: Store, connections: int) -> None:
    """The bundled feeds read and every confirmation sent: what the first digest comes after."""
    mailer = SmtpMailer("127.0.0.1", settings.smtp.port, connections=connections)
    engine = Engine(settings, store, mailer)
    assert {status for _, status, _ in await engine.refresh_feeds(NOW)} == {"ok"}, "the bundled feeds did not read"
    await engine.send_due(NOW)
    await mailer.close()


async def raw_blast(port: int, envelopes: list[Envelope], connections: int) -> float:
    async def lane(share: list[Envelope]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for envelope in share:
            await client.sendmail(envelope.sender, [envelope.recipient], envelope.data)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(lane(envelopes[n::connections]) for n in range(connections)))
    return time.perf_counter() - started


def naive(port: int, count: int, mail: str) -> float:
    """Per email: Jinja render, premailer, EmailMessage, a new SMTP connection."""
    from premailer import Premailer

    settings = load_settings({"NURTURE_SECRET_KEY": "bench", "NURTURE_DATABASE_URL": "sqlite://"},
                             ROOT / "nurture.yaml")
    renderer = Renderer(settings.templates_dir, inline_css=False)
    started = time.perf_counter()
    for n in range(count):
        lead = sample_lead(f"naive{n}@example.com")
        items = content.sample_items(NOW, settings.program.items_per_digest) if mail == "digest" else []
        variables = email_variables(settings, lead, items, unsubscribe_url="https://t.example/u",
                                    preferences_url="https://t.example/p")
        rendered = renderer.render(mail, "en", variables, url_for=lambda i: f"https://t.example/c/{i}",
                                   pixel_url="https://t.example/o.gif")
        html = Premailer(rendered.html, disable_validation=True, allow_network=False,
                         cssutils_logging_level=50).transform()
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = settings.mail.from_email, lead.email, rendered.subject
        message.set_content(rendered.text, cte="quoted-printable")
        message.add_alternative(html, subtype="html", cte="quoted-printable")
        data = message.as_bytes(policy=policy.SMTP)
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("marketing@example.com", [lead.email], data)
    return time.perf_counter() - started


def _without_builder_process() -> None:
    """Build every batch in a thread of the sender's process, however long the run."""
    import nurture.send.run

    nurture.send.run.PROCESS_AFTER_BATCHES = 1 << 62


def _without_idle_priority() -> None:
    """The builder process builds at normal priority."""
    import nurture.send.builder

    nurture.send.builder._can_leave_idle = lambda: False


def _without_result_log() -> None:
    """Results go to SQLite in group commits, as on PostgreSQL, rather than to the run's own log."""
    import nurture.send.run

    nurture.send.run.resultlog.folder_for = lambda url: None  # type: ignore[assignment]


def _without_enqueue_thread() -> None:
    """Every due send is enqueued before the first goes out."""

    async def send_due(self: Engine, now: datetime, dry_run: bool = False, progress: object = None) -> Report:
        report = Report()
        await self.off_loop(self.apply_rules, now)
        self.enqueue_due(now, report, await self.off_loop(self.plan, now))
        await self.deliver(now, report)
        await self.deliver_handoffs(now, report)
        return report

    Engine.send_due = send_due  # type: ignore[assignment,method-assign]


WITHOUT = {"builder-process": _without_builder_process, "idle-priority": _without_idle_priority,
           "result-log": _without_result_log, "enqueue-thread": _without_enqueue_thread}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--naive", type=int, default=300, help="messages for the naive baseline")
    parser.add_argument("--sink", choices=["spool", "count"], default="spool",
                        help="spool: the sink writes each message to a file (default); count: it only answers")
    parser.add_argument("--mail", choices=["confirmation", "digest"], default="confirmation",
                        help="what is timed: new leads' confirmations (default), or their first digest")
    parser.add_argument("--postgres", action="store_true",
                        help="time nurture on PostgreSQL too (127.0.0.1:5432, database test), in the same runs")
    parser.add_argument("--without", action="append", choices=sorted(WITHOUT), default=[],
                        help="time nurture without one piece of its delivery machinery (repeatable): what it buys")
    args = parser.parse_args()
    for piece in args.without:
        WITHOUT[piece]()

    port = free_port()
    ready = multiprocessing.Event()
    sink = multiprocessing.Process(target=sink_process, args=(port, ready, args.sink == "spool"), daemon=True)
    sink.start()
    ready.wait(10)
    rates: dict[str, list[float]] = {"nurture": [], "raw": [], "naive": [], "vs_raw": [], "vs_naive": [],
                                     "postgres": [], "vs_sqlite": []}
    try:
        for run in range(1, args.runs + 1):
            # as `nurture send-due` runs: on run_async's event loop
            took, kept = nurture_run(port, args.leads, args.connections, args.mail)
            raw = run_async(raw_blast(port, kept, args.connections))  # on the same event loop
            slow = naive(port, args.naive, args.mail)
            nurture_rate, raw_rate, naive_rate = args.leads / took, len(kept) / raw, args.naive / slow
            for key, value in (("nurture", nurture_rate), ("raw", raw_rate), ("naive", naive_rate),
                               ("vs_raw", nurture_rate / raw_rate), ("vs_naive", nurture_rate / naive_rate)):
                rates[key].append(value)
            print(f"run {run}: nurture send-due {nurture_rate:7.0f} emails/s | raw blast {raw_rate:7.0f} emails/s | "
                  f"naive {naive_rate:6.0f} emails/s | nurture/raw {nurture_rate / raw_rate:.2f}x | "
                  f"nurture/naive {nurture_rate / naive_rate:.1f}x")
            if args.postgres:
                on_postgres = args.leads / nurture_run(port, args.leads, args.connections, args.mail, "postgres")[0]
                rates["postgres"].append(on_postgres)
                rates["vs_sqlite"].append(on_postgres / nurture_rate)
                print(f"       on PostgreSQL {on_postgres:7.0f} emails/s | "
                      f"PostgreSQL/SQLite {on_postgres / nurture_rate:.2f}x")
    finally:
        sink.terminate()
    median = {key: statistics.median(values) for key, values in rates.items() if values}
    print(f"\nmedian of {args.runs} runs, {args.leads} leads ({args.mail}), {args.connections} connections, "
          f"{args.sink} sink" + (f", without {', '.join(args.without)}" if args.without else "") + ":")
    print(f"  nurture send-due  {median['nurture']:7.0f} emails/s")
    print(f"  raw blast         {median['raw']:7.0f} emails/s   (the sink's limit)")
    print(f"  naive baseline    {median['naive']:7.0f} emails/s")
    print(f"  nurture / raw     {median['vs_raw']:.2f}x   (target >= 0.8)")
    print(f"  nurture / naive   {median['vs_naive']:.1f}x   (target >= 5)")
    if args.postgres:
        print(f"  on PostgreSQL     {median['postgres']:7.0f} emails/s, {median['vs_sqlite']:.2f}x SQLite's "
              "(target >= 0.8)")


if __name__ == "__main__":
    main()
