"""`nurture suppress`: who is never mailed, why and since when; a suppression added or lifted by hand."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click

from nurture import console
from nurture.cli.base import friendly, main, settings_of
from nurture.models import Suppression
from nurture.runtime import open_store


@main.group()
def suppress() -> None:
    """Suppressed leads: list them, add one, lift one."""


@suppress.command("list")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@click.pass_context
@friendly
def suppress_list(ctx: click.Context, limit: int) -> None:
    """Every suppressed lead with the reason, the date and what was said (the server's words, or a note)."""
    console.suppressions(open_store(settings_of(ctx)).suppressions(limit))


@suppress.command("add")
@click.argument("email")
@click.option("--reason", type=click.Choice([reason.value for reason in Suppression]), default="unsubscribed",
              show_default=True, help="What it counts as (its rule scores it).")
@click.option("--note", default="", help="Why, for whoever reads the lead's history.")
@click.pass_context
@friendly
def suppress_add(ctx: click.Context, email: str, reason: str, note: str) -> None:
    """Never mail EMAIL again (a person asked, say, by phone)."""
    settings = settings_of(ctx)
    store = open_store(settings)
    lead = store.lead_by_email(email)
    assert lead.id is not None
    detail = f"added by {getpass.getuser()}" + (f": {note}" if note else "")
    if store.suppress(lead.id, Suppression(reason), datetime.now(UTC), settings.scoring, detail[:300],
                      action="by hand"):
        click.echo(f"{lead.email} is suppressed ({reason})")
    else:
        click.echo(f"{lead.email} was suppressed already ({lead.suppressed.value if lead.suppressed else ''})")


@suppress.command("remove")
@click.argument("email")
@click.pass_context
@friendly
def suppress_remove(ctx: click.Context, email: str) -> None:
    """Mail EMAIL again: the suppression is lifted and its points no longer count (a bounce that was the
    relay's fault, an unsubscribe the person took back)."""
    settings = settings_of(ctx)
    store = open_store(settings)
    lead = store.lead_by_email(email)
    assert lead.id is not None
    lifted = store.lift_suppression(lead.id, getpass.getuser(), settings.scoring, datetime.now(UTC), settings.program)
    if lifted is None:
        click.echo(f"{lead.email} is not suppressed")
        return
    click.echo(f"{lead.email} is mailed again (was {lifted.value}); score {store.lead(lead.id).score}")
