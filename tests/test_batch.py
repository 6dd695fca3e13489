"""Batches built ahead of the sender: in a forked process for a long run, in a thread otherwise."""

from __future__ import annotations

import asyncio
import threading

import pytest

from nurture import batch
from nurture.engine import Engine, Report
from nurture.mailer import MemoryMailer
from nurture.models import Lead, SendState, Suppression
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import T0, make_lead

LEADS = 23
BATCH = 5  # LEADS is more than two batches: built in a process


def many(store: Store) -> list[Lead]:
    return [make_lead(store, email=f"lead{n:02}@example.com") for n in range(LEADS)]


def small_batches(settings: Settings, store: Store, mailer: MemoryMailer) -> Engine:
    return Engine(settings.model_copy(update={"delivery": settings.delivery.model_copy(update={"batch_size": BATCH})}),
                  store, mailer)


@pytest.fixture
def workshops(monkeypatch: pytest.MonkeyPatch) -> list[batch.Workshop]:
    """Every Workshop a run opens, to see where its batches were built."""
    opened: list[batch.Workshop] = []
    original = batch.Workshop.__init__

    def spy(self: batch.Workshop, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(batch.Workshop, "__init__", spy)
    return opened


def test_messages_built_in_a_process_are_the_messages_built_here(settings: Settings, store: Store,
                                                                 workshops: list[batch.Workshop]) -> None:
    if threading.active_count() > 1:
        pytest.skip("another thread runs: batches are built in a thread")
    mailer = MemoryMailer()
    engine = small_batches(settings, store, mailer)
    leads = {lead.id or 0: lead for lead in many(store)}
    report = Report()
    engine.enqueue_due(T0, report)
    store.suppress(min(leads), Suppression.UNSUBSCRIBED, T0, settings.scoring)
    asyncio.run(engine.deliver(T0, report))
    assert [workshop.pool is not None for workshop in workshops] == [True]
    assert len(report.sent) == LEADS - 1 and len(mailer.sent) == LEADS - 1
    for envelope in mailer.sent:
        lead = next(lead for lead in leads.values() if lead.email == envelope.recipient)
        assert lead.id is not None
        [send] = store.sends_of(lead.id)
        assert send.state is SendState.SENT and send.message_id == envelope.message_id
        rebuilt, described = engine.compose(send, lead, [])
        assert rebuilt == envelope and send.subject == described["subject"] and send.links == described["links"]
    [refused] = store.sends_of(min(leads))
    assert refused.state is SendState.FAILED and refused.error == "lead is unsubscribed"


def test_with_another_thread_about_batches_are_built_in_a_thread(settings: Settings, store: Store,
                                                                 workshops: list[batch.Workshop]) -> None:
    mailer = MemoryMailer()
    engine = small_batches(settings, store, mailer)
    many(store)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        report = asyncio.run(engine.send_due(T0))
    finally:
        stop.set()
        other.join()
    assert [workshop.pool for workshop in workshops] == [None]
    assert len(report.sent) == LEADS and len({envelope.message_id for envelope in mailer.sent}) == LEADS
