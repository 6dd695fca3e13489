"""The dashboard's charts: well-formed SVG, a bar per figure in proportion, every label escaped, and an
honest picture of nothing when there is nothing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from nurture.report import Report
from nurture.report.charts import (
    charts,
    cohorts,
    days_to_sql,
    engagement,
    funnel,
    machine_share,
    outcomes,
    segments,
)
from nurture.report.engagement import Step
from nurture.report.funnel import Distribution, Stages
from nurture.report.outcomes import Outcomes
from nurture.report.sql import ALL_TIME
from nurture.report.svg import count_top
from nurture.report.tables import tables

NS = "{http://www.w3.org/2000/svg}"
FUNNEL = Stages("all leads", leads=600, confirmed=520, mql=480, engaged=210, sql=90, sql_within=80, won=30,
                no_deal=20, not_a_fit=9, sql_of_mql=90)
NOTHING = Stages("all leads", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
COHORTS = [Stages("2026-01-01", 40, 30, 28, 10, 7, 7, 2, 1, 0, 7), Stages("2026-02-01", 50, 45, 0, 0, 0, 0, 0, 0, 0, 0),
           Stages("2026-03-01", 60, 50, 40, 12, 10, 9, 3, 1, 0, 10)]
DAYS = Distribution(((2, 5), (10, 20), (20, 12), (130, 3)))
STEPS = [Step("welcome", 0, sent=500, bounced=10, opened=300, clicked=60, clicks=80, unsubscribed=4, machine_hits=120,
              hits=600),
         Step("digest", 1, sent=480, bounced=5, opened=200, clicked=40, clicks=55, unsubscribed=8, machine_hits=90,
              hits=400)]
OUTCOMES = Outcomes(decided=53, won=31, counts=(("won", 31), ("lost", 10), ("no_result", 12), ("awaiting", 9)),
                    predictors=())
HOSTILE = '<script>alert("x")</script> & <b>co'


def parsed(drawn: str) -> ET.Element:
    root = ET.fromstring(drawn)
    assert root.tag == f"{NS}svg" and root.get("role") == "img" and root.get("aria-label")
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    """The rectangles that stand for a figure: each says what it counts in a tooltip."""
    return [rect for rect in root.iter(f"{NS}rect") if rect.find(f"{NS}title") is not None]


def texts(root: ET.Element) -> str:
    return " ".join("".join(element.itertext()) for element in root.iter(f"{NS}text"))


EVERY_CHART = {
    "funnel": lambda: funnel(FUNNEL),
    "cohorts": lambda: cohorts(COHORTS, "month"),
    "segments": lambda: segments(COHORTS, "industry"),
    "days": lambda: days_to_sql(DAYS),
    "engagement": lambda: engagement(STEPS),
    "machines": lambda: machine_share(STEPS),
    "outcomes": lambda: outcomes(OUTCOMES),
}


@pytest.mark.parametrize("name", EVERY_CHART)
def test_every_chart_is_an_accessible_svg_with_readable_labels(name: str) -> None:
    root = parsed(EVERY_CHART[name]())
    sizes = [float(text.get("font-size", "0")) for text in root.iter(f"{NS}text")]
    assert sizes and min(sizes) >= 12
    assert bars(root)
    assert all(float(rect.get("width", "0")) >= 0 and float(rect.get("height", "0")) >= 0
               for rect in root.iter(f"{NS}rect"))


def test_the_funnel_draws_a_bar_per_stage_in_proportion_with_the_conversion_from_the_one_before() -> None:
    root = parsed(funnel(FUNNEL))
    drawn = bars(root)
    assert len(drawn) == 6
    widths = [float(rect.get("width", "0")) for rect in drawn]
    assert widths[1] / widths[0] == pytest.approx(520 / 600, abs=0.01)
    assert widths[5] / widths[0] == pytest.approx(30 / 600, abs=0.01)
    said = texts(root)
    assert "520 \u00b7 86.7% of leads" in said and "90 \u00b7 18.8% of mql" in said and "30 \u00b7 33.3% of sql" in said
    assert drawn[4].findtext(f"{NS}title") == "sql: 90 people, 18.8% of mql"


def test_cohorts_draw_leads_and_sql_per_cohort_and_a_rate_only_where_there_were_mqls() -> None:
    root = parsed(cohorts(COHORTS, "month"))
    assert len(bars(root)) == 2 * len(COHORTS)
    rates = [dot.findtext(f"{NS}title") for dot in root.iter(f"{NS}circle")]
    assert rates == ["2026-01: MQL to SQL 25.0% (7 of 28)", "2026-03: MQL to SQL 25.0% (10 of 40)"]
    assert "2026-02" in texts(root)


def test_days_to_sql_is_a_histogram_of_the_reports_buckets_with_the_median_marked() -> None:
    root = parsed(days_to_sql(DAYS))
    counts = [rect.findtext(f"{NS}title") for rect in bars(root)]
    assert counts == ["0-6 days: 5 people", "7-13 days: 20 people", "14-29 days: 12 people", "30-59 days: 0 people",
                      "60-119 days: 0 people", "120+ days: 3 people"]
    assert "median 10 days, 40 people" in texts(root)
    assert any(line.get("stroke-dasharray") for line in root.iter(f"{NS}line"))


def test_engagement_and_machine_share_draw_rates_per_step_and_overall() -> None:
    root = parsed(engagement(STEPS))
    assert len(bars(root)) == 2 * len(STEPS)
    assert "opened 61.2%" in texts(root)  # 300 of 490 delivered
    root = parsed(machine_share(STEPS))
    assert [rect.findtext(f"{NS}title") for rect in bars(root)][-1] == (
        "all mails: 210 of 1000 opens and clicks by machines")
    assert "21.0% of 1000" in texts(root)


def test_outcomes_show_every_outcome_even_a_zero_and_those_awaiting_one() -> None:
    root = parsed(outcomes(OUTCOMES))
    assert [rect.findtext(f"{NS}title") for rect in bars(root)] == [
        "won: 31 hand-offs", "lost: 10 hand-offs", "no result: 12 hand-offs", "not a fit: 0 hand-offs",
        "awaiting: 9 hand-offs"]


def test_a_hostile_template_name_is_escaped_and_read_back_as_text() -> None:
    hostile = [Step(HOSTILE, 1, 10, 0, 5, 1, 1, 0, 1, 6)]
    for drawn in (engagement(hostile), machine_share(hostile)):
        assert "<script" not in drawn and "<b>" not in drawn
        root = parsed(drawn)
        assert any(HOSTILE in (rect.findtext(f"{NS}title") or "") for rect in bars(root))


@pytest.mark.parametrize("drawn", [funnel(NOTHING), cohorts([], "week"), segments([], "locale"),
                                   days_to_sql(Distribution(())),
                                   engagement([]), machine_share([]), outcomes(Outcomes(0, 0, (), ()))])
def test_no_data_draws_an_honest_empty_chart(drawn: str) -> None:
    root = parsed(drawn)
    assert bars(root) == [] and "yet" in texts(root)


def test_mails_without_a_delivery_or_a_hit_divide_by_nothing() -> None:
    bounced = [Step("digest", 1, sent=3, bounced=3, opened=0, clicked=0, clicks=0, unsubscribed=0, machine_hits=0,
                    hits=0)]
    assert "opened -" in texts(parsed(engagement(bounced)))
    assert "no opens or clicks" in texts(parsed(machine_share(bounced)))


def test_each_chart_names_a_table_of_the_report_that_holds_its_numbers() -> None:
    report = Report(window=ALL_TIME, period="week", segment=None, funnel=FUNNEL, cohorts=COHORTS, segments=[],
                    days_to_sql=DAYS, steps=STEPS, links=[], tags=[], mql_scores=Distribution(()), outcomes=OUTCOMES,
                    thresholds=[])
    names = {table.name for table in tables(report)}
    drawn = charts(report)
    assert [chart.name for chart in drawn] == ["funnel", "cohorts", "days_to_sql", "engagement", "machines",
                                               "outcomes"]
    assert all(chart.table in names for chart in drawn)
    assert "per week" in drawn[1].title
    with_segment = charts(Report(**{**vars(report), "segment": "industry", "segments": COHORTS}))
    assert [chart.name for chart in with_segment][2] == "segments"
    assert all(chart.table in {table.name for table in tables(Report(**{**vars(report), "segment": "industry"}))}
               for chart in with_segment)


def test_a_segment_without_mqls_shows_a_dash_not_a_division() -> None:
    root = parsed(segments(COHORTS, "industry"))
    assert [rect.findtext(f"{NS}title") for rect in bars(root)][1] == "2026-02-01: 0 of 0 MQLs went to sales"
    assert "- \u00b7 0 of 0" in texts(root)


def test_an_axis_of_counts_steps_in_whole_round_numbers() -> None:
    assert [count_top(n) for n in (0, 3, 9, 40, 47, 600, 1234)] == [4, 4, 12, 40, 60, 600, 1600]
