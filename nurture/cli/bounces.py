"""`nurture bounces`: take the bounces and complaints that come back, and show what was made of them."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from nurture import console
from nurture.cli.base import friendly, main, settings_of
from nurture.inbound.feedback import Feedback
from nurture.inbound.mailbox import poll
from nurture.inbound.receiver import start_receiver
from nurture.runtime import open_store


@main.group()
def bounces() -> None:
    """Bounces and complaints: the receiver, what it took, and messages handed in by hand."""


@bounces.command("serve")
@click.pass_context
@friendly
def bounces_serve(ctx: click.Context) -> None:
    """Take bounces and complaints by SMTP on bounces.host:bounces.port, in the foreground."""
    settings = settings_of(ctx)
    feedback = Feedback(settings, open_store(settings))
    try:
        controller = start_receiver(feedback)
    except (OSError, RuntimeError) as error:
        raise click.ClickException(f"cannot listen on {settings.bounces.host}:{settings.bounces.port}: {error}") \
            from None
    click.echo(f"taking bounces on {settings.bounces.host}:{settings.bounces.port}; Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


@bounces.command("take")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_context
@friendly
def bounces_take(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Read bounces or complaints from FILES (or one from standard input: a mail server can pipe them
    here) and act on them."""
    settings = settings_of(ctx)
    feedback = Feedback(settings, open_store(settings))
    messages = [(str(path), path.read_bytes()) for path in files] or [("stdin", sys.stdin.buffer.read())]
    for name, data in messages:
        taken = feedback.take(data, "", [], "file", datetime.now(UTC))
        click.echo(f"{name}: {taken.outcome}")


@bounces.command("list")
@click.option("--unrecognized", is_flag=True, help="Only what could not be understood.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.pass_context
@friendly
def bounces_list(ctx: click.Context, unrecognized: bool, limit: int) -> None:
    """The latest mail that came back, and what was made of each."""
    console.inbound(open_store(settings_of(ctx)).inbound(limit, unrecognized_only=unrecognized))


@bounces.command("poll")
@click.pass_context
@friendly
def bounces_poll(ctx: click.Context) -> None:
    """Take the unseen messages of the bounce mailbox (bounces.mailbox) over IMAP, once."""
    settings = settings_of(ctx)
    for taken in poll(Feedback(settings, open_store(settings)), datetime.now(UTC)):
        click.echo(f"{taken.id}: {taken.outcome}")
