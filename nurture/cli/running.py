"""Running nurture: everything at once, the tracking server alone, one pass of the program, the sink."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from nurture import console
from nurture.cli.base import engine_of, friendly, main, parse_time, settings_of
from nurture.engine import Engine
from nurture.inbound.receiver import receiving
from nurture.runtime import development_sink, listening_socket, open_store, run_async, smtp_mailer


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: server.host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: server.port).")
@click.pass_context
@friendly
def run(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Scheduler + tracking server (+ the development SMTP sink when configured)."""
    from nurture.scheduler import run as run_all

    settings = settings_of(ctx)
    host, port = host or settings.server.host, port or settings.server.port
    listening = listening_socket(host, port)
    with engine_of(ctx) as engine, receiving(settings, engine.store):
        console.banner(settings, host, port)
        try:
            run_async(run_all(engine, listening))
        except KeyboardInterrupt:
            pass


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: server.host).")
@click.option("--port", type=int, default=None, help="Port to listen on (default: server.port).")
@click.pass_context
@friendly
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """The tracking server alone."""
    import uvicorn

    from nurture.server import create_app

    settings = settings_of(ctx)
    listening = listening_socket(host or settings.server.host, port or settings.server.port)
    store = open_store(settings)
    engine = Engine(settings, store, smtp_mailer(settings))
    server = uvicorn.Config(create_app(engine), log_level="warning", log_config=None,
                            forwarded_allow_ips=settings.server.trusted_proxies)
    try:
        uvicorn.Server(server).run(sockets=[listening])
    except KeyboardInterrupt:  # uvicorn stopped gracefully, then passed the Ctrl-C on
        pass


@main.command("send-due")
@click.option("--at", "at", default=None, help="Run as if it were this ISO time.")
@click.option("--dry-run", is_flag=True, help="Say what is due; send nothing.")
@click.option("--no-refresh", is_flag=True, help="Do not refresh feeds first.")
@click.pass_context
@friendly
def send_due(ctx: click.Context, at: str | None, dry_run: bool, no_refresh: bool) -> None:
    """One pass of the program: send everything due now (or at --at), print what was done, exit."""
    now = parse_time(at)
    with engine_of(ctx) as engine:
        engine.store.restore_due(engine.settings.program)  # due times the settings or an upgrade left out
        if not no_refresh and not dry_run:
            console.feed_results(run_async(engine.refresh_feeds(now)), quiet=True)
        report = run_async(_send_due(engine, now, dry_run))
    console.report(report)
    if report.refused:  # nothing can go until the relay, or its settings, are fixed: a failed run
        sys.exit(1)


async def _send_due(engine: Engine, now: datetime, dry_run: bool) -> Any:
    try:
        with console.progress() as progress:
            return await engine.send_due(now, dry_run=dry_run, progress=progress)
    finally:
        await engine.mailer.close()


@main.group(invoke_without_command=True)
@click.pass_context
def sink(ctx: click.Context) -> None:
    """Mail received by the development SMTP sink (lists it without a subcommand)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(sink_list)


@sink.command("list")
@click.option("--to", "recipient", default=None, help="Only mail to this address.")
@click.pass_context
@friendly
def sink_list(ctx: click.Context, recipient: str | None = None) -> None:
    console.sink(open_store(settings_of(ctx)).sink_messages(200, recipient))


@sink.command("show")
@click.argument("message_id", type=int)
@click.pass_context
@friendly
def sink_show(ctx: click.Context, message_id: int) -> None:
    message = open_store(settings_of(ctx)).sink_message(message_id)
    if message is None:
        raise click.ClickException(f"no message {message_id}")
    console.mail(message.data)


@sink.command("serve")
@click.pass_context
@friendly
def sink_serve(ctx: click.Context) -> None:
    """Run the sink alone in the foreground."""
    import time

    settings = settings_of(ctx)
    store = open_store(settings)
    with development_sink(settings, store) as controller:
        if controller is None:
            raise click.ClickException(f"port {settings.smtp.port} is taken or smtp.sink is off")
        click.echo(f"sink listening on {settings.smtp.host}:{settings.smtp.port}; Ctrl-C stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
