"""`nurture demo`: a living database in one command, for a first look at the dashboard and for the reports."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click
import rich.progress

from nurture import demo as simulated
from nurture.cli.base import friendly, main, settings_of
from nurture.demo.simulation import Progress
from nurture.runtime import run_async


@main.command()
@click.option("--leads", "count", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
              help="How many leads arrive over the months.")
@click.option("--months", type=click.IntRange(1, 60), default=6, show_default=True,
              help="How many months to simulate, ending today.")
@click.option("--seed", type=int, default=1, show_default=True, help="The same seed makes the same population.")
@click.option("--force", is_flag=True, help="Add to a database that holds leads already (what its own leads are "
              "due in the simulated months goes to memory too, not to them).")
@click.pass_context
@friendly
def demo(ctx: click.Context, count: int, months: int, seed: int, force: bool) -> None:
    """Fill the database with a simulated population: months of leads, mails, opens and clicks by people and
    by machines (link scanners, privacy proxies), hand-offs and what sales made of them, all through
    nurture's own code paths on a simulated clock. Mail goes to memory, never to a server."""
    settings = settings_of(ctx)
    started = time.monotonic()
    with _days() as progress:
        filled = run_async(simulated.fill(settings, count, months, seed, force, progress))
    click.echo(f"{filled.census.line()}; {time.monotonic() - started:.1f} s")
    if not filled.judged_right():  # some hits went to leads erased meanwhile, or the judge missed a machine
        made = {f"{kind} by {'machines' if machine else 'people'}": n for (kind, machine), n in filled.made.items()}
        click.echo(f"the simulation made {', '.join(f'{n} {what}' for what, n in sorted(made.items()))}")
    click.echo("Read it with `nurture report`, or on the dashboard: `nurture run`, then /admin/dashboard")


@contextmanager
def _days() -> Iterator[Progress]:
    """A bar of simulated days on a terminal; otherwise a line a month."""
    if sys.stdout.isatty():
        with rich.progress.Progress(*rich.progress.Progress.get_default_columns(), rich.progress.MofNCompleteColumn(),
                                    transient=True) as bar:
            task = bar.add_task("simulating days", total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return

    def line(done: int, total: int) -> None:
        if done % 30 == 0 or done == total:
            click.echo(f"demo: day {done} of {total} simulated")

    yield line
