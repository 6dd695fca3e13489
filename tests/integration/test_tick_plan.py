"""An idle tick costs what it looks for, not what is stored: over a database with two earlier cycles of
mails, events and hand-offs behind every lead (scripts/bench_scale.py's history, ANALYZE run), each
statement that `send-due` makes with nobody due is planned by the database itself without reading a
table of the history whole. It fails the day a change makes a tick walk every lead, mail or hand-off."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import event

from nurture.engine import Engine
from nurture.send.mailer import MemoryMailer
from nurture.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_scale import IDLE, Population, seed, settings_for  # noqa: E402

HISTORY = ("lead", "send", "event", "handoff", "senditem", "consent")
SQLITE_SCAN = re.compile(r"\bSCAN (\w+)(?! USING (?:COVERING )?INDEX)")
POSTGRES_SCAN = re.compile(r"Seq Scan on (\w+)")


def test_an_idle_tick_reads_no_table_of_the_history_whole(database_url: str) -> None:
    seed(database_url, Population.of(3_000, 300))
    store = Store(database_url)
    engine = Engine(settings_for(database_url, 25), store, MemoryMailer())
    asyncio.run(engine.send_due(IDLE))  # a first tick: what a start does once (restore_due, say) is done
    made: list[tuple[str, Any]] = []

    def seen(connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not many and statement.lstrip().split()[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            made.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        report = asyncio.run(engine.send_due(IDLE))
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert not report.enqueued and not report.sent and made
    explain, scan = ("EXPLAIN QUERY PLAN ", SQLITE_SCAN) if store.is_sqlite else ("EXPLAIN ", POSTGRES_SCAN)
    with store.engine.connect() as connection:
        for statement, parameters in made:
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(explain + statement, parameters))
            whole = [table for table in scan.findall(plan) if table in HISTORY]
            assert not whole, f"{statement.split()[:12]} reads {whole} whole: {plan}"
    store.close()
