"""The command line. Commands call the core; formatting lives in nurture.console."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click

from nurture import console
from nurture.content.catalog import load_catalog
from nurture.content.refresh import refresh
from nurture.engine import Engine
from nurture.errors import InputError, NurtureError, UnknownLead
from nurture.intake import new_lead, read_csv
from nurture.models import Lead, SendState
from nurture.runtime import development_sink, listening_socket, open_store, run_async, smtp_mailer
from nurture.score.history import history
from nurture.send.mailer import Mailer
from nurture.settings import (
    Settings,
    config_path,
    development_key_file,
    load_settings,
    new_secret_key,
    write_development_keys,
)
from nurture.store import Store, schema

log = logging.getLogger("nurture")


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn nurture's own errors into a message and exit code 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NurtureError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)

    return wrapper


def settings_of(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    if "settings" not in obj:
        try:
            obj["settings"] = load_settings(_environ(), obj["config"])
        except NurtureError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
    return obj["settings"]


def _environ() -> dict[str, str]:
    return dict(os.environ)


@contextmanager
def engine_of(ctx: click.Context, mailer: Mailer | None = None) -> Iterator[Engine]:
    settings = settings_of(ctx)
    store = open_store(settings)
    try:
        with development_sink(settings, store):
            yield Engine(settings, store, mailer or smtp_mailer(settings))
    finally:
        store.close()


def parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"not an ISO time: {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group()
@click.option("--config", "config", type=click.Path(path_type=Path), default=None,
              help="nurture.yaml to read (default: ./nurture.yaml or $NURTURE_CONFIG).")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """nurture: email lead nurturing with RSS digests, tracked links and a sales hand-off."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("apscheduler", "mail.log", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    ctx.obj = {"config": config}


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
    with engine_of(ctx) as engine:
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
    server = uvicorn.Config(create_app(engine), log_level="warning",
                            forwarded_allow_ips=settings.server.trusted_proxies)
    uvicorn.Server(server).run(sockets=[listening])


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
        if not no_refresh and not dry_run:
            console.feed_results(run_async(engine.refresh_feeds(now)), quiet=True)
        report = run_async(_send_due(engine, now, dry_run))
    console.report(report)


async def _send_due(engine: Engine, now: datetime, dry_run: bool) -> Any:
    try:
        with console.progress() as progress:
            return await engine.send_due(now, dry_run=dry_run, progress=progress)
    finally:
        await engine.mailer.close()


@main.command()
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@click.pass_context
@friendly
def rescore(ctx: click.Context, dry_run: bool) -> None:
    """Recompute every score from the event log under the rules of --config; report stage changes."""
    from nurture.score.rescore import rescore as replay

    settings = settings_of(ctx)
    changes = replay(open_store(settings), settings.scoring, datetime.now(UTC), dry_run)
    console.rescored(changes, dry_run)


@main.command("admin-key")
@click.pass_context
@friendly
def admin_key(ctx: click.Context) -> None:
    """Print the password of the admin pages (NURTURE_ADMIN_KEY, or one derived from the secret key)."""
    click.echo(settings_of(ctx).admin_key)


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


@main.group()
def keys() -> None:
    """The keys that sign every tracking link."""


@keys.command("rotate")
@click.pass_context
@friendly
def keys_rotate(ctx: click.Context) -> None:
    """A new signing key; the current one goes on verifying the links already mailed."""
    settings = settings_of(ctx)
    fresh = new_secret_key()
    kept = [settings.secret_key, *settings.old_secret_keys]
    if os.environ.get("NURTURE_SECRET_KEY"):
        console.rotate_in_environment(fresh, kept)
        return
    key_file = development_key_file(config_path(_environ(), ctx.find_root().obj["config"]).resolve().parent)
    write_development_keys(key_file, [fresh, *kept])
    click.echo(f"{key_file}: a new key signs from now on; the {len(kept)} before it still verify")


@main.group()
def db() -> None:
    """The database's schema: upgrade it to this release, show where it stands."""


@db.command("upgrade")
@click.pass_context
@friendly
def db_upgrade(ctx: click.Context) -> None:
    """Bring the database to this release's schema, keeping its data (a new database is created)."""
    store = Store(settings_of(ctx).database_url)
    try:
        done = store.upgrade()
    finally:
        store.close()
    console.upgraded(done)


@db.command("current")
@click.pass_context
@friendly
def db_current(ctx: click.Context) -> None:
    """The revision the database is at, and this release's newest."""
    store = Store(settings_of(ctx).database_url)
    try:
        revision, state = schema.status(store.engine)
    finally:
        store.close()
    click.echo(f"database revision {revision or 'none'}, this release's newest {schema.head()}: {state}")


@db.command("history")
def db_history() -> None:
    """The revisions of the schema, oldest first."""
    for revision, doc in schema.history():
        click.echo(f"{revision}  {doc.splitlines()[0] if doc else ''}")


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
@click.option("--customer", is_flag=True, help="An existing customer (qualifies at a lower threshold).")
@click.option("--exist-ok", is_flag=True, help="A lead with this address already: say so and change nothing.")
@click.pass_context
@friendly
def leads_add(ctx: click.Context, email: str, exist_ok: bool, **fields: Any) -> None:
    """Add one lead; it gets the confirmation mail at the next send."""
    settings = settings_of(ctx)
    lead = new_lead(load_catalog(settings.feeds_file), datetime.now(UTC), email=email, **fields)
    store = open_store(settings)
    try:
        store.add_lead(lead)
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
    rows = read_csv(path, load_catalog(settings.feeds_file), datetime.now(UTC))
    open_store(settings).add_leads(rows)
    click.echo(f"imported {len(rows)} leads from {path}")


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
    lines = history(store.events_of(lead.id), sends, lead.cycle, settings.scoring, store.clock())
    console.lead(lead, lines, sends, store.handoffs_of(lead.id), as_json)
    waiting = store.pending_hits()
    if waiting and not as_json:
        click.echo(f"{waiting} opens and clicks (of all leads) are stored and not yet judged")


@main.group()
def feeds() -> None:
    """Feeds from feeds.yaml."""


@feeds.command("refresh")
@click.pass_context
@friendly
def feeds_refresh(ctx: click.Context) -> None:
    """Fetch every feed (conditional GET) and keep new items; one line per feed."""
    settings = settings_of(ctx)
    results = run_async(refresh(open_store(settings), load_catalog(settings.feeds_file), datetime.now(UTC)))
    console.feed_results(results)
    if any(status == "failed" for _, status, _ in results):
        sys.exit(1)


@main.command()
@click.argument("template")
@click.option("--lead", "email", required=True, help="The lead to render for.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="Write here.")
@click.option("--text", is_flag=True, help="The text part instead of the HTML.")
@click.pass_context
@friendly
def preview(ctx: click.Context, template: str, email: str, output: Path | None, text: bool) -> None:
    """Render TEMPLATE for a lead, as it would be sent next, without sending or storing anything."""
    from nurture.preview import preview as render_preview

    settings = settings_of(ctx)
    shown = render_preview(settings, open_store(settings), template, email)
    if shown.note:
        click.echo(f"note: {shown.note}", err=True)
    body = shown.rendered.text if text else shown.rendered.html
    if output:
        output.write_text(body, encoding="utf-8")
        click.echo(f"{shown.rendered.subject}\nwrote {output}")
    else:
        click.echo(body)


@main.command()
@click.pass_context
@friendly
def lint(ctx: click.Context) -> None:
    """Check feeds.yaml and the templates; print each problem as file:line and exit 1 if there is any."""
    from nurture.lint import lint as find

    findings = find(settings_of(ctx))
    for finding in findings:
        click.echo(finding.show(Path.cwd().resolve()))
    if findings:
        click.echo(f"{len(findings)} problem{'s' if len(findings) != 1 else ''} found", err=True)
        sys.exit(1)
    click.echo("no problems found")


@main.command("send-test")
@click.argument("template")
@click.option("--to", "to", required=True, help="Where the test goes (your own address).")
@click.option("--lead", "email", required=True, help="The lead to render for.")
@click.pass_context
@friendly
def send_test(ctx: click.Context, template: str, to: str, email: str) -> None:
    """Mail TEMPLATE, as LEAD would get it next, to one address; no send, event or score is recorded."""
    from nurture.preview import send_test as mail_preview

    settings = settings_of(ctx)
    store = open_store(settings)
    try:
        with development_sink(settings, store):
            shown, envelope = run_async(mail_preview(settings, store, smtp_mailer(settings), template, email, to))
    finally:
        store.close()
    if shown.note:
        click.echo(f"note: {shown.note}", err=True)
    click.echo(f"sent {template} for {shown.lead.email} to {envelope.recipient}: {shown.rendered.subject}")


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


if __name__ == "__main__":
    main()


def _set_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.find_root().obj["config"] = value


def _config_anywhere(group: click.Group) -> None:
    """`--config` works after a command as before it (`nurture rescore --config NEW.yaml`)."""
    for command in group.commands.values():
        command.params.append(click.Option(["--config"], type=click.Path(path_type=Path), expose_value=False,
                                           callback=_set_config, help="nurture.yaml to read (as before the command)."))
        if isinstance(command, click.Group):
            _config_anywhere(command)


_config_anywhere(main)
