"""The outbox from the command line: sends by state, failed sends queued again."""

from __future__ import annotations

import click

from nurture import console
from nurture.cli.base import engine_of, friendly, main, settings_of
from nurture.errors import InputError
from nurture.models import SendState
from nurture.runtime import open_store


@main.group()
def sends() -> None:
    """The outbox: sends by state, and failed sends queued again."""


@sends.command("list")
@click.option("--state", type=click.Choice([state.value for state in SendState]), default="failed", show_default=True)
@click.option("--template", default=None, help="Only sends of this template.")
@click.pass_context
@friendly
def sends_list(ctx: click.Context, state: str, template: str | None) -> None:
    """Sends in one state, oldest first, with the lead and the reason of a failure."""
    console.sends(open_store(settings_of(ctx)).sends_in(SendState(state), template))


@sends.command("retry")
@click.option("--id", "ids", type=int, multiple=True, help="A failed send's id; repeat for several.")
@click.option("--template", default=None, help="Every failed send of this template.")
@click.option("--all", "every", is_flag=True, help="Every failed send.")
@click.pass_context
@friendly
def sends_retry(ctx: click.Context, ids: tuple[int, ...], template: str | None, every: bool) -> None:
    """Queue failed sends again (after fixing what failed them); the next run delivers them."""
    if not (ids or template or every):
        raise InputError("say which failed sends to retry: --id N, --template NAME or --all")
    with engine_of(ctx) as engine:
        failed = [send for send, _ in engine.store.sends_in(SendState.FAILED, template, ids)]
        queued, refused = engine.retry(failed)
    for line in refused:
        click.echo(line)
    click.echo(f"{len(queued)} failed send{'s' if len(queued) != 1 else ''} queued again; the next run delivers them")
