"""A sent digest's cost, booked for many sends in a few statements: the same events and scores as
recording each one alone."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from nurture.engine import Engine
from nurture.models import Event, EventKind, HandoffState, Stage
from nurture.program import DIGEST, Due
from nurture.score.rules import Credit
from nurture.send.outbox import Outbox
from nurture.settings import Settings
from nurture.store import NewEvent, Store
from tests.conftest import T0, make_lead

FIELDS = ("kind", "cycle", "points", "counted", "reason", "occurred_at", "method", "user_agent", "detail")


def seen(events: list[Event]) -> list[tuple[Any, ...]]:
    """What two leads' events share (their ids, sends and credit keys differ)."""
    return [(*(getattr(event, name) for name in FIELDS), event.credit_key is not None) for event in events]


def sends(store: Store, lead_id: int, count: int) -> list[int]:
    """Ids of `count` digests recorded for the lead (an event names a real send)."""
    Outbox(store).enqueue_many([(Due(lead_id, 0, step, DIGEST, None), []) for step in range(1, count + 1)], T0)
    return [send.id or 0 for send in store.sends_of(lead_id)]


def cost(lead_id: int, send_id: int, points: int = -1) -> NewEvent:
    return NewEvent(lead_id, EventKind.SENT, T0, Credit(points, f"sent:{send_id}"), send_id=send_id)


def test_costs_in_one_go_are_the_events_and_scores_of_one_at_a_time(store: Store, settings: Settings) -> None:
    together, alone = (make_lead(store, email=email).id or 0 for email in ("a@example.com", "b@example.com"))
    store.record(NewEvent(together, EventKind.OPEN, T0, Credit(5, "open:1")), settings.scoring)
    store.record(NewEvent(alone, EventKind.OPEN, T0, Credit(5, "open:2")), settings.scoring)
    ours, theirs = sends(store, together, 2), sends(store, alone, 2)
    def costs(lead_id: int, send_ids: list[int]) -> list[NewEvent]:  # the third names the credit the first takes
        return [cost(lead_id, send_ids[0]), cost(lead_id, send_ids[1], 0), cost(lead_id, send_ids[0])]

    with store.engine.begin() as connection:
        store.record_costs_in(connection, costs(together, ours))
    for hit in costs(alone, theirs):
        store.record(hit, settings.scoring)
    assert seen(store.events_of(together)) == seen(store.events_of(alone))
    assert [event.reason for event in store.events_of(together)] == [None, None, None, "already credited"]
    assert [event.credit_for for event in store.events_of(together)] == [
        "open:1", f"sent:{ours[0]}", f"sent:{ours[1]}", f"sent:{ours[0]}"]
    assert store.lead(together).score == store.lead(alone).score == 4


def test_a_cost_already_held_by_a_stored_event_is_not_booked_again(store: Store) -> None:
    lead_id = make_lead(store).id or 0
    [send_id] = sends(store, lead_id, 1)
    for _ in range(2):
        with store.engine.begin() as connection:
            store.record_costs_in(connection, [cost(lead_id, send_id)])
    assert [event.counted for event in store.events_of(lead_id)] == [True, False]
    assert store.lead(lead_id).score == -1


def test_a_lead_with_sales_is_not_charged(store: Store, settings: Settings) -> None:
    lead_id = make_lead(store).id or 0
    store.record(NewEvent(lead_id, EventKind.CLICK, T0, Credit(20, "click:1:0")), settings.scoring)  # qualifies
    assert store.lead(lead_id).stage is Stage.SQL
    [send_id] = sends(store, lead_id, 1)
    with store.engine.begin() as connection:
        store.record_costs_in(connection, [cost(lead_id, send_id)])
    [_, charged] = store.events_of(lead_id)
    assert not charged.counted and charged.reason == "lead is sql"
    assert store.lead(lead_id).score == 20


def test_only_costs_go_this_way(store: Store) -> None:
    lead_id = make_lead(store).id or 0
    [send_id] = sends(store, lead_id, 1)
    with store.engine.begin() as connection, pytest.raises(ValueError, match="costs only"):
        store.record_costs_in(connection, [cost(lead_id, send_id, points=2)])
    assert store.events_of(lead_id) == []


def test_rules_that_pay_for_a_digest_can_qualify_the_lead(engine: Engine) -> None:
    rules = engine.settings.scoring
    engine.settings = engine.settings.model_copy(update={"scoring": rules.model_copy(
        update={"points": rules.points.model_copy(update={"extra_nurture_email": 20})})})
    assert [status for _, status, _ in asyncio.run(engine.refresh_feeds(T0))] == ["ok"] * 4
    lead_id = make_lead(engine.store, interests=["cloud"]).id or 0
    for day in (0, 7, 14):
        asyncio.run(engine.send_due(T0 + timedelta(days=day)))
    lead = engine.store.lead(lead_id)
    assert lead.stage is Stage.SQL and lead.score == 20
    [handoff] = engine.store.handoffs_of(lead_id)
    assert handoff.state is HandoffState.SENT
