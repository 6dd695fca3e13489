"""Leads from the command line: add, import, list, show; export, erase, tracking."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from nurture import console
from nurture.cli.base import friendly, main, settings_of
from nurture.content.catalog import load_catalog
from nurture.errors import InputError, UnknownLead
from nurture.intake import import_csv, new_lead
from nurture.models import Lead
from nurture.runtime import open_store
from nurture.score import rules as scoring
from nurture.score.history import history, why
from nurture.store import Store


@main.group()
def leads() -> None:
    """Add, import, list and show leads."""


@leads.command("add")
@click.argument("email")
@click.option("--first-name", default="")
@click.option("--last-name", default="")
@click.option("--company", default="")
@click.option("--industry", default="")
@click.option("--interest", "interests", multiple=True, help="Repeat for several interests.")
@click.option("--locale", default="en")
@click.option("--country", default="", help="ISO 3166 code (NL, DE, ...): sales.routes may route by it.")
@click.option("--customer", is_flag=True, help="An existing customer (qualifies at a lower threshold).")
@click.option("--exist-ok", is_flag=True, help="A lead with this address already: say so and change nothing.")
@click.pass_context
@friendly
def leads_add(ctx: click.Context, email: str, exist_ok: bool, **fields: Any) -> None:
    """Add one lead; it gets the confirmation mail at the next send."""
    settings = settings_of(ctx)
    lead = new_lead(load_catalog(settings.feeds_file), datetime.now(UTC), email=email, **fields)
    lead.confirmed_at = lead.created_at  # whoever adds a lead by hand vouches for its consent
    store = open_store(settings)
    try:
        store.add_lead(lead, f"cli ({getpass.getuser()})")
    except InputError:
        if not exist_ok or (known := _lead_or_none(store, lead.email)) is None:
            raise
        click.echo(f"{known.email} is lead {known.id} already; nothing changed")
        return
    click.echo(f"added {lead.email} (lead {lead.id})")


def _lead_or_none(store: Store, email: str) -> Lead | None:
    try:
        return store.lead_by_email(email)
    except UnknownLead:
        return None


@leads.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_context
@friendly
def leads_import(ctx: click.Context, path: Path) -> None:
    """Import leads from a CSV file: all rows or none."""
    settings = settings_of(ctx)
    store = open_store(settings)
    with console.counting(f"importing {path.name}") as done:
        count = import_csv(store, path, load_catalog(settings.feeds_file), datetime.now(UTC), done)
    click.echo(f"imported {count} leads from {path}")


@leads.command("list")
@click.pass_context
@friendly
def leads_list(ctx: click.Context) -> None:
    """Every lead with stage and score."""
    console.leads(open_store(settings_of(ctx)).leads(limit=100_000))


@leads.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@friendly
def leads_show(ctx: click.Context, email: str, as_json: bool) -> None:
    """A lead's stage, score and score history, event by event."""
    settings = settings_of(ctx)
    store = open_store(settings)
    lead = store.lead_by_email(email)
    assert lead.id is not None
    sends = store.sends_of(lead.id)
    lines = history(store.events_of(lead.id), lead.cycle, settings.scoring, store.clock())
    handoffs = store.handoffs_of(lead.id)
    threshold = scoring.threshold(settings.scoring, lead.customer, lead.industry)
    console.lead(lead, lines, sends, handoffs, store.consents_of(lead.id),
                 why(lines, lead.cycle, threshold, settings.scoring, handoffs), as_json)
    waiting = store.pending_hits()
    if waiting and not as_json:
        click.echo(f"{waiting} opens and clicks (of all leads) are stored and not yet judged")


@leads.command("export")
@click.argument("email")
@click.pass_context
@friendly
def leads_export(ctx: click.Context, email: str) -> None:
    """Everything stored about a lead, as JSON: its record, consents, mails, events (with the user agent
    and address of every open and click), hand-offs and the mail that came back about it."""
    store = open_store(settings_of(ctx))
    lead = store.lead_by_email(email)
    assert lead.id is not None
    click.echo(json.dumps(store.everything_about(lead.id), indent=2))


@leads.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
@friendly
def leads_erase(ctx: click.Context, email: str, yes: bool) -> None:
    """Remove a lead's personal data for good; anonymous counts stay for the reports, and no link ever
    sent to it works any more."""
    store = open_store(settings_of(ctx))
    lead = store.lead_by_email(email)
    assert lead.id is not None
    if not yes:
        click.confirm(f"Erase {lead.email} (lead {lead.id}) for good?", abort=True)
    store.erase(lead.id, datetime.now(UTC))
    click.echo(f"erased lead {lead.id}: its personal data is gone")


@leads.command("tracking")
@click.argument("email")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.pass_context
@friendly
def leads_tracking(ctx: click.Context, email: str, state: str) -> None:
    """Track a lead's opens and clicks, or not (its mails then carry no pixel and plain links)."""
    store = open_store(settings_of(ctx))
    lead = store.lead_by_email(email)
    assert lead.id is not None
    store.set_preferences(lead.id, lead.interests, lead.industry, tracking=state == "on")
    click.echo(f"{lead.email}: tracking {state}")
