"""The outbox's leases: renewed for the worker that holds them, and kept renewed through a failed renewal."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from nurture.engine import Engine, Report
from nurture.models import Lead, Send, SendState
from nurture.program import CONFIRMATION, DIGEST, Due
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


def test_recording_a_batch_moves_each_lead_to_its_last_step_in_its_own_cycle(store: Store) -> None:
    """What recording queued sends writes on the leads (one statement for the batch on PostgreSQL): the step
    and the next due time, a lead's later step when it has two, never a lead that moved to another cycle
    or past that step since."""
    two, moved, ahead = (make_lead(store, email=f"{name}@example.com") for name in ("two", "moved", "ahead"))
    with Session(store.engine) as session:
        session.get(Lead, moved.id).cycle = 1  # type: ignore[union-attr]
        session.get(Lead, ahead.id).last_step = 5  # type: ignore[union-attr]
        session.commit()
    nexts = {step: T0 + timedelta(days=step) for step in (1, 2)}
    steps = [(Due(two.id or 0, 0, 1, DIGEST, nexts[1]), []), (Due(two.id or 0, 0, 2, DIGEST, nexts[2]), []),
             (Due(moved.id or 0, 0, 1, DIGEST, nexts[1]), []), (Due(ahead.id or 0, 0, 2, DIGEST, nexts[2]), [])]
    Outbox(store).enqueue_many(steps, T0)
    found = {lead.id: (lead.last_step, _utc(lead.due_at) if lead.due_at else None, lead.last_mailed_at is not None)
             for lead in store.leads()}
    assert found[two.id] == (2, nexts[2], True)
    assert found[moved.id][0] is None and not found[moved.id][2]
    assert found[ahead.id][0] == 5 and not found[ahead.id][2]
