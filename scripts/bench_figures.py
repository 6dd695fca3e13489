#!/usr/bin/env python3
"""What SQLite's figures kept ahead (nurture.store.figures) cost the writes that keep them.

On a fresh SQLite database of LEADS confirmed leads (default 20,000), times the writes nurture makes most,
each as one executemany over every lead or mail, with the figures' triggers and without them: a result
stored (a first digest goes: SENDING -> SENT), a judged hit on a mail (its hits and first open), a
judged hit on a lead (its score), and a lead's first engagement. Prints µs a row for each, medians of
RUNS (default 5).

    python scripts/bench_figures.py [--leads 20000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Connection  # noqa: E402

from nurture.store import Store, figures  # noqa: E402

T = "'2026-03-01 00:00:00.000000'"
WRITES: dict[str, str] = {  # what each write sets, for a row named by id
    "result stored (a first digest goes)": "UPDATE send SET state = 'SENT', sent_at = '2026-03-01 10:00:00.000000', "
                                           "claimed_by = NULL WHERE id = ?",
    "a judged hit on a mail": "UPDATE send SET hits = hits + 1, opened_at = coalesce(opened_at, "
                              "'2026-03-01 11:00:00.000000') WHERE id = ?",
    "a judged hit on a lead (score)": "UPDATE lead SET score = score + 1 WHERE id = ?",
    "a lead's first engagement": "UPDATE lead SET engaged_at = coalesce(engaged_at, "
                                 "'2026-03-01 11:00:00.000000') WHERE id = ?",
}


def seed(store: Store, leads: int) -> None:
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            f"WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < {leads}) "
            "INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
            "customer, stage, cycle, cycle_started_at, score, created_at, confirmed_at, tracking) SELECT k, "
            f"'lead' || k || '@example.com', '', '', '', '', '[]', 'en', '', 0, 'MQL', 0, {T}, 0, {T}, {T}, 1 FROM n")


def reset(connection: Connection, triggers: bool) -> None:
    """Every lead with one first digest being sent, no hit; the figures counted, with or without triggers."""
    figures.drop_triggers(connection)
    connection.exec_driver_sql("DELETE FROM send")
    connection.exec_driver_sql("UPDATE lead SET score = 0, engaged_at = NULL")
    connection.exec_driver_sql(
        "INSERT INTO send (id, lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
        f"created_at, unsettled, clicks, hits, machine_hits) SELECT id, id, 0, 1, 'digest', 'SENDING', '', '', '[]', "
        f"0, {T}, 0, 0, 0, 0 FROM lead")
    figures.count_again(connection)
    if triggers:
        figures.create_triggers(connection)


def timed(store: Store, triggers: bool, leads: int) -> dict[str, float]:
    """µs a row of each write, in order, in one transaction (a result goes before a hit on its mail)."""
    found = {}
    with store.engine.begin() as connection:
        reset(connection, triggers)
        ids = [(n,) for n in range(1, leads + 1)]
        for name, statement in WRITES.items():
            started = time.perf_counter()
            connection.exec_driver_sql(statement, ids)
            found[name] = (time.perf_counter() - started) / leads * 1e6
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(f"sqlite:///{folder}/figures.db")
        store.create()
        seed(store, args.leads)
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.runs):  # interleaved: the host's pace moves alike for both
            for triggers in (False, True):
                runs[triggers].append(timed(store, triggers, args.leads))
        store.close()
    median: Callable[[bool, str], float] = lambda triggers, name: statistics.median(  # noqa: E731
        run[name] for run in runs[triggers])
    print(f"{args.leads:,} rows a write, µs a row, medians of {args.runs}:")
    for name in WRITES:
        without, kept = median(False, name), median(True, name)
        print(f"  {name:<40} {without:6.1f} without the figures, {kept:6.1f} with them (+{kept - without:.1f})")


if __name__ == "__main__":
    main()
