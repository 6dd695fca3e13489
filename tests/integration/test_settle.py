"""Results stored ahead of what they lead to (a delivery run on PostgreSQL stores each result before the
next message goes, and its consequences in batches: nurture.send.results, `settle`): settled later, by
any worker, exactly once, into the same events, scores and suppressions as storing them at once."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from nurture.engine import Engine
from nurture.models import Event, EventKind, Send, SendState, Suppression
from nurture.program import DIGEST, Due
from nurture.send.outbox import Outbox
from nurture.send.results import Result
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import T0, make_lead

ENDINGS = {1: (SendState.SENT, None), 2: (SendState.SENT, None),
           3: (SendState.DEFERRED, "452 4.2.2 Mailbox full"),  # a soft bounce: counted towards suppression
           4: (SendState.BOUNCED, "550 5.1.1 no such user")}  # suppresses the lead


def deliver(store: Store, settings: Settings, lead_id: int, worker: str, settle: bool, on_loop: bool = False) -> None:
    """Record digests 1-4 for the lead, claim them as `worker` and store how each ended (`on_loop`: as a
    delivery run on PostgreSQL does, on a connection of the event loop)."""
    outbox = Outbox(store, worker)
    outbox.enqueue_many([(Due(lead_id, 0, step, DIGEST, None), []) for step in ENDINGS], T0)
    claimed = outbox.claim(len(ENDINGS), T0, 300)
    store_results(store, settings, outbox, [Result(send, *ENDINGS[send.step], at=T0) for send in claimed], settle,
                  on_loop)


def store_results(store: Store, settings: Settings, outbox: Outbox, results: list[Result], settle: bool = True,
                  on_loop: bool = False) -> None:
    """Store `results` as `outbox`'s worker, at once (`settle`) or ahead of what they lead to; `on_loop`: as a
    delivery run on PostgreSQL does, on a connection of the event loop."""
    if not on_loop:
        outbox.finish(results, T0, settings.scoring, settings.delivery, settle=settle)
        return

    async def ahead() -> None:
        async with store.loop_connection() as connection:
            await outbox.finish_ahead(results, T0, settings.delivery, connection)

    asyncio.run(ahead())


def history(store: Store, lead_id: int) -> list[tuple[Any, ...]]:
    """What two leads' events share (their ids, sends and credit keys differ)."""
    return [(event.kind, event.points, event.counted, event.reason, event.occurred_at)
            for event in store.events_of(lead_id)]


def unsettled(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(Send).where(Send.unsettled)).scalar_one())


@pytest.mark.parametrize("on_loop", [False, True], ids=["finish", "finish_ahead"])
def test_results_settled_later_by_another_worker_are_those_stored_at_once(store: Store, settings: Settings,
                                                                          on_loop: bool) -> None:
    if on_loop and store.is_sqlite:
        pytest.skip("a connection of the loop is PostgreSQL's (a run on SQLite logs its results instead)")
    now, later = (make_lead(store, email=email).id or 0 for email in ("now@example.com", "later@example.com"))
    deliver(store, settings, now, "here:1:aaaaaa", settle=True)
    deliver(store, settings, later, "gone:2:bbbbbb", settle=False, on_loop=on_loop)  # it died before settling
    assert unsettled(store) == 4 and store.events_of(later) == [] and store.lead(later).suppressed is None
    assert {send.state for send in store.sends_of(later)} == {SendState.SENT, SendState.DEFERRED, SendState.BOUNCED}

    assert Outbox(store, "there:3:cccccc").settle(T0, settings.scoring) == 4
    assert history(store, later) == history(store, now) != []
    assert store.lead(later).suppressed is store.lead(now).suppressed is Suppression.BOUNCED
    assert store.lead(later).score == store.lead(now).score
    assert unsettled(store) == 0
    assert Outbox(store).settle(T0, settings.scoring) == 0  # nothing is settled twice
    assert history(store, later) == history(store, now)


def test_settlers_at_work_together_settle_each_result_once(store: Store, settings: Settings) -> None:
    leads = [make_lead(store, email=f"lead{n}@example.com").id or 0 for n in range(60)]
    for lead_id in leads:
        deliver(store, settings, lead_id, "gone:2:bbbbbb", settle=False)
    settler = Outbox(store)
    with ThreadPoolExecutor(4) as pool:
        settled = list(pool.map(lambda _: settler.settle(T0, settings.scoring, batch=7), range(4)))
    assert sum(settled) == 4 * len(leads)
    with store.engine.connect() as connection:
        booked = connection.execute(select(Event.send_id, func.count()).where(Event.kind == EventKind.SENT)
                                    .group_by(Event.send_id)).all()
    assert len(booked) == 2 * len(leads) and {count for _, count in booked} == {1}  # each sent digest once


def test_a_run_settles_what_a_run_that_died_left(engine: Engine, store: Store, settings: Settings) -> None:
    lead_id = make_lead(store).id or 0
    deliver(store, settings, lead_id, "gone:2:bbbbbb", settle=False)
    asyncio.run(engine.send_due(T0))
    assert unsettled(store) == 0
    assert store.lead(lead_id).suppressed is Suppression.BOUNCED
    assert [event.kind for event in store.events_of(lead_id)].count(EventKind.SENT) == 2


@pytest.mark.parametrize("on_loop", [False, True], ids=["finish", "finish_ahead"])
def test_a_result_is_stored_only_while_its_worker_holds_the_claim(store: Store, settings: Settings,
                                                                  on_loop: bool) -> None:
    """A worker whose lease ran out, and whose send another worker claimed since, stores nothing of it."""
    if on_loop and store.is_sqlite:
        pytest.skip("a connection of the loop is PostgreSQL's (a run on SQLite logs its results instead)")
    lead_id = make_lead(store).id or 0
    late = Outbox(store, "late:1:aaaaaa")
    late.enqueue_many([(Due(lead_id, 0, step, DIGEST, None), []) for step in (1, 2)], T0)
    kept, taken = late.claim(2, T0, 300)
    with store.engine.begin() as connection:
        connection.execute(Send.__table__.update().where(Send.__table__.c.id == taken.id)  # type: ignore[attr-defined]
                           .values(claimed_by="next:2:bbbbbb"))
    store_results(store, settings, late, [Result(send, SendState.SENT, at=T0) for send in (kept, taken)],
                  on_loop=on_loop)
    sends = {send.id: send for send in store.sends_of(lead_id)}
    assert sends[kept.id].state is SendState.SENT and sends[kept.id].claimed_by is None
    assert sends[taken.id].state is SendState.SENDING and sends[taken.id].claimed_by == "next:2:bbbbbb"


@pytest.mark.parametrize("on_loop", [False, True], ids=["finish", "finish_ahead"])
def test_what_a_result_and_a_description_carry_is_stored_as_it_was(store: Store, settings: Settings,
                                                                   on_loop: bool) -> None:
    """Errors, subjects and links with quotes, backslashes, other scripts and no ASCII at all, and the
    times to the microsecond, come back as they went in (PostgreSQL writes them as one JSON text)."""
    if on_loop and store.is_sqlite:
        pytest.skip("a connection of the loop is PostgreSQL's (a run on SQLite logs its results instead)")
    lead_id = make_lead(store).id or 0
    outbox = Outbox(store, "here:1:aaaaaa")
    outbox.enqueue_many([(Due(lead_id, 0, step, DIGEST, None), []) for step in (1, 2)], T0)
    first, second = outbox.claim(2, T0, 300)
    links = [{"url": 'https://example.com/a?q="x"&b=\\n', "tag": "Ünïcødé ✓ 日本", "item": None},
             {"url": "https://example.com/{}", "tag": "", "action": "callback"}]
    subject = 'Your "digest" \\ 週報 \u2028 – été'
    outbox.describe([(first.id, {"message_id": "<1@example.com>", "subject": subject, "links": links}),
                     (second.id, {"message_id": "<2@example.com>", "subject": "", "links": []})])
    error = '452 4.2.2 "Mailbox full" \\ Postfach voll – 満杯'
    at = T0.replace(microsecond=123456)
    store_results(store, settings, outbox, [Result(first, SendState.SENT, at=at),
                                            Result(second, SendState.DEFERRED, error)], on_loop=on_loop)
    sends = {send.id: send for send in store.sends_of(lead_id)}
    sent, deferred = sends[first.id], sends[second.id]
    assert (sent.subject, sent.links, sent.message_id, sent.state) == (subject, links, "<1@example.com>",
                                                                       SendState.SENT)
    assert sent.sent_at is not None and sent.sent_at.replace(tzinfo=at.tzinfo) == at and sent.error is None
    assert (deferred.state, deferred.error, deferred.attempts) == (SendState.DEFERRED, error, 1)
    assert deferred.retry_at is not None and deferred.sent_at is None and deferred.claimed_by is None
