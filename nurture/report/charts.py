"""The report's figures as charts for the dashboard: server-side SVG, one function per chart, each drawn
from the report's own values (no figure computed twice) and honest about having nothing to show (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nurture.models import Outcome
from nurture.report import Report, svg
from nurture.report.engagement import Step
from nurture.report.funnel import Distribution, Stages, ratio
from nurture.report.outcomes import Outcomes
from nurture.report.svg import Bar, Frame, Row
from nurture.report.tables import DAY_EDGES, shown


@dataclass(frozen=True)
class Chart:
    name: str  # a key for the page
    title: str
    svg: str
    table: str  # the name of the table (nurture.report.tables) that holds its numbers


def charts(report: Report) -> list[Chart]:
    """Every chart of the dashboard, in the order a reader wants them."""
    per = report.period
    return [
        Chart("funnel", "Funnel", funnel(report.funnel), "funnel"),
        Chart("cohorts", f"Leads per {per} and MQL to SQL", cohorts(report.cohorts, per), "cohorts"),
        *([Chart("segments", f"MQL to SQL by {report.segment}", segments(report.segments, report.segment),
                 "segments")] if report.segment else []),
        Chart("days_to_sql", "Days from lead to SQL", days_to_sql(report.days_to_sql), "days_to_sql"),
        Chart("engagement", "Opens and clicks by people, per email", engagement(report.steps), "steps"),
        Chart("machines", "Machine share of opens and clicks", machine_share(report.steps), "steps"),
        Chart("outcomes", "Hand-offs by outcome", outcomes(report.outcomes), "outcomes"),
    ]


def percent(value: float | None) -> str:
    return shown(value, percent=True)


def _count(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def _whole_percent(value: float) -> str:
    return f"{value:.0%}"


def funnel(stages: Stages) -> str:
    """People at each stage, each bar with its share of the stage it is measured against: the one before,
    but for SQL, measured against MQL (a lead may go to sales without engaging with a mail)."""
    label = "Funnel: people at each stage"
    if not stages.leads:
        return svg.empty(label, "No leads in this window yet")
    steps = [("leads", stages.leads, "", 0), ("confirmed", stages.confirmed, "leads", stages.leads),
             ("mql", stages.mql, "confirmed", stages.confirmed), ("engaged", stages.engaged, "mql", stages.mql),
             ("sql", stages.sql, "mql", stages.mql), ("won", stages.won, "sql", stages.sql)]
    return svg.rows_across(label, [_stage_row(*step) for step in steps], stages.leads)


def _stage_row(name: str, count: int, base: str, whole: int) -> Row:
    share = f"{percent(ratio(count, whole))} of {base}" if base else ""
    note, tooltip = (f"{count} \u00b7 {share}", f"{name}: {count} people, {share}") if base else (
        str(count), f"{name}: {count} people")
    return Row(name, (Bar(count, svg.TEAL, tooltip, note),))


def cohorts(rows: Sequence[Stages], period: str) -> str:
    """Leads created per period (bars, SQL among them darker) and their MQL to SQL rate (dots, right scale)."""
    label = f"Leads per {period} and their MQL to SQL rate"
    if not rows:
        return svg.empty(label, "No leads in this window yet")
    frame = Frame(48, svg.LINE + 12, svg.WIDTH - 52, 200, svg.count_top(max(row.leads for row in rows)))
    parts = svg.legend(48, svg.LINE - 2, [("leads", svg.PALE), ("sql", svg.TEAL), ("mql to sql", svg.AMBER)])
    parts += svg.grid_up(frame, _count) + svg.grid_up(frame, _whole_percent, top=1.0, right=True)
    every = math.ceil(len(rows) / max(1, int(frame.width // 72)))  # as many names as fit side by side
    points, dots = [], []
    for index, row in enumerate(rows):
        name = row.label[:7] if period == "month" else row.label
        parts.append(svg.column(frame, index, len(rows), row.leads, svg.PALE, f"{name}: {row.leads} leads"))
        middle = svg.column_middle(frame, index, len(rows))
        parts.append(svg.column(frame, index, len(rows), row.sql, svg.TEAL, f"{name}: {row.sql} went to sales"))
        if index % every == 0:
            parts.append(svg.text(middle, frame.bottom + svg.LINE, name, anchor="middle", fill=svg.MUTED))
        if row.mql_to_sql is not None:
            points.append((middle, frame.up(row.mql_to_sql, 1.0)))
            dots.append(svg.dot(*points[-1], svg.AMBER,
                                f"{name}: MQL to SQL {percent(row.mql_to_sql)} ({row.sql_of_mql} of {row.mql})"))
    line = [svg.path(points, svg.AMBER)] if len(points) > 1 else []
    return svg.image(label, frame.bottom + svg.LINE + 8, parts + line + dots)


def segments(rows: Sequence[Stages], segment: str) -> str:
    """Per value of a segment: the share of its MQLs that went to sales."""
    label = f"MQL to SQL by {segment}"
    if not rows:
        return svg.empty(label, "No leads in this window yet")
    return svg.rows_across(label, [Row(row.label, (Bar(
        row.mql_to_sql or 0, svg.TEAL, f"{row.label}: {row.sql_of_mql} of {row.mql} MQLs went to sales",
        f"{percent(row.mql_to_sql)} \u00b7 {row.sql_of_mql} of {row.mql}"),)) for row in rows], 1.0,
        scale=_whole_percent)


def days_to_sql(distribution: Distribution, edges: Sequence[int] = DAY_EDGES) -> str:
    """How many people reached sales within each span of days from their creation; the median marked."""
    label = "Days from lead to SQL"
    median = distribution.median
    if median is None:
        return svg.empty(label, "No lead has gone to sales in this window yet")
    buckets = distribution.buckets(edges)
    frame = Frame(48, svg.LINE + 12, svg.WIDTH - 16, 200, svg.count_top(max(count for _, count in buckets)))
    parts = svg.grid_up(frame, _count)
    for index, (span, count) in enumerate(buckets):
        parts += [svg.column(frame, index, len(buckets), count, svg.TEAL, f"{span} days: {count} people"),
                  svg.text(svg.column_middle(frame, index, len(buckets)), frame.bottom + svg.LINE, f"{span} d",
                           anchor="middle", fill=svg.MUTED)]
    x = _median_x(frame, edges, median)
    said = f"median {median} days, {distribution.total} people"
    parts += [svg.line(x, frame.top_y - 4, x, frame.bottom, svg.AMBER, dashed=True),
              svg.text(min(x + 6, svg.WIDTH - 8), svg.LINE - 2, said, fill=svg.AMBER,
                       anchor="start" if x + 6 < svg.WIDTH - 230 else "end")]
    return svg.image(label, frame.bottom + svg.LINE + 8, parts)


def _median_x(frame: Frame, edges: Sequence[int], median: int) -> float:
    """Where the median falls, within its span of days (the last, open span: its middle)."""
    index = max(i for i, low in enumerate(edges) if median >= low)
    x, width = frame.slot(index, len(edges))
    if index == len(edges) - 1:
        return x + width / 2
    low, high = edges[index], edges[index + 1]
    return x + width * (median - low + 0.5) / (high - low)


def _step_name(step: Step) -> str:
    return f"step {step.step} \u00b7 {step.template}"


def engagement(steps: Sequence[Step]) -> str:
    """Per email (step and template): the share of delivered mails a person opened, and clicked."""
    label = "Open and click rates by people, per email"
    if not steps:
        return svg.empty(label, "No mail sent in this window yet")
    rows = [Row(_step_name(step), (_rate(step, "opened", step.opened, step.open_rate, svg.TEAL),
                                   _rate(step, "clicked", step.clicked, step.click_rate, svg.AMBER)))
            for step in steps]
    return svg.rows_across(label, rows, 1.0, scale=_whole_percent,
                           key=[("open rate", svg.TEAL), ("click rate", svg.AMBER)])


def _rate(step: Step, did: str, count: int, rate: float | None, fill: str) -> Bar:
    tooltip = f"{_step_name(step)}: {count} of {step.delivered} delivered {did} by a person ({percent(rate)})"
    return Bar(rate or 0, fill, tooltip, f"{did} {percent(rate)}")


def machine_share(steps: Sequence[Step]) -> str:
    """Per email and over all of them: the share of opens and clicks the judge found a machine's."""
    label = "Machine share of opens and clicks"
    if not steps:
        return svg.empty(label, "No mail sent in this window yet")
    machines, hits = sum(step.machine_hits for step in steps), sum(step.hits for step in steps)
    rows = [_share(_step_name(step), step.machine_hits, step.hits, svg.SLATE) for step in steps]
    return svg.rows_across(label, [*rows, _share("all mails", machines, hits, svg.INK)], 1.0, scale=_whole_percent)


def _share(name: str, machines: int, hits: int, fill: str) -> Row:
    share = ratio(machines, hits)
    note = f"{percent(share)} of {hits}" if hits else "no opens or clicks"
    return Row(name, (Bar(share or 0, fill, f"{name}: {machines} of {hits} opens and clicks by machines", note),))


OUTCOME_COLORS = {Outcome.WON.value: svg.GREEN, Outcome.LOST.value: svg.RED, Outcome.NO_RESULT.value: svg.SLATE,
                  Outcome.NOT_A_FIT.value: svg.AMBER}


def outcomes(found: Outcomes) -> str:
    """Hand-offs by what sales made of them: every outcome (none of one is a zero), and those awaiting one."""
    label = "Hand-offs by outcome"
    counts = dict(found.counts)
    if not sum(counts.values()):
        return svg.empty(label, "No hand-off in this window yet")
    names = [*OUTCOME_COLORS, *(name for name in counts if name not in OUTCOME_COLORS)]
    return svg.rows_across(label, [_outcome(name, counts.get(name, 0)) for name in names], max(counts.values()))


def _outcome(name: str, count: int) -> Row:
    said = name.replace("_", " ")
    return Row(said, (Bar(count, OUTCOME_COLORS.get(name, svg.BLUE), f"{said}: {count} hand-offs", str(count)),))
