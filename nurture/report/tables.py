"""The report as named tables of plain values, in the order a reader wants them: the terminal prints them,
`--csv` and `--json` write them, and the dashboard shows each chart's numbers from them (pure)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nurture.report import Report
from nurture.report.funnel import SQL_WITHIN_DAYS, Stages, ratio
from nurture.report.outcomes import SMALL_SAMPLE

Value = str | int | float | None
DAY_EDGES = (0, 7, 14, 30, 60, 120)
INTERESTS = "a lead counts under each of its interests; leads without one are not shown"
FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell that starts so
OUTCOME_EDGES = (0, 1, 3, 7, 14, 30)
PEOPLE = "people, not machines: a scanner's or a privacy proxy's open or click is never counted as a person's"


@dataclass(frozen=True)
class Table:
    name: str  # a key for tools: funnel, cohorts, ...
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]
    note: str = ""
    percents: tuple[str, ...] = ()  # the columns that hold a share (0..1)

    def records(self) -> list[dict[str, Value]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


STAGE_COLUMNS = ("leads", "confirmed", "mql", "engaged", "sql", f"sql within {SQL_WITHIN_DAYS} d", "won",
                 "no deal", "not a fit", "mql to sql", "sql to won")


def _stage_row(stages: Stages) -> tuple[Value, ...]:
    return (stages.label, stages.leads, stages.confirmed, stages.mql, stages.engaged, stages.sql, stages.sql_within,
            stages.won, stages.no_deal, stages.not_a_fit, stages.mql_to_sql, stages.sql_to_won)


def tables(report: Report) -> list[Table]:
    """Every table of the report."""
    funnel = report.funnel
    found = [
        Table("funnel", "Funnel", ("stage", "people"), tuple(
            (stage, count) for stage, count in (
                ("leads", funnel.leads), ("confirmed", funnel.confirmed), ("mql (nurtured)", funnel.mql),
                ("engaged", funnel.engaged), ("sql", funnel.sql), ("won", funnel.won),
                ("no deal", funnel.no_deal), ("not a fit", funnel.not_a_fit))),
              note=f"{PEOPLE}. MQL to SQL {_share(funnel.mql_to_sql)}, SQL to won {_share(funnel.sql_to_won)}; "
                   "engaged: a person opened or clicked a mail"),
        Table("cohorts", f"Cohorts (leads created per {report.period})", ("cohort", *STAGE_COLUMNS),
              tuple(_stage_row(row) for row in report.cohorts), percents=("mql to sql", "sql to won")),
    ]
    if report.segment:
        found.append(Table("segments", f"By {report.segment}", (report.segment, *STAGE_COLUMNS),
                           tuple(_stage_row(row) for row in report.segments), percents=("mql to sql", "sql to won"),
                           note=INTERESTS if report.segment == "interest" else ""))
    days = report.days_to_sql
    found += [
        Table("days_to_sql", "Days from lead to SQL", ("days", "people"), tuple(days.buckets(DAY_EDGES)),
              note=f"median {_number(days.median)} days, 90% within {_number(days.quantile(0.9))} days, "
                   f"{days.total} people"),
        Table("steps", "Per email", ("step", "template", "sent", "delivered", "bounced", "opened", "open rate",
                                     "clicked", "click rate", "clicks", "unsubscribed", "machine share"),
              tuple((s.step, s.template, s.sent, s.delivered, s.bounced, s.opened, s.open_rate, s.clicked,
                     s.click_rate, s.clicks, s.unsubscribed, s.machine_share) for s in report.steps),
              note="opened, clicked: mails a person opened or clicked; machine share: of all opens and clicks, "
                   "those the judge found a machine's",
              percents=("open rate", "click rate", "machine share")),
        Table("links", "Links people clicked", ("link", "clicks", "people"),
              tuple((c.name, c.clicks, c.people) for c in report.links)),
        Table("tags", "Clicks by tag or action", ("tag", "clicks", "people"),
              tuple((c.name, c.clicks, c.people) for c in report.tags)),
        Table("mql_scores", "Scores of the MQLs in nurture now", ("score", "people"), report.mql_scores.counts,
              note=f"median {_number(report.mql_scores.median)}"),
    ]
    return found + _outcome_tables(report)


def _outcome_tables(report: Report) -> list[Table]:
    outcomes = report.outcomes
    return [
        Table("outcomes", "Hand-offs by outcome", ("outcome", "hand-offs"), outcomes.counts,
              note=f"{outcomes.won} won of {outcomes.decided} decided ({_share(outcomes.rate)})"),
        Table("days_to_outcome", "Days from hand-off to outcome", ("days", "hand-offs"),
              tuple(outcomes.days_to_outcome.buckets(OUTCOME_EDGES)),
              note=f"median {_number(outcomes.days_to_outcome.median)} days, 90% within "
                   f"{_number(outcomes.days_to_outcome.quantile(0.9))} days: how long sales takes to say"),
        Table("owners", "Hand-offs by owner in sales", ("owner", "hand-offs", "won", "awaiting", "won rate",
                                                        "median days to outcome"),
              tuple((o.name, o.handoffs, o.won, o.awaiting, ratio(o.won, o.decided), o.days_to_outcome.median)
                    for o in outcomes.owners),
              note="won rate: of the hand-offs with an outcome", percents=("won rate",)),
        Table("predictors", "What goes with a won deal", ("feature", "value", "hand-offs", "won", "won rate", "lift",
                                                           "sample"),
              tuple((p.feature, p.value, p.handoffs, p.won, p.rate, p.lift, "small" if p.small else "")
                    for p in outcomes.predictors),
              note=(f"among decided hand-offs; lift: its won rate over the {_share(outcomes.rate)} of all; "
                    f"'small': fewer than {SMALL_SAMPLE} hand-offs, read with care") if outcomes.decided else
              "no hand-off has an outcome yet: sales records them on the profile page or through the API",
              percents=("won rate",)),
        Table("thresholds", "Other thresholds, on the decided hand-offs",
              ("threshold", "won kept", "won missed", "others sent", "others spared", "more mqls now"),
              tuple((f"{t.threshold}{' (now)' if t.current else ''}", t.won_kept, t.won_missed, t.others_sent,
                     t.others_spared, t.more_now) for t in report.thresholds),
              note="by the score each lead had when it went to sales; a lead that asked (a form, a call back) "
                   "goes at any threshold; 'more mqls now': leads in nurture that would go to sales too"),
    ]


def shown(value: Value, percent: bool = False) -> str:
    """A value as a reader sees it: shares as percentages, nothing as a dash."""
    if value is None:
        return "-"
    if percent and isinstance(value, int | float):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _share(value: float | None) -> str:
    return shown(value, percent=True)


def _number(value: Any) -> str:
    return shown(value)


def as_json(found: Sequence[Table]) -> dict[str, Any]:
    """The tables by name, each with its title, note and rows as records."""
    return {table.name: {"title": table.title, "note": table.note, "rows": table.records()} for table in found}


def as_csv(found: Sequence[Table]) -> str:
    """One CSV: a row per line of every table, the table's name first, each table after its own header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for table in found:
        writer.writerow(["table", *table.columns])
        writer.writerows([table.name, *(_cell(value) for value in row)] for row in table.rows)
    return out.getvalue()


def _cell(value: Value) -> Value:
    """A value for a CSV cell: nothing as empty, text that a spreadsheet would take for a formula quoted."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA):
        return "'" + value
    return value
