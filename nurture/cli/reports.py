"""Reports from the command line: the funnel, engagement and what wins deals, as tables, CSV or JSON."""

from __future__ import annotations

from datetime import datetime

import click

from nurture import console
from nurture.cli.base import friendly, main, parse_time, settings_of
from nurture.report import LANES, PERIODS, SEGMENTS, Window, build
from nurture.report.tables import tables
from nurture.runtime import open_store


@main.command("report")
@click.option("--since", default=None, help="From this day or moment (ISO 8601, UTC), inclusive.")
@click.option("--until", default=None, help="Up to this day or moment (ISO 8601, UTC), exclusive.")
@click.option("--segment", type=click.Choice(SEGMENTS), default=None, help="Also the funnel per segment.")
@click.option("--period", type=click.Choice(PERIODS), default="month", show_default=True,
              help="The cohorts: leads created per week or month.")
@click.option("--json", "as_json", is_flag=True, help="JSON, for tools.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one row per line of every table, its name first.")
@click.pass_context
@friendly
def report(ctx: click.Context, since: str | None, until: str | None, segment: str | None, period: str,
           as_json: bool, as_csv: bool) -> None:
    """The funnel, cohorts, days to SQL, engagement per email, links and tags, and what predicts a won
    deal, over the leads created (and mails sent) in the window. Every figure counts people, not machines."""
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    settings = settings_of(ctx)
    store = open_store(settings)
    try:
        with store.snapshot(LANES) as readers:
            built = build(readers, settings.scoring, Window(_moment(since), _moment(until)), period, segment)
    finally:
        store.close()
    found = tables(built)
    if as_json:
        console.tables_json(found)
    elif as_csv:
        console.tables_csv(found)
    else:
        console.tables_text(found)


def _moment(value: str | None) -> datetime | None:
    return parse_time(value) if value else None
