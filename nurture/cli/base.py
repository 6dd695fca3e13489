"""The command line's group and what every command shares: settings, the engine, friendly errors."""

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

from nurture.engine import Engine
from nurture.errors import NurtureError
from nurture.runtime import configure_logging, development_sink, open_store, smtp_mailer
from nurture.send.mailer import Mailer
from nurture.settings import (
    Settings,
    load_settings,
)

log = logging.getLogger("nurture")


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn nurture's own errors into a message and their exit code (2 for bad input, 1 for a failed
    run), and a Ctrl-C into one line and 130, as a shell reports an interrupted command."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NurtureError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("stopped (Ctrl-C): what was done is stored; a send not yet made stays queued", err=True)
            sys.exit(130)

    return wrapper


def settings_of(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    if "settings" not in obj:
        try:
            obj["settings"] = load_settings(environment(), obj["config"])
        except NurtureError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
    return obj["settings"]


def environment() -> dict[str, str]:
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
@click.option("--log-json", is_flag=True, help="Log JSON lines (also NURTURE_LOG_FORMAT=json).")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool, log_json: bool) -> None:
    """nurture: email lead nurturing with RSS digests, tracked links and a sales hand-off."""
    if log_json:
        os.environ["NURTURE_LOG_FORMAT"] = "json"  # for the processes this one starts (the judge, a builder)
    configure_logging(verbose)
    ctx.obj = {"config": config}


def _set_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.find_root().obj["config"] = value


def config_anywhere(group: click.Group) -> None:
    """`--config` works after a command as before it (`nurture rescore --config NEW.yaml`)."""
    for command in group.commands.values():
        command.params.append(click.Option(["--config"], type=click.Path(path_type=Path), expose_value=False,
                                           callback=_set_config, help="nurture.yaml to read (as before the command)."))
        if isinstance(command, click.Group):
            config_anywhere(command)
