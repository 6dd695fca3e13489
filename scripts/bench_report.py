#!/usr/bin/env python3
"""What the report costs over a long history: LEADS leads (a year of them) with six mails each and EVENTS
events (opens, clicks, costs of mails and web visits; a quarter of the opens and clicks a machine's), 3%
handed to sales with outcomes, on SQLite and on PostgreSQL (where reachable). Prints, per database, the
median of several runs of a bare `SELECT count(*) FROM event`, of the whole report (nurture.report.build,
as `nurture report` makes it: its parts read side by side through a snapshot's LANES connections; again
through one connection; and with the funnel per interest) and of the dashboard (the report, its tables and
its charts), and each one's ratio to the count measured in the same run.

    python scripts/bench_report.py [LEADS] [EVENTS]          (default 100000 2000000)

The history is made by SQL in the database (INSERT ... SELECT over a series, pseudo-random by
multiplicative hashing of the row number): the same for both databases, and seconds to make.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.models import Event, Handoff, Lead, Send  # noqa: E402
from nurture.report import LANES, Report, build  # noqa: E402
from nurture.report.charts import charts  # noqa: E402
from nurture.report.tables import tables  # noqa: E402
from nurture.settings import Scoring  # noqa: E402
from nurture.store import Store  # noqa: E402
from tests.conftest import postgres_problem, postgres_schema  # noqa: E402

START = datetime(2025, 12, 1, tzinfo=UTC)
RUNS = 5
STEPS = 6  # the confirmation and five digests
LINKS = ('[{"url": "https://example.com/pricing", "tag": "high-intent", "action": null, "points": null}, '
         '{"url": "https://example.com/call", "tag": null, "action": "callback", "points": null}, '
         '{"url": "https://example.com/blog", "tag": null, "action": null, "points": null}]')


TALLY = (
    "UPDATE send SET hits = a.hits, machine_hits = a.machine_hits, clicks = a.clicks, opened_at = a.opened_at, "
    "clicked_at = a.clicked_at FROM (SELECT send_id, count(*) AS hits, "
    "sum(CASE WHEN machine THEN 1 ELSE 0 END) AS machine_hits, "
    "sum(CASE WHEN kind = 'CLICK' AND NOT machine THEN 1 ELSE 0 END) AS clicks, "
    "min(CASE WHEN kind = 'OPEN' AND NOT machine THEN occurred_at END) AS opened_at, "
    "min(CASE WHEN kind = 'CLICK' AND NOT machine THEN occurred_at END) AS clicked_at "
    "FROM event WHERE kind IN ('OPEN', 'CLICK') GROUP BY send_id) AS a WHERE a.send_id = send.id",
    "UPDATE lead SET engaged_at = a.at FROM (SELECT lead_id, min(occurred_at) AS at FROM event "
    "WHERE kind IN ('OPEN', 'CLICK') AND NOT machine GROUP BY lead_id) AS a WHERE a.lead_id = lead.id",
)


def series(store: Store) -> str:
    if store.is_sqlite:
        return ("WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < :count) "
                "SELECT k FROM n")
    return "SELECT generate_series(CAST(1 AS bigint), :count) AS k"


def moment(store: Store, seconds: str) -> str:
    """START plus an expression in seconds, as each database adds time."""
    if store.is_sqlite:
        return f"strftime('%Y-%m-%d %H:%M:%f', :start, '+' || ({seconds}) || ' seconds')"
    return f"(CAST(:start AS timestamptz) + ({seconds}) * interval '1 second')"


def later(store: Store, column: str, seconds: str) -> str:
    """A moment some seconds after another."""
    if store.is_sqlite:
        return f"strftime('%Y-%m-%d %H:%M:%f', {column}, '+' || ({seconds}) || ' seconds')"
    return f"({column} + ({seconds}) * interval '1 second')"


def enum(store: Store, table: Any, column: str, value: str) -> str:
    """A text expression as the column's enum type (PostgreSQL's are native types)."""
    return value if store.is_sqlite else f"CAST({value} AS {table.__table__.c[column].type.name})"


def seed(store: Store, leads: int, events: int) -> None:
    year = 365 * 86400
    h = "((k * 2654435761) % 4294967296)"  # a multiplicative hash of the row number: spread, repeatable
    stage = enum(store, Lead, "stage", "CASE WHEN k % 33 = 0 THEN 'SQL' ELSE 'MQL' END")
    state = enum(store, Send, "state", "CASE WHEN s.k % 97 = 0 THEN 'BOUNCED' ELSE 'SENT' END")
    # of every 20 events: 12 opens, 2 clicks, 5 costs of a mail (SENT), 1 web visit; a quarter of the hits a machine's
    kind = enum(store, Event, "kind", "CASE WHEN s.k % 20 < 12 THEN 'OPEN' WHEN s.k % 20 < 14 THEN 'CLICK' "
                                      "WHEN s.k % 20 < 19 THEN 'SENT' ELSE 'EXTERNAL' END")
    sent = enum(store, Handoff, "state", "'SENT'")
    outcome = enum(store, Handoff, "outcome", "CASE id % 5 WHEN 0 THEN 'WON' WHEN 1 THEN 'LOST' "
                                              "WHEN 2 THEN 'NO_RESULT' WHEN 3 THEN 'NOT_A_FIT' END")
    hashed = h.replace("k", "s.k")
    click = "CASE WHEN s.k % 20 IN (12, 13) THEN"  # the link clicked: the index into LINKS
    machine = f"(s.k % 20 < 14 AND {hashed} % 4 = 0)"
    interests = """CASE k % 3 WHEN 0 THEN '["cloud"]' WHEN 1 THEN '["cloud", "security"]' ELSE '["data"]' END"""
    links = f"'{LINKS}'" if store.is_sqlite else f"CAST('{LINKS}' AS jsonb)"  # as models.Send.links stores them
    if not store.is_sqlite:
        interests = f"CAST({interests} AS json)"
    statements = [
        (f"INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
         f"customer, stage, cycle, cycle_started_at, score, created_at, confirmed_at, tracking) "
         f"SELECT k, 'lead' || k || '@example.com', '', '', '', "
         f"CASE k % 5 WHEN 0 THEN 'finance' WHEN 1 THEN 'retail' WHEN 2 THEN 'health' WHEN 3 THEN 'industry' "
         f"ELSE '' END, {interests}, CASE WHEN k % 7 = 0 THEN 'nl' ELSE 'en' END, "
         f"CASE k % 4 WHEN 0 THEN 'NL' WHEN 1 THEN 'DE' ELSE 'US' END, k % 10 = 0, "
         f"{stage}, 0, "
         f"{moment(store, f'k * {year} / :leads')}, k % 11, {moment(store, f'k * {year} / :leads')}, "
         f"CASE WHEN k % 10 = 7 THEN NULL ELSE {moment(store, f'k * {year} / :leads')} END, true "
         f"FROM ({series(store)}) AS s", leads),
        ("INSERT INTO consent (lead_id, at, how) SELECT id, created_at, CASE id % 3 WHEN 0 THEN 'form' "
         "WHEN 1 THEN 'import leads.csv' ELSE 'api' END FROM lead", 0),
        (f"INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
         f"created_at, sent_at) SELECT lead.id, 0, s.k % {STEPS}, "
         f"CASE WHEN s.k % {STEPS} = 0 THEN 'confirmation' ELSE 'digest' END, "
         f"{state}, '', '', "
         f"{links}, 1, lead.created_at, lead.created_at "
         f"FROM ({series(store)}) AS s JOIN lead ON lead.id = (s.k - 1) / {STEPS} + 1 "
         f"WHERE lead.confirmed_at IS NOT NULL OR s.k % {STEPS} = 0", leads * STEPS),
        (f"INSERT INTO event (lead_id, cycle, send_id, kind, link, url, tag, action, points, counted, machine, "
         f"reason, occurred_at, method, user_agent) SELECT send.lead_id, 0, send.id, {kind}, "
         f"{click} s.k % 3 END, {click} CASE s.k % 3 WHEN 0 THEN 'https://example.com/pricing' "
         f"WHEN 1 THEN 'https://example.com/call' ELSE 'https://example.com/blog' END END, "
         f"{click} CASE WHEN s.k % 3 = 0 THEN 'high-intent' END END, "  # each click with its link, as judged
         f"CASE WHEN s.k % 20 = 19 THEN 'web_visit' WHEN s.k % 20 IN (12, 13) AND s.k % 3 = 1 THEN 'callback' END, "
         f"CASE WHEN s.k % 20 < 12 THEN 1 WHEN s.k % 20 < 14 THEN 0 WHEN s.k % 20 < 19 THEN -1 ELSE 1 END, "
         f"NOT ({machine}), {machine}, CASE WHEN {machine} THEN 'scanner user agent (bench)' END, "
         f"{later(store, 'send.created_at', 's.k % 172800')}, 'GET', 'Mozilla/5.0' "
         f"FROM ({series(store)}) AS s JOIN send ON send.id = {hashed} % :sends + 1", events),
        (f"INSERT INTO handoff (lead_id, cycle, score, state, outcome, message_id, created_at, owner_name, "
         f"owner_email) SELECT id, 0, 12 + id % 8, {sent}, "
         f"{outcome}, '', "
         f"{moment(store, f'(CAST(id AS bigint) * {year} / :leads) + (id % 120) * 86400')}, '', '' "
         f"FROM lead WHERE id % 33 = 0", 0),
    ]
    with store.engine.begin() as connection:
        for statement, count in statements:
            sends = connection.execute(text("SELECT count(*) FROM send")).scalar_one()
            connection.execute(text(statement), {"count": count, "leads": leads, "start": START, "sends": sends})
        for statement in TALLY:  # what the judge keeps of each mail's and lead's hits (nurture.store.engagement)
            connection.execute(text(statement))
    if store.is_sqlite:  # as a live database of nurture's: nothing runs ANALYZE on it, its planner has no statistics
        return
    vacuum(store, ("lead", "consent", "send", "event", "handoff"))  # the tally's UPDATEs left every mail's old row dead


def vacuum(store: Store, tables: Iterable[str]) -> None:
    """PostgreSQL: VACUUM ANALYZE, as autovacuum does to a live database; of the bench's own tables only (a
    database-wide ANALYZE reads other schemas mid-seed as empty)."""
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in tables:
            connection.execute(text(f"VACUUM ANALYZE {table}"))


def median_ms(run: Callable[[Store], object], store: Store) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        run(store)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def count_events(store: Store) -> int:
    with store.reader.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM event")).scalar_one())


def report(store: Store, segment: str | None = None) -> Report:
    """The report as `nurture report` and the dashboard build it: its parts read side by side (LANES)."""
    with store.snapshot(LANES) as readers:
        return build(readers, Scoring(), segment=segment)


def one_connection(store: Store) -> Report:
    with store.reader.connect() as connection:
        return build(connection, Scoring())


def dashboard(store: Store) -> object:
    """What the dashboard draws: the report, its tables and its charts (SVG)."""
    built = report(store)
    return tables(built), charts(built)


def measure(name: str, store: Store, leads: int, events: int) -> None:
    started = time.perf_counter()
    seed(store, leads, events)
    stored = count_events(store)
    print(f"{name}: seeded {leads:,} leads and {stored:,} events in {time.perf_counter() - started:.1f} s")
    count = median_ms(count_events, store)
    built = median_ms(report, store)
    alone = median_ms(one_connection, store)
    segmented = median_ms(lambda store: report(store, segment="interest"), store)
    board = median_ms(dashboard, store)
    print(f"{name}: count(*) {count:8.1f} ms   report {built:8.1f} ms ({built / count:5.1f}x; {LANES} lanes)   "
          f"through one connection {alone:8.1f} ms ({alone / count:5.1f}x)   "
          f"with --segment interest {segmented:8.1f} ms ({segmented / count:5.1f}x)   "
          f"dashboard {board:8.1f} ms ({board / count:5.1f}x)   medians of {RUNS}")


def on(name: str, url: str, leads: int, events: int) -> None:
    store = Store(url)
    store.create()
    try:
        measure(name, store, leads, events)
    finally:
        store.close()


def main() -> None:
    leads = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    with tempfile.TemporaryDirectory() as folder:
        on("SQLite", f"sqlite:///{folder}/bench.db", leads, events)
    problem = postgres_problem()
    if problem:
        print(f"PostgreSQL: skipped ({problem})")
        return
    with postgres_schema("bench_report") as url:
        on("PostgreSQL", url, leads, events)


if __name__ == "__main__":
    main()
