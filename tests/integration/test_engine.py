"""The engine over a real database and an in-memory mailer: the program, delivery and hand-offs."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import nurture.engine
from nurture.engine import Engine, Report
from nurture.errors import DeliveryError, Fault
from nurture.models import EventKind, HandoffState, Outcome, SendState, Stage, Suppression
from nurture.score.rules import Credit
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.settings import Settings
from nurture.store import NewEvent, Store, base
from nurture.store.locks import Lock
from tests.conftest import T0, make_lead

WEEK = timedelta(days=7)


def tick(engine: Engine, days: float = 0):  # type: ignore[no-untyped-def]
    return asyncio.run(engine.send_due(T0 + timedelta(days=days)))


def refresh(engine: Engine) -> None:
    results = asyncio.run(engine.refresh_feeds(T0))
    assert {status for _, status, _ in results} == {"ok"}


def test_digests_follow_the_cadence_and_never_repeat_an_article(engine: Engine, mailer: MemoryMailer) -> None:
    refresh(engine)
    make_lead(engine.store, interests=["security"], industry="")  # 7 usable items, 5 per digest
    assert len(tick(engine, 0).sent) == 1  # confirmation
    assert tick(engine, 6.9).sent == []
    assert len(tick(engine, 7).sent) == 1
    assert len(tick(engine, 14).sent) == 1  # the 2 items left
    report = tick(engine, 21)
    assert report.sent == [] and report.skipped  # nothing new: skipped, and the skip is noted
    assert engine.store.lead(1).skip_reason == "no new matching items"
    sends = engine.store.sends_of(1)
    carried = engine.outbox.items([send.id or 0 for send in sends])
    items = [item.id for send_items in carried.values() for item in send_items]
    assert len(items) == 7 and len(set(items)) == 7
    assert len(mailer.sent) == 3


def test_every_digest_after_the_first_costs_a_point(engine: Engine) -> None:
    refresh(engine)
    make_lead(engine.store, interests=["cloud"], industry="finance")
    for day in (0, 7, 14, 21):
        tick(engine, day)
    sent = [e.points for e in engine.store.events_of(1) if e.kind is EventKind.SENT]
    assert sent == [0, -1, -1]
    assert engine.store.lead(1).score == -2


def test_a_bounce_suppresses_the_lead_and_scores_the_rule(engine: Engine, mailer: MemoryMailer) -> None:
    make_lead(engine.store)
    mailer.fail["ada@example.com"] = DeliveryError("550 no such user", fault=Fault.ADDRESS, code=550)
    report = tick(engine)
    assert report.bounced == ["ada@example.com: 550 no such user"] and not report.failed and not report.sent
    lead = engine.store.lead(1)
    assert lead.suppressed is Suppression.BOUNCED and lead.score == -30
    assert engine.store.sends_of(1)[0].state is SendState.BOUNCED
    del mailer.fail["ada@example.com"]
    refresh(engine)
    tick(engine, 30)
    assert mailer.sent == []


def test_a_temporary_failure_is_deferred_and_retried(engine: Engine, mailer: MemoryMailer) -> None:
    make_lead(engine.store)
    mailer.fail["ada@example.com"] = DeliveryError("421 try later", code=421)
    assert tick(engine).deferred
    assert engine.store.sends_of(1)[0].state is SendState.DEFERRED
    del mailer.fail["ada@example.com"]
    assert tick(engine, 0.01).sent == []  # not before retry_after_minutes
    assert len(tick(engine, 0.02).sent) == 1
    send = engine.store.sends_of(1)[0]
    assert send.state is SendState.SENT and send.attempts == 2
    assert len(mailer.sent) == 1


def test_the_message_id_is_the_same_when_a_send_is_built_again(engine: Engine) -> None:
    make_lead(engine.store)
    step = engine.plan(T0)[0]
    assert engine.outbox.enqueue(step, T0) is True
    send = engine.store.sends_of(1)[0]
    lead = engine.store.lead(1)
    (first, _), (second, _) = engine.composer.compose(send, lead, []), engine.composer.compose(send, lead, [])
    assert first.message_id == second.message_id and first.data == second.data
    assert engine.outbox.enqueue(step, T0) is False  # the step exists once


def qualify(engine: Engine) -> int:
    recorded = engine.store.record(NewEvent(1, EventKind.EXTERNAL, T0, Credit(12, "form:1")), engine.settings.scoring)
    assert recorded.handoff_id is not None
    return recorded.handoff_id


def test_one_hand_off_mail_however_often_delivery_runs(engine: Engine, mailer: MemoryMailer) -> None:
    make_lead(engine.store)
    handoff_id = qualify(engine)
    asyncio.run(engine.deliver_handoffs(T0))
    asyncio.run(engine.deliver_handoffs(T0))
    assert asyncio.run(engine.deliver_handoff(handoff_id, T0)) is False
    to_sales = [m for m in mailer.sent if m.recipient == "sales@example.com"]
    assert len(to_sales) == 1
    assert b"ada@example.com" in to_sales[0].data
    assert engine.store.handoff(handoff_id).state is HandoffState.SENT  # type: ignore[union-attr]


def test_a_failed_hand_off_stays_pending_and_goes_out_later(engine: Engine, mailer: MemoryMailer) -> None:
    make_lead(engine.store)
    handoff_id = qualify(engine)
    mailer.fail["sales@example.com"] = DeliveryError("connection refused")
    asyncio.run(engine.deliver_handoffs(T0))
    assert engine.store.handoff(handoff_id).state is HandoffState.PENDING  # type: ignore[union-attr]
    del mailer.fail["sales@example.com"]
    asyncio.run(engine.deliver_handoffs(T0))
    assert [m.recipient for m in mailer.sent] == ["sales@example.com"]


def test_customers_qualify_at_their_own_threshold(engine: Engine) -> None:
    make_lead(engine.store, customer=True)
    recorded = engine.store.record(NewEvent(1, EventKind.CLICK, T0, Credit(8, "callback:1")), engine.settings.scoring)
    assert recorded.handoff_id is not None and engine.store.lead(1).stage is Stage.SQL


def test_an_sql_gets_no_nurture_mail_and_no_result_starts_a_new_cycle(engine: Engine, mailer: MemoryMailer) -> None:
    refresh(engine)
    make_lead(engine.store)
    tick(engine)
    handoff_id = qualify(engine)
    tick(engine, 30)
    assert [m.recipient for m in mailer.sent] == ["ada@example.com", "sales@example.com"]
    lead = engine.store.decide(handoff_id, Outcome.NO_RESULT, T0 + timedelta(days=31), engine.settings.scoring,
                                 engine.settings.program)
    assert (lead.stage, lead.cycle, lead.score) == (Stage.MQL, 1, 0)
    assert tick(engine, 37).sent == []
    assert len(tick(engine, 38).sent) == 1  # a week after the new cycle began
    assert engine.store.sends_of(1)[-1].cycle == 1


def test_a_hand_off_whose_mail_cannot_be_built_stays_pending(engine: Engine, mailer: MemoryMailer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    make_lead(engine.store)
    handoff_id = qualify(engine)

    def broken(*args: object, **kwargs: object) -> None:
        raise UnicodeEncodeError("ascii", "ü", 0, 1, "not ascii")

    monkeypatch.setattr("nurture.handoff.mail.build", broken)
    assert asyncio.run(engine.deliver_handoff(handoff_id, T0)) is False
    assert engine.store.handoff(handoff_id).state is HandoffState.PENDING  # type: ignore[union-attr]
    monkeypatch.undo()
    asyncio.run(engine.deliver_handoffs(T0))
    assert [m.recipient for m in mailer.sent] == ["sales@example.com"]


def test_a_hand_off_left_sending_by_a_dead_worker_goes_out_later(engine: Engine, mailer: MemoryMailer) -> None:
    make_lead(engine.store)
    handoff_id = qualify(engine)
    assert engine.store.claim_handoff(handoff_id, "<dead@example.com>")  # a worker took it, then died
    asyncio.run(engine.deliver_handoffs(T0))
    assert mailer.sent == []  # too soon to call it dead
    engine.store.release_stale_handoffs(datetime.now(UTC) + timedelta(minutes=1))
    asyncio.run(engine.deliver_handoffs(T0))
    assert [m.recipient for m in mailer.sent] == ["sales@example.com"]


def test_an_unexpected_error_building_one_message_fails_that_send_alone(engine: Engine, mailer: MemoryMailer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(3):
        make_lead(engine.store, email=f"lead{n}@example.com")
    compose = engine.composer.compose

    def flaky(send, lead, items):  # type: ignore[no-untyped-def]
        if lead.email == "lead1@example.com":
            raise RuntimeError("boom")
        return compose(send, lead, items)

    monkeypatch.setattr(engine.composer, "compose", flaky)
    report = tick(engine)
    assert len(report.sent) == 2 and len(report.failed) == 1
    states = {engine.store.lead(send.lead_id).email: send.state for n in (1, 2, 3) for send in engine.store.sends_of(n)}
    assert states == {"lead0@example.com": SendState.SENT, "lead1@example.com": SendState.FAILED,
                      "lead2@example.com": SendState.SENT}


def test_no_result_without_a_score_reset_keeps_the_score_exact(engine: Engine) -> None:
    rules = engine.settings.scoring.model_copy(update={"reset_on_recycle": False, "threshold": 30})
    engine.settings = engine.settings.model_copy(update={"scoring": rules})
    make_lead(engine.store)
    recorded = engine.store.record(NewEvent(1, EventKind.EXTERNAL, T0, Credit(12, "form:1"), qualify=True), rules)
    assert recorded.handoff_id is not None
    lead = engine.store.decide(recorded.handoff_id, Outcome.NO_RESULT, T0, rules, engine.settings.program)
    assert (lead.cycle, lead.score) == (1, 12)


def test_a_run_of_more_leads_than_one_in_list_holds(engine: Engine, mailer: MemoryMailer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Leads are read by id in chunks: PostgreSQL's driver takes at most 65,535 parameters a statement."""
    monkeypatch.setattr(base, "IN_LIST", 3)
    refresh(engine)
    emails = [make_lead(engine.store, email=f"reader{n}@example.com", interests=["security"]).email for n in range(8)]
    first = tick(engine, 0)
    assert sorted(line.partition(":")[0] for line in first.enqueued) == sorted(emails)
    assert sorted(envelope.recipient for envelope in mailer.sent) == sorted(emails)
    assert len(tick(engine, 7).sent) == 8  # digests: each lead's interests read back
    for lead_id in engine.store.leads_by_id(range(1, 9)):
        confirmation, digest = engine.store.sends_of(lead_id)
        carried = engine.outbox.items([confirmation.id or 0, digest.id or 0])
        assert (len(carried[confirmation.id or 0]), len(carried[digest.id or 0])) == (0, 5)  # 7 security items


@pytest.mark.parametrize("serving", [False, True])
def test_a_tick_does_its_store_work_off_the_loop_only_where_the_loop_serves_tracking(
        engine: Engine, monkeypatch: pytest.MonkeyPatch, serving: bool) -> None:
    """`nurture run` ticks on the tracking server's loop: its rules must not hold up the server's answers.
    The plan is recorded in a thread of its own in either case, while the run delivers."""
    where: dict[str, int] = {}

    def noted(name: str) -> Any:
        original = getattr(Engine, name)

        def wrapper(self: Engine, *args: Any, **kwargs: Any) -> Any:
            where[name] = threading.get_ident()
            return original(self, *args, **kwargs)

        return wrapper

    for name in ("apply_rules", "enqueue_due"):
        monkeypatch.setattr(Engine, name, noted(name))
    make_lead(engine.store)
    engine.serving = serving

    async def tick() -> tuple[int, Report]:
        return threading.get_ident(), await engine.send_due(T0)

    loop_thread, report = asyncio.run(tick())
    assert len(report.sent) == 1
    assert (where["apply_rules"] != loop_thread, where["enqueue_due"] != loop_thread) == (serving, True)


def test_the_tracking_server_marks_its_engine_as_serving(engine: Engine) -> None:
    assert not engine.serving
    create_app(engine)
    assert engine.serving


def test_a_pass_plans_and_records_the_due_leads_a_page_at_a_time(engine: Engine, mailer: MemoryMailer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Confirmations, then digests, over several pages (3 leads a page here): each due lead once."""
    monkeypatch.setattr(nurture.engine, "PAGE", 3)
    refresh(engine)
    emails = [f"lead{n}@example.com" for n in range(7)]
    for email in emails:
        make_lead(engine.store, email=email)
    assert [line.split(":")[0] for line in asyncio.run(engine.send_due(T0, dry_run=True)).enqueued] == emails
    report = tick(engine)
    assert sorted(line.split(":")[0] for line in report.enqueued) == emails
    assert sorted(envelope.recipient for envelope in mailer.sent) == emails
    report = tick(engine, 7)
    assert sorted(line.split(":")[0] for line in report.enqueued) == emails and report.skipped == []
    assert [len(engine.store.sends_of(n)) for n in range(1, 8)] == [2] * 7
    assert engine.plan(T0 + WEEK) == []


def test_installations_in_two_schemas_of_one_database_never_share_a_lock(settings: Settings, store: Store) -> None:
    """An advisory lock belongs to the whole database: each is taken with its schema's name as well. Two
    workers of one installation take turns; one in another schema has turns of its own (before, only one
    of the two installations ran its scheduled jobs, and each waited out the other's plans)."""
    if store.is_sqlite:
        return  # no advisory locks: a SQLite file is an installation of its own
    from tests.conftest import postgres_schema

    same = Store(settings.database_url)
    with postgres_schema() as url:
        other = Store(url)
        try:
            for lock in Lock:
                with store.turn(lock) as first, same.turn(lock) as second, other.turn(lock) as elsewhere:
                    assert (first, second, elsewhere) == (True, False, True), lock.name
        finally:
            other.close()
            same.close()


def test_a_worker_that_finds_another_planning_delivers_what_is_queued(settings: Settings, engine: Engine,
                                                                      mailer: MemoryMailer,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL one worker plans at a time (Lock.PLAN): while another holds the turn, a pass reads no
    lead, says so, waits for the other to record what is due, then delivers it; with the turn free, it plans."""
    if engine.store.is_sqlite:
        return  # one writer at a time: every worker plans
    make_lead(engine.store, email="ada@example.com")
    make_lead(engine.store, email="bob@example.com")
    planner = Store(settings.database_url)
    try:
        with ThreadPoolExecutor(1) as pool, caplog.at_level(logging.INFO, logger="nurture.engine"):
            with planner.turn(Lock.PLAN) as planning:
                assert planning
                ticking = pool.submit(tick, engine)
                time.sleep(0.5)
                assert not ticking.done()  # it came first: the outbox is empty until the planner records
                engine.outbox.enqueue(engine.plan(T0)[0], T0)  # what the planning worker records
            report = ticking.result(timeout=30)
        assert [envelope.recipient for envelope in mailer.sent] == ["ada@example.com"] and report.enqueued == []
        assert "another worker is planning this pass" in caplog.text
        report = tick(engine)
        assert [envelope.recipient for envelope in mailer.sent] == ["ada@example.com", "bob@example.com"]
        assert report.enqueued == ["bob@example.com: confirmation (cycle 0, step 0)"]
    finally:
        planner.close()
