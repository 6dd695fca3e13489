#!/usr/bin/env python3
"""What the report's partial indexes cost the writes they index, on SQLite.

ix_lead_nurtured (schema 0023) holds each lead in nurture's score: a judged hit that moves a score moves
its entry. ix_event_lead_signal (schema 0022) holds a lead's clicks, website events and inactivity: each
one stored adds an entry; an open or a sent mail adds none. On a database of LEADS confirmed leads and
EVENTS events (default 100,000 and 2,000,000: a quarter sent mails, three fifths opens, a tenth clicks, a
twentieth website events), times each write as one executemany over ROWS leads picked at random (rolled
back after), with the two indexes and without them, interleaved. Prints µs a row, medians of RUNS.

    python scripts/bench_indexes.py [--leads 100000] [--events 2000000] [--rows 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Connection  # noqa: E402

from nurture.report.sql import EVENTS, LEADS  # noqa: E402
from nurture.store import Store  # noqa: E402

T = "'2026-03-01 00:00:00.000000'"
INDEXES = [index for table in (LEADS, EVENTS) for index in table.indexes
           if index.name in ("ix_lead_nurtured", "ix_event_lead_signal")]
EVENT = ("INSERT INTO event (lead_id, cycle, kind, url, tag, action, points, counted, machine, occurred_at) "
         "VALUES (?, 0, '{kind}', {url}, NULL, NULL, 1, 1, 0, '2026-03-02 10:00:00.000000')")
WRITES = {  # what each write does, for a lead named by id
    "a judged hit moves a score": "UPDATE lead SET score = score + 1 WHERE id = ?",
    "a click stored": EVENT.format(kind="CLICK", url="'https://example.com/pricing'"),
    "a website event stored": EVENT.format(kind="EXTERNAL", url="NULL"),
    "an open stored": EVENT.format(kind="OPEN", url="NULL"),
}
KIND = ("CASE WHEN k % 20 < 5 THEN 'SENT' WHEN k % 20 < 17 THEN 'OPEN' WHEN k % 20 < 19 THEN 'CLICK' "
        "ELSE 'EXTERNAL' END")


def seed(store: Store, leads: int, events: int) -> None:
    series = "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < {count}) "
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            series.format(count=leads) + "INSERT INTO lead (id, email, first_name, last_name, company, industry, "
            "interests, locale, country, customer, stage, cycle, cycle_started_at, score, created_at, confirmed_at, "
            f"tracking) SELECT k, 'lead' || k || '@example.com', '', '', '', 'finance', '[]', 'en', '', 0, 'MQL', 0, "
            f"{T}, k % 12, {T}, {T}, 1 FROM n")
        connection.exec_driver_sql(
            series.format(count=events) + "INSERT INTO event (lead_id, cycle, kind, url, points, counted, machine, "
            f"occurred_at) SELECT (k * 7919) % {leads} + 1, 0, {KIND}, CASE WHEN {KIND} = 'CLICK' THEN "
            f"'https://example.com/pricing' END, 1, 1, 0, {T} FROM n")


def timed(connection: Connection, ids: list[tuple[int]]) -> dict[str, float]:
    """µs a row of each write, each rolled back."""
    found = {}
    for name, statement in WRITES.items():
        with connection.begin() as transaction:
            started = time.perf_counter()
            connection.exec_driver_sql(statement, ids)
            found[name] = (time.perf_counter() - started) / len(ids) * 1e6
            transaction.rollback()
    return found


def indexed(connection: Connection, present: bool) -> None:
    with connection.begin():
        for index in INDEXES:
            index.drop(connection, checkfirst=True)
            if present:
                index.create(connection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    picked = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/indexes.db")
        store.create()
        seed(store, args.leads, args.events)
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        with store.engine.connect() as connection:
            for _ in range(args.runs):  # interleaved: the host's pace moves alike for both
                for present in (False, True):
                    indexed(connection, present)
                    ids = [(picked.randint(1, args.leads),) for _ in range(args.rows)]
                    runs[present].append(timed(connection, ids))
        store.close()
    print(f"{args.leads:,} leads, {args.events:,} events; {args.rows:,} rows a write, µs a row, "
          f"medians of {args.runs}:")
    for name in WRITES:
        without, kept = (statistics.median(run[name] for run in runs[present]) for present in (False, True))
        print(f"  {name:<30} {without:6.1f} without the report's indexes, {kept:6.1f} with them "
              f"(+{kept - without:.1f})")


if __name__ == "__main__":
    main()
