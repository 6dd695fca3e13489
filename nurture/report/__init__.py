"""Reports: is the program working, and which rules win deals. Every figure is an SQL aggregate over
indexed columns (never a loop over the events in Python), and every figure counts people: a machine's
open or click (`Event.machine`) is counted apart, as the share the judge filtered out.

    funnel       leads -> confirmed -> MQL -> engaged -> SQL -> won, per cohort and segment; days to SQL
    engagement   per step and template, per link and tag
    outcomes     what predicts a won deal; what other thresholds would have sent to sales
    tables       the report as named tables of plain values (for the terminal, CSV, JSON and the dashboard)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from nurture.report.engagement import Clicks, Step, clicks, steps
from nurture.report.funnel import SEGMENTS, Distribution, Stages, days_to_sql, in_nurture, overall, stages
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


def build(connection: Connection, rules: Scoring, window: Window = ALL_TIME, period: str = "month",
          segment: str | None = None) -> Report:
    """The whole report over what the database holds, within `window`."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}: one of {', '.join(PERIODS)}")
    if connection.dialect.name == "postgresql":
        # an analyst's session: compiling these few queries cost more than it saved (270 ms a query at 100,000
        # leads), and their sorts and hashes fit in memory instead of spilling to disk
        connection.exec_driver_sql("SET LOCAL jit = off")
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    nurtured = in_nurture(connection)
    cohorts = stages(connection, window, "cohort", period)
    links, tags = clicks(connection, window)
    return Report(
        window=window, period=period, segment=segment,
        funnel=overall(cohorts),
        cohorts=cohorts,
        segments=stages(connection, window, segment) if segment else [],
        days_to_sql=days_to_sql(connection, window),
        steps=steps(connection, window),
        links=links,
        tags=tags,
        mql_scores=nurtured.scores,
        outcomes=outcomes(connection, window),
        thresholds=thresholds(connection, window, rules, nurtured),
    )


__all__ = ["PERIODS", "SEGMENTS", "Report", "Window", "build"]
