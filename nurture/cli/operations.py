"""Operating an installation: scores replayed, the admin key, signing keys, the schema."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click

from nurture import console
from nurture.cli.base import environment, friendly, main, settings_of
from nurture.runtime import open_store
from nurture.settings import (
    config_path,
    development_key_file,
    new_secret_key,
    write_development_keys,
)
from nurture.store import Store, figures, schema


@main.command()
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@click.pass_context
@friendly
def rescore(ctx: click.Context, dry_run: bool) -> None:
    """Recompute every score from the event log under the rules of --config; report stage changes, and the
    funnel these rules would have produced on the whole history (who would have gone to sales, which won
    deals they keep or miss, which deals without result they spare)."""
    from nurture.score.rescore import Replayed
    from nurture.score.rescore import rescore as replay

    settings = settings_of(ctx)
    funnel = Replayed()
    changes = replay(open_store(settings), settings.scoring, datetime.now(UTC), dry_run, funnel)
    console.rescored(changes, dry_run)
    console.replayed(funnel)


@main.command("admin-key")
@click.pass_context
@friendly
def admin_key(ctx: click.Context) -> None:
    """Print the password of the admin pages (NURTURE_ADMIN_KEY, or one derived from the secret key)."""
    click.echo(settings_of(ctx).admin_key)


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
    key_file = development_key_file(config_path(environment(), ctx.find_root().obj["config"]).resolve().parent)
    write_development_keys(key_file, [fresh, *kept])
    click.echo(f"{key_file}: a new key signs from now on; the {len(kept)} before it still verify")


@main.group()
def db() -> None:
    """The database's schema: upgrade it to this release, show where it stands; count the report's figures anew."""


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


@db.command("recount")
@click.pass_context
@friendly
def db_recount(ctx: click.Context) -> None:
    """Count the figures SQLite keeps ahead for the report anew, from the mails and leads they count."""
    store = Store(settings_of(ctx).database_url)
    try:
        if not store.is_sqlite:
            click.echo("PostgreSQL keeps no figures ahead: its report reads the mails and leads")
            return
        with store.engine.begin() as connection:
            figures.count_again(connection)
    finally:
        store.close()
    click.echo("the report's figures were counted anew")


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
