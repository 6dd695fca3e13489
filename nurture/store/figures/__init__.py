"""Figures kept ahead on SQLite: sums the report reads instead of the rows they sum, a row a day, kept by
SQLite itself as those rows change (triggers), whatever writes them: delivery, the judge, a late bounce, an
unsubscribe, a recount, an erasure.

    steps      what people made of each step's mails (`step_day`): 645 ms of SQLite's 1.35 s report at
               100,000 leads and 550,000 mails, read off the mails; a covering index left it at 494 ms,
               for SQLite computes a row at a time
    cohorts    the funnel of the leads created each day (`lead_day`): 275 ms, read off the leads, their
               first digests and their hand-offs

The report reads the rows themselves where a window starts or ends within a day, and on PostgreSQL, which
scans them in parallel (its whole report in 787 ms) and where a trigger would make today's row a lock
that every delivery lane and the judge wait for; tests hold the two equal (tests/integration/test_figures.py).

A migration that rebuilds one of the tables they watch (Alembic's batch mode on SQLite: a copy, the old
table dropped, the copy renamed) does it inside `rebuilding`: SQLite refuses to drop a table that other
tables' triggers name. The triggers take rows as nurture writes them (INSERT, UPDATE, DELETE; INSERT OR
REPLACE on these tables would escape them); `nurture db recount` counts every figure anew.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection

from nurture.store.figures import cohorts, steps

KEPT = (steps, cohorts)  # each keeps one table of figures
TRIGGERS = tuple(name for kept in KEPT for name in kept.TRIGGERS)


def create_triggers(connection: Connection) -> None:
    """Create the triggers that keep the figures, on SQLite (the tables exist)."""
    if connection.dialect.name == "sqlite":
        for kept in KEPT:
            for statement in kept.triggers():
                connection.exec_driver_sql(statement)


def drop_triggers(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        for name in TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")


def count_again(connection: Connection) -> None:
    """Count every figure anew from what it counts (on SQLite; PostgreSQL keeps none)."""
    if connection.dialect.name == "sqlite":
        for kept in KEPT:
            for statement in kept.count_again():
                connection.exec_driver_sql(statement)


@contextmanager
def rebuilding(connection: Connection) -> Iterator[None]:
    """For a migration that rebuilds a table the triggers watch: without them while it does, then counted anew."""
    drop_triggers(connection)
    yield
    create_triggers(connection)
    count_again(connection)
