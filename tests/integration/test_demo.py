"""`nurture demo`: a simulated population through nurture's own paths, on SQLite and PostgreSQL.

One seed and size are used throughout, chosen so that two months of it reach every stage and every
outcome; a change to how the simulated people behave may call for another seed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture import demo
from nurture.cli import main
from nurture.demo.census import Census, census
from nurture.models import Event, EventKind, Lead
from nurture.score import rules as scoring
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import ROOT, environ

LEADS, MONTHS, SEED = 120, 2, 2
END = datetime(2026, 11, 30, tzinfo=UTC)


def filled(settings: Settings) -> demo.Filled:
    return asyncio.run(demo.fill(settings, LEADS, MONTHS, SEED, end=END))


def test_a_demo_fills_the_database_through_nurture_s_own_paths(settings: Settings, store: Store, database_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One run (a few seconds), then what it must have left; each check below says what could go wrong."""
    run = filled(settings)
    assert run.judged_right(), (run.made, run.census)  # every machine's hit found, no person's taken for one
    done = run.census
    every_stage_and_outcome(done, store, settings)
    machines_recorded_not_counted(done, store)
    unconfirmed_sign_ups_got_no_digest(done, store)
    refused_a_second_time(done, store, database_url, monkeypatch)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_same_seed_makes_the_same_population(settings: Settings, tmp_path: Path) -> None:
    again = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'again.db'}"})
    first = asyncio.run(demo.fill(settings, 40, 1, SEED, end=END))
    assert asyncio.run(demo.fill(again, 40, 1, SEED, end=END)) == first
    assert asyncio.run(demo.fill(again, 40, 1, SEED + 1, end=END, force=True)).census.leads == 80


def everyone(store: Store) -> list[tuple[Lead, list[Event]]]:
    return [(lead, store.events_of(lead.id or 0)) for lead in store.leads(limit=10_000)]


def every_stage_and_outcome(done: Census, store: Store, settings: Settings) -> None:
    """Leads reach every stage, sales gives every outcome (and leaves some hand-offs without), and a
    hand-off is made only at the lead's threshold."""
    assert done.leads == LEADS
    assert {"mql", "sql", "won", "disqualified"} <= set(done.stages), done.stages
    assert {"won", "lost", "no_result", "not_a_fit", "none"} <= set(done.outcomes), done.outcomes
    for lead in store.leads(limit=10_000):
        for handoff in store.handoffs_of(lead.id or 0):
            assert handoff.score >= scoring.threshold(settings.scoring, lead.customer, lead.industry), lead.email


def machines_recorded_not_counted(done: Census, store: Store) -> None:
    """Scanners and proxies went through the judge: stored, never counted, each with its reason; people's
    opens count."""
    events = [event for _, events in everyone(store) for event in events
              if event.kind in (EventKind.OPEN, EventKind.CLICK)]
    machines = [event for event in events if event.machine]
    assert machines and all(not event.counted and event.reason for event in machines)
    reasons = {(event.reason or "").split(" (")[0].split(":")[0] for event in machines}
    assert {"scanner user agent", "HEAD request", "privacy proxy open"} <= reasons, reasons
    assert reasons & {"honeypot link", "click burst"}, reasons
    assert any(event.kind is EventKind.OPEN and event.counted for event in events if not event.machine)
    assert len(machines) == sum(done.machines.values())


def unconfirmed_sign_ups_got_no_digest(done: Census, store: Store) -> None:
    """Double opt-in held: a sign-up that never confirmed got its confirmation only (and was erased)."""
    leads = store.leads(limit=10_000)
    unconfirmed = [lead for lead in leads if lead.confirmed_at is None]
    assert unconfirmed and done.erased
    assert all(send.template == "confirmation" for lead in unconfirmed for send in store.sends_of(lead.id or 0))
    consents = {consent.how.split(" ")[0] for lead in leads for consent in store.consents_of(lead.id or 0)}
    assert {"import", "cli", "form", "api", "confirmed"} <= consents, consents


def refused_a_second_time(done: Census, store: Store, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environ(database_url).items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "demo", "--leads", "5"])
    assert result.exit_code == 2
    assert f"holds {LEADS} leads already" in result.output and "--force" in result.output
    assert census(store) == done
