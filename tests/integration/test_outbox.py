"""The outbox's leases: renewed for the worker that holds them, and kept renewed through a failed renewal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from nurture.engine import Engine, Report
from nurture.models import Send, SendState
from nurture.program import CONFIRMATION, Due
from nurture.send.outbox import Outbox
from nurture.send.run import DeliveryRun
from nurture.store import Store
from tests.conftest import T0, make_lead

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def queue(store: Store, outbox: Outbox, first: int, count: int) -> None:
    leads = [make_lead(store, email=f"lead{n}@example.com") for n in range(first, first + count)]
    outbox.enqueue_many([(Due(lead.id or 0, 0, 0, CONFIRMATION, None), []) for lead in leads], T0)


def test_a_renewal_extends_the_leases_of_its_worker_only(store: Store) -> None:
    mine, theirs = Outbox(store, "here:1:aaaaaa"), Outbox(store, "there:2:bbbbbb")
    queue(store, mine, 0, 3)
    held = mine.claim(3, T0, 600)
    queue(store, theirs, 3, 2)
    others = theirs.claim(2, T0, 600)
    with store.engine.begin() as connection:
        connection.execute(update(Send).values(claimed_at=LONG_AGO))
        connection.execute(update(Send).where(col(Send.id) == held[0].id).values(state=SendState.SENT))
    before = datetime.now(UTC) - timedelta(seconds=1)
    mine.renew()
    leases = {send.id: send for lead_id in range(1, 6) for send in store.sends_of(lead_id)}
    assert all(_utc(leases[send.id].claimed_at) > before for send in held[1:])
    assert _utc(leases[held[0].id].claimed_at) == LONG_AGO  # sent: no longer held
    assert all(_utc(leases[send.id].claimed_at) == LONG_AGO for send in others)


def test_a_failed_renewal_does_not_end_the_renewals(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    dispatch = DeliveryRun(engine.settings, engine.composer, engine.store, engine.mailer, T0, Report())
    dispatch.policy = dispatch.policy.model_copy(update={"lease_seconds": 0.03})
    calls: list[int] = []

    def renew() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the database is away")

    monkeypatch.setattr(dispatch.outbox, "renew", renew)

    async def run_a_while() -> None:
        renewing = asyncio.create_task(dispatch._renew_leases())
        await asyncio.sleep(0.2)
        assert not renewing.done()
        renewing.cancel()

    asyncio.run(run_a_while())
    assert len(calls) >= 3


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def test_claims_and_leases_read_the_clock_they_are_given(database_url: str) -> None:
    wall = [datetime(2031, 5, 1, 12, 0, tzinfo=UTC)]
    store = Store(database_url, clock=lambda: wall[0])
    store.create()
    try:
        outbox, other = Outbox(store, "here:1:aaaaaa"), Outbox(store, "there:2:bbbbbb")
        queue(store, outbox, 0, 2)
        held = outbox.claim(2, T0, 600)
        assert {_utc(send.claimed_at) for send in store.sends_of(1) + store.sends_of(2)} == {wall[0]}
        assert other.claim(2, T0, 600) == []  # leased for 600 s of that clock
        wall[0] += timedelta(seconds=601)
        assert sorted(send.id for send in other.claim(2, T0, 600)) == sorted(send.id for send in held)
    finally:
        store.close()
