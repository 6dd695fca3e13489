#!/usr/bin/env python3
"""What an idle tick's plan costs as the list grows: LEADS leads seeded by SQL, each with its confirmation
and a first digest sent yesterday (none due for six days), on SQLite and on PostgreSQL (where reachable).
For each size it prints the CPU seconds and wall milliseconds (medians of RUNS) and the peak Python memory
growth (tracemalloc, in a run of its own) of the plan (`Store.due_pages` judged by `program.due_all`,
as `Engine.plan_pages` does), and at the smaller sizes the same for the plan of release 13517fd, which read
every lead's sends (copied here). Target: the plan at 1,000,000 leads within 1.5x of the plan at 10,000.
It prints too what a run pays once as it starts (`Store.restore_due`, a pass over the leads that have no
due time).

With --enqueue, what a pass with everybody due costs instead, on SQLite: SIZE leads, half of them new (their
confirmation due) and half due for a digest of the sample feeds, planned and recorded by
`Engine.enqueue_due` as `send-due` does. It prints the wall seconds (a run of its own), the peak Python
memory growth (tracemalloc) and, of that, what the report's lines (one per lead, which the caller keeps)
hold at the end: the rest, the peak of the planning itself, must not grow with SIZE.

    python scripts/bench_due.py [SIZES...]                 (default: 10000 100000 1000000)
    python scripts/bench_due.py --enqueue [SIZES...]       (default: 20000 200000)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import TextClause, bindparam, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture import program  # noqa: E402
from nurture.content.catalog import load_catalog  # noqa: E402
from nurture.content.refresh import refresh  # noqa: E402
from nurture.engine import PAGE, Engine, Report  # noqa: E402
from nurture.models import Lead  # noqa: E402
from nurture.send.mailer import MemoryMailer  # noqa: E402
from nurture.settings import Program, load_settings  # noqa: E402
from nurture.store import Store  # noqa: E402
from tests.conftest import POSTGRES_URL, SECRET, postgres_problem  # noqa: E402
from tests.integration.test_due import every_history  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PROGRAM = Program()
DATETIME = Lead.__table__.c.due_at.type  # type: ignore[attr-defined]
RUNS = 201  # the idle plan takes a fraction of a millisecond: a median of many
OLD_RUNS = 3  # the old plan takes seconds
OLD_UP_TO = 100_000  # the old plan is timed up to this size


def timed(sql: str, values: dict[str, object]) -> TextClause:
    """`sql` with its times bound as nurture binds them (on SQLite, text of its own format, which a page's
    keyset compares with what it read)."""
    return text(sql).bindparams(*(bindparam(name, type_=DATETIME) for name, value in values.items()
                                  if isinstance(value, datetime) and f":{name}" in sql))


def seed(store: Store, leads: int) -> None:
    """`leads` confirmed MQLs, each with step 0 sent eight days ago and step 1 yesterday: none due."""
    series = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) SELECT i FROM n"
              if store.is_sqlite else "SELECT generate_series(1, :count) AS i")
    at = {"count": leads, "t0": NOW - timedelta(days=30), "confirmed": NOW - timedelta(days=8),
          "mailed": NOW - timedelta(days=1), "due": NOW + timedelta(days=6)}
    with store.engine.begin() as connection:
        connection.execute(timed(
            "INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
            "customer, stage, cycle, cycle_started_at, score, created_at, tracking, confirmed_at, last_step, "
            "last_mailed_at, due_at) SELECT i, 'lead' || i || '@example.com', '', '', '', 'finance', '[\"cloud\"]', "
            "'en', '', false, 'MQL', 0, :t0, 0, :t0, true, :t0, 1, :mailed, :due "
            f"FROM ({series}) AS leads", at), at)
        for step, when in ((0, "confirmed"), (1, "mailed")):
            connection.execute(timed(
                "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
                f"created_at, sent_at) SELECT i, 0, {step}, 'digest', 'SENT', '', '', '[]', 1, :{when}, :{when} "
                f"FROM ({series}) AS leads", at), at)
        connection.execute(text("ANALYZE"))


def plan(store: Store) -> list[program.Due]:
    return [step for page in store.due_pages(NOW, PAGE) for step in program.due_all(page, NOW, PROGRAM)]


def old_plan(store: Store) -> list[program.Due]:
    """The plan of release 13517fd: every MQL lead joined with its sends, grouped, loaded (the test's oracle)."""
    return program.due_all(every_history(store), NOW, PROGRAM)


def restore(store: Store) -> list[program.Due]:
    """What a run pays as it starts (Store.restore_due): one pass over the leads without a due time."""
    assert store.restore_due(PROGRAM) == 0
    return []


def measure(work: Callable[[Store], list[program.Due]], store: Store, runs: int = RUNS) -> tuple[float, float, float]:
    """Median CPU seconds and wall ms of `work`, which must find nobody due, and its peak memory growth (MB),
    read in a run of its own: tracemalloc slows what it watches several times over."""
    cpu, wall = [], []
    for _ in range(max(runs // 10, 1)):  # warm: statements compiled, pages cached, the CPU awake
        work(store)
    for _ in range(runs):
        started_cpu, started = time.process_time(), time.perf_counter()
        assert work(store) == []
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append(time.process_time() - started_cpu)
    tracemalloc.start()
    work(store)
    memory = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(cpu), statistics.median(wall), memory


def row(database: str, size: int, way: str, figures: tuple[float, float, float]) -> str:
    cpu, wall, memory = figures
    return f"{database:<11} {size:>10,} {way:<22} {cpu:9.5f} {wall:10.3f} {memory:10.2f}"


def databases(folder: str) -> list[tuple[str, Callable[[int], str]]]:
    found: list[tuple[str, Callable[[int], str]]] = [("SQLite", lambda size: f"sqlite:///{folder}/due-{size}.db")]
    problem = postgres_problem()
    if problem is None:
        found.append(("PostgreSQL", lambda size: f"{POSTGRES_URL}?options=-csearch_path%3D{SCHEMA}"))
    else:
        print(f"PostgreSQL skipped: {problem}")
    return found


SCHEMA = f"bench_{uuid.uuid4().hex[:8]}"


def fresh_schema(create: bool) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        if create:
            connection.execute(f"CREATE SCHEMA {SCHEMA}")


def seed_due(store: Store, leads: int) -> None:
    """`leads` MQLs interested in cloud, all due at NOW: odd ids new (their confirmation), even ids confirmed
    with their first digest sent eight days ago (their second)."""
    series = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) SELECT i FROM n"
    at = {"count": leads, "t0": NOW - timedelta(days=30), "mailed": NOW - timedelta(days=8),
          "due": NOW - timedelta(days=1)}
    with store.engine.begin() as connection:
        connection.execute(timed(
            "INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
            "customer, stage, cycle, cycle_started_at, score, created_at, tracking, confirmed_at, last_step, "
            "last_mailed_at, due_at) SELECT i, 'lead' || i || '@example.com', '', '', '', 'finance', '[\"cloud\"]', "
            "'en', '', false, 'MQL', 0, :t0, 0, :t0, true, :t0, CASE WHEN i % 2 = 0 THEN 1 END, "
            "CASE WHEN i % 2 = 0 THEN :mailed END, CASE WHEN i % 2 = 0 THEN :due END "
            f"FROM ({series}) AS leads", at), at)
        connection.execute(text("ANALYZE"))


def enqueue_pass(folder: str, size: int, traced: bool) -> tuple[float, float, float, int]:
    """Plan and record a pass over `size` due leads in a fresh database: wall seconds, peak memory growth
    and the report's share of it at the end (MB, when `traced`), and how many sends were recorded."""
    url = f"sqlite:///{folder}/enqueue-{size}-{traced}.db"
    settings = load_settings({"NURTURE_DATABASE_URL": url, "NURTURE_SECRET_KEY": SECRET}, ROOT / "nurture.yaml")
    store = Store(url)
    try:
        store.create()
        asyncio.run(refresh(store, load_catalog(settings.feeds_file), NOW - timedelta(days=1)))
        seed_due(store, size)
        engine = Engine(settings, store, MemoryMailer())
        report = Report()
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        recorded = engine.enqueue_due(NOW, report)
        wall = time.perf_counter() - started
        peak = kept = 0.0
        if traced:
            kept, peak = (value / 2**20 for value in tracemalloc.get_traced_memory())
            tracemalloc.stop()
        assert recorded == size and len(report.enqueued) == size, (recorded, len(report.enqueued))
        return wall, peak, kept, recorded
    finally:
        store.close()


def enqueue_main(sizes: list[int]) -> None:
    print("a pass with everybody due (half confirmations, half digests), planned and recorded by "
          "Engine.enqueue_due on SQLite; memory: peak Python allocation growth (tracemalloc, a run of its own)")
    print(f"{'leads':>10} {'wall s':>8} {'peak MB':>9} {'report MB':>10} {'planning MB':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            wall = enqueue_pass(folder, size, traced=False)[0]
            _, peak, kept, _ = enqueue_pass(folder, size, traced=True)
            print(f"{size:>10,} {wall:8.2f} {peak:9.1f} {kept:10.1f} {peak - kept:12.1f}", flush=True)


def main() -> None:
    arguments = sys.argv[1:]
    if arguments[:1] == ["--enqueue"]:
        enqueue_main([int(size) for size in arguments[1:]] or [20_000, 200_000])
        return
    sizes = [int(size) for size in arguments] or [10_000, 100_000, 1_000_000]
    print(f"an idle plan (nobody due); medians of {RUNS} runs ({OLD_RUNS} of the slow ones); "
          "memory: peak Python allocation growth (tracemalloc)")
    print(f"{'database':<11} {'leads':>10} {'plan':<22} {'CPU s':>9} {'wall ms':>10} {'peak MB':>10}")
    with tempfile.TemporaryDirectory() as folder:
        for database, url_of in databases(folder):
            smallest = None
            for size in sizes:
                if database == "PostgreSQL":
                    fresh_schema(create=True)
                store = Store(url_of(size))
                try:
                    store.create()
                    seed(store, size)
                    figures = measure(plan, store)
                    smallest = smallest or figures
                    print(row(database, size, "due_pages (index)", figures)
                          + f"   {figures[0] / smallest[0]:5.2f}x CPU, {figures[1] / smallest[1]:5.2f}x wall of the "
                            "smallest", flush=True)
                    restored = measure(restore, store, OLD_RUNS)
                    print(row(database, size, "restore_due (a start)", restored), flush=True)
                    if size <= OLD_UP_TO:
                        old = measure(old_plan, store, OLD_RUNS)
                        print(row(database, size, "histories (old scan)", old), flush=True)
                finally:
                    store.close()
                    if database == "PostgreSQL":
                        fresh_schema(create=False)


if __name__ == "__main__":
    main()
