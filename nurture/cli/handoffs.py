"""`nurture handoffs`: what went to sales beyond the mail: the webhook deliveries and their tries."""

from __future__ import annotations

import click

from nurture import console
from nurture.cli.base import friendly, main, settings_of
from nurture.runtime import open_store


@main.group()
def handoffs() -> None:
    """Hand-offs: their webhook deliveries."""


@handoffs.command("webhooks")
@click.option("--failed", is_flag=True, help="Only those whose tries are used up.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.pass_context
@friendly
def handoffs_webhooks(ctx: click.Context, failed: bool, limit: int) -> None:
    """Each hand-off posted to a webhook: its state, tries, last error and URL."""
    console.webhooks(open_store(settings_of(ctx)).webhooks("failed" if failed else None, limit))
