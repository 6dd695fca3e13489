"""`nurture demo`: a database filled with a simulated population, through nurture's own code paths.

    population   who the leads are and how they behave, drawn from a seed (pure)
    inbox        a delivered mail as its reader sees it: the tracking URLs it carries
    reactions    what people and machines do with a mail (pure)
    sales        what sales makes of a hand-off, and when (pure)
    simulation   the simulated clock and the queue of what happens, day by day
    census       what the database holds afterwards, counted
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nurture.content.catalog import load_catalog
from nurture.demo.census import Census, census
from nurture.demo.population import population
from nurture.demo.simulation import Progress, SimulatedClock, Simulation
from nurture.errors import InputError
from nurture.settings import Settings
from nurture.store import Store

DAYS_PER_MONTH = 30.44


@dataclass(frozen=True)
class Filled:
    census: Census  # what the database holds
    made: dict[tuple[str, bool], int]  # the opens and clicks the simulation made, by kind and by a machine or not

    def judged_right(self) -> bool:
        """The judge found a machine's every hit a machine made, and no other (hits on erased leads aside)."""
        people = {kind: count for (kind, machine), count in self.made.items() if not machine}
        machines = {kind: count for (kind, machine), count in self.made.items() if machine}
        return people == self.census.people and machines == self.census.machines


async def fill(settings: Settings, leads: int, months: float, seed: int, force: bool = False,
               progress: Progress | None = None, end: datetime | None = None) -> Filled:
    """Simulate `months` up to `end` (default: the start of today, UTC) with `leads` arriving, in the database
    of `settings`; refuse a database that holds leads already, unless `force`. Return what it holds then."""
    days = max(1, round(months * DAYS_PER_MONTH))
    end = end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    clock = SimulatedClock(start)
    store = Store(settings.database_url, clock)
    try:
        store.create()
        held = census(store).leads if store.leads(limit=1) else 0
        if held and not force:
            raise InputError(f"the database holds {held} leads already; the demo fills an empty one "
                             "(name another with NURTURE_DATABASE_URL, or add to this one with --force)")
        people = population(leads, start, days, load_catalog(settings.feeds_file), seed, f"+demo{held}" if held else "")
        simulation = Simulation(_quick(settings), store, clock, seed, progress)
        await simulation.run(people, start, days)
        return Filled(census(store), dict(simulation.made))
    finally:
        store.close()


def _quick(settings: Settings) -> Settings:
    """A memory mailer needs no pace and no wait between tries, and a day's sends are built in a thread: a
    builder process pays for itself only on runs of thousands."""
    delivery = settings.delivery.model_copy(update={"rate_per_second": None, "rate_per_hour": None,
                                                    "backoff_seconds": 0.0, "batch_size": 10_000})
    return settings.model_copy(update={"delivery": delivery})


__all__ = ["Census", "Filled", "census", "fill"]
