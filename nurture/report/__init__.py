"""Reports: is the program working, and which rules win deals. Every figure is an SQL aggregate over
indexed columns (never a loop over the events in Python), and every figure counts people: a machine's
open or click (`Event.machine`) is counted apart, as the share the judge filtered out.

    funnel       leads -> confirmed -> MQL -> engaged -> SQL -> won, per cohort and segment; days to SQL
    engagement   per step and template, per link and tag
    outcomes     what predicts a won deal; what other thresholds would have sent to sales
    tables       the report as named tables of plain values (for the terminal, CSV, JSON and the dashboard)
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from nurture.report.engagement import Clicks, Step, clicks, steps
from nurture.report.funnel import SEGMENTS, Distribution, InNurture, Stages, days_to_sql, in_nurture, overall, stages
from nurture.report.outcomes import Outcomes, Threshold, outcomes, thresholds
from nurture.report.sql import ALL_TIME, PERIODS, Window
from nurture.settings import Scoring


@dataclass(frozen=True)
class Report:
    window: Window
    period: str  # of the cohorts: week or month
    segment: str | None
    funnel: Stages
    cohorts: list[Stages]
    segments: list[Stages]  # by `segment`, empty without one
    days_to_sql: Distribution
    steps: list[Step]
    links: list[Clicks]
    tags: list[Clicks]
    mql_scores: Distribution
    outcomes: Outcomes
    thresholds: list[Threshold]


# connections a report reads through side by side: one a core this process may run on, at most 4
LANES = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def build(readers: Connection | Sequence[Connection], rules: Scoring, window: Window = ALL_TIME,
          period: str = "month", segment: str | None = None) -> Report:
    """The whole report over what the database holds, within `window`. `readers`: a connection, or several
    that read one moment (Store.snapshot): the report's parts are then read side by side, each through
    whichever connection is free (100,000 leads on SQLite, 2 cores: 153 -> 90 ms)."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}: one of {', '.join(PERIODS)}")

    def nurtured(connection: Connection) -> tuple[InNurture, list[Threshold]]:
        now = in_nurture(connection)
        return now, thresholds(connection, window, rules, now)

    parts: dict[str, Callable[[Connection], Any]] = {  # the slowest first, so that the lanes end together
        "outcomes": lambda connection: outcomes(connection, window),
        "clicks": lambda connection: clicks(connection, window),
        "segments": lambda connection: stages(connection, window, segment) if segment else [],
        "nurtured": nurtured,
        "days_to_sql": lambda connection: days_to_sql(connection, window),
        "cohorts": lambda connection: stages(connection, window, "cohort", period),
        "steps": lambda connection: steps(connection, window),
    }
    read = _side_by_side([readers] if isinstance(readers, Connection) else list(readers), parts)
    (links, tags), (now, moved) = read["clicks"], read["nurtured"]
    return Report(
        window=window, period=period, segment=segment,
        funnel=overall(read["cohorts"]),
        cohorts=read["cohorts"],
        segments=read["segments"],
        days_to_sql=read["days_to_sql"],
        steps=read["steps"],
        links=links,
        tags=tags,
        mql_scores=now.scores,
        outcomes=read["outcomes"],
        thresholds=moved,
    )


def _side_by_side(readers: list[Connection], parts: dict[str, Callable[[Connection], Any]]) -> dict[str, Any]:
    """What each part reads, each part read through one of `readers`: a lane (a thread) each takes the next
    part waiting as it is done with one. SQLite and PostgreSQL's driver let go of Python's lock while the
    database works. A part that fails ends the report: the other lanes take no part after the one they read."""
    waiting = deque(parts.items())
    read: dict[str, Any] = {}

    def lane(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # an analyst's session: compiling these few queries cost more than it saved (270 ms a query at
            # 100,000 leads), and their sorts and hashes fit in memory instead of spilling to disk
            connection.exec_driver_sql("SET LOCAL jit = off")
            connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        while True:
            try:
                name, part = waiting.popleft()
            except IndexError:
                return
            try:
                read[name] = part(connection)
            except BaseException:
                waiting.clear()
                raise

    if len(readers) == 1:
        lane(readers[0])
        return read
    with ThreadPoolExecutor(len(readers), thread_name_prefix="report") as pool:
        for done in [pool.submit(lane, connection) for connection in readers]:
            done.result()
    return read


__all__ = ["LANES", "PERIODS", "SEGMENTS", "Report", "Window", "build"]
