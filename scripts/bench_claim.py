#!/usr/bin/env python3
"""What a claim costs with a long history: SENT mails already sent and QUEUED waiting, on SQLite and on
PostgreSQL (where reachable), the claim of 200 through the partial index ix_send_open against the same
claim with the index dropped (the plan of release 7b22c53). Prints medians of several runs.

    python scripts/bench_claim.py [SENT] [QUEUED]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.send.outbox import claimable  # noqa: E402
from nurture.store import Store  # noqa: E402
from tests.conftest import POSTGRES_URL, make_lead, postgres_problem  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
RUNS = 7


def seed(store: Store, sent: int, queued: int) -> None:
    make_lead(store)
    series = ("WITH RECURSIVE n(step) AS (SELECT 1 UNION ALL SELECT step + 1 FROM n WHERE step < :count) "
              "SELECT step FROM n") if store.is_sqlite else "SELECT generate_series(1, :count) AS step"
    insert = ("INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
              "created_at) SELECT 1, 0, step + :offset, 'digest', :state, '', '', '[]', 0, :at FROM ({}) AS s")
    with store.engine.begin() as connection:
        connection.execute(text(insert.format(series)), {"count": sent, "offset": 0, "state": "SENT", "at": NOW})
        connection.execute(text(insert.format(series)), {"count": queued, "offset": sent, "state": "QUEUED",
                                                         "at": NOW})
        connection.execute(text("ANALYZE"))


def claim_ms(store: Store) -> float:
    times = []
    for _ in range(RUNS):
        with store.engine.begin() as connection:
            started = time.perf_counter()
            query = claimable(200, NOW, NOW - timedelta(minutes=5), store.is_sqlite)
            rows = connection.execute(query).all()
            times.append((time.perf_counter() - started) * 1000)
            assert len(rows) == 200
            connection.rollback()
    return statistics.median(times)


def without_index(store: Store) -> float:
    with store.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_send_open"))
    if store.is_sqlite:  # the release before it: no index to name, the ORM's query as it was
        from nurture.send import outbox
        old = outbox.SQLITE_CLAIMABLE
        outbox.SQLITE_CLAIMABLE = text(old.text.replace(" INDEXED BY ix_send_open", "")).bindparams(
            *old._bindparams.values())  # type: ignore[attr-defined]
        try:
            return claim_ms(store)
        finally:
            outbox.SQLITE_CLAIMABLE = old
    return claim_ms(store)


def main() -> None:
    sent = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    queued = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    print(f"claim of 200 with {sent:,} sent and {queued:,} queued; median of {RUNS} runs")
    with tempfile.TemporaryDirectory() as folder:
        urls = [("SQLite", f"sqlite:///{folder}/bench.db")]
        problem = postgres_problem()
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        if problem is None:
            import psycopg
            with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as connection:
                connection.execute(f"CREATE SCHEMA {schema}")
            urls.append(("PostgreSQL", f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"))
        else:
            print(f"PostgreSQL skipped: {problem}")
        try:
            for name, url in urls:
                store = Store(url)
                store.create()
                seed(store, sent, queued)
                indexed = claim_ms(store)
                plain = without_index(store)
                print(f"{name:<11} partial index {indexed:8.2f} ms   without it {plain:8.2f} ms   "
                      f"{plain / indexed:6.1f}x")
                store.close()
        finally:
            if problem is None:
                with psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True) as connection:
                    connection.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
