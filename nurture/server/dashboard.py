"""The dashboard of the admin: the report's figures as charts, each with the table of its numbers one click
away, and the same tables as CSV and JSON. What it covers is in the URL (since, until, period, segment),
so a view is a link a marketer can share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nurture.engine import Engine
from nurture.errors import InputError
from nurture.report import PERIODS, SEGMENTS, Report, Window, build
from nurture.report.charts import charts
from nurture.report.tables import Table, as_csv, as_json, shown, tables
from nurture.server.admin_leads import choice
from nurture.server.http import check_admin
from nurture.server.pages import page

FILTERS = ("since", "until", "period", "segment")
ANALYSIS = ("predictors", "thresholds")  # what goes with a won deal: shown in full, under the charts


def routes() -> list[Route]:
    return [
        Route("/admin/dashboard", dashboard, methods=["GET"]),
        Route("/admin/report.csv", report_csv, methods=["GET"]),
        Route("/admin/report.json", report_json, methods=["GET"]),
    ]


@dataclass(frozen=True)
class Filters:
    """What the report covers, as the URL asked for it."""

    window: Window
    period: str
    segment: str | None
    asked: Mapping[str, str]  # the filters given, as given: the links of the page keep them

    @property
    def query(self) -> str:
        return urlencode(self.asked)


def filters_of(params: Mapping[str, str]) -> Filters:
    """The filters the URL asks for; InputError naming the first parameter that is wrong."""
    since, until = moment(params, "since"), moment(params, "until")
    if since and until and until <= since:
        raise InputError(f"until: {params['until']!r} is not after since {params['since']!r}")
    period = choice(params, "period", list(PERIODS)) or "month"
    segment = choice(params, "segment", list(SEGMENTS))
    asked = {name: params[name].strip() for name in FILTERS if params.get(name, "").strip()}
    return Filters(Window(since, until), period, segment, asked)


def moment(params: Mapping[str, str], name: str) -> datetime | None:
    """The parameter `name` as a day or a moment (ISO 8601, UTC unless it says otherwise), or None."""
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        found = datetime.fromisoformat(raw)
    except ValueError:
        raise InputError(f"{name}: {raw!r} is not an ISO date such as 2026-01-31") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


async def dashboard(request: Request) -> Response:
    check_admin(request)
    filters = filters_of(request.query_params)
    report = await run_in_threadpool(built, request.app.state.engine, filters)
    found = {table.name: table for table in tables(report)}
    drawn = charts(report)
    panels = [(chart, Markup(chart.svg), found[chart.table]) for chart in drawn]  # every label in it escaped
    charted = {chart.table for chart in drawn}
    return page(request, "dashboard.html", filters=filters, panels=panels, shown=shown, periods=PERIODS,
                segments=SEGMENTS, analysis=[found[name] for name in ANALYSIS],
                others=[table for name, table in found.items() if name not in charted and name not in ANALYSIS])


async def report_csv(request: Request) -> Response:
    found = await _tables(request)
    return Response(as_csv(found), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="nurture-report.csv"'})


async def report_json(request: Request) -> Response:
    return JSONResponse(as_json(await _tables(request)))


async def _tables(request: Request) -> list[Table]:
    check_admin(request)
    filters = filters_of(request.query_params)
    return tables(await run_in_threadpool(built, request.app.state.engine, filters))


def built(engine: Engine, filters: Filters) -> Report:
    """The report over what the database holds, read through the store's read-only connection."""
    # one connection: several would take the write lock to begin (SQLite) and more of a shared pool at once
    with engine.store.reader.connect() as connection:
        return build(connection, engine.settings.scoring, filters.window, filters.period, filters.segment)
