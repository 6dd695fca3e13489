"""Which node runs the scheduled jobs, and that the jobs do nothing elsewhere."""

from __future__ import annotations

import asyncio

from nurture.engine import Engine
from nurture.scheduler import Leadership, send_job
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import make_lead


def test_one_node_leads_and_another_takes_over(settings: Settings, store: Store) -> None:
    other = Store(settings.database_url)
    first, second = Leadership(store), Leadership(other)
    try:
        assert first.held()
        if store.engine.dialect.name == "postgresql":
            assert not second.held()
            assert first.held()  # still the holder
            first.release()
            assert second.held()
            assert not first.held()
        else:
            assert second.held()  # SQLite runs on one machine: no election
    finally:
        first.release()
        second.release()
        other.close()


def test_the_send_job_runs_only_where_the_lock_is_held(settings: Settings, store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        return
    make_lead(store)
    other = Store(settings.database_url)
    holder, follower = Leadership(other), Leadership(store)
    mailer = MemoryMailer()
    try:
        assert holder.held()
        asyncio.run(send_job(Engine(settings, store, mailer), follower))
        assert mailer.sent == []
        holder.release()
        asyncio.run(send_job(Engine(settings, store, mailer), follower))
        assert [m.recipient for m in mailer.sent] == ["ada@example.com"]
    finally:
        holder.release()
        follower.release()
        other.close()


def test_the_leader_holds_up_no_process_that_opens_the_database(settings: Settings, store: Store) -> None:
    """Every command checks the schema as it opens the database (Store.create) and `nurture db upgrade`
    upgrades it, each under the schema's lock: neither waits for the node that leads, whose lock once had
    the schema's key (they waited forever; here the wait is cut at 2 s)."""
    if store.engine.dialect.name != "postgresql":
        return
    leader = Leadership(store)
    impatient = Store(settings.database_url + "%20-clock_timeout%3D2000")  # a wait for a lock fails after 2 s
    try:
        assert leader.held()
        impatient.create()
        assert impatient.upgrade().now == impatient.upgrade().was
    finally:
        leader.release()
        impatient.close()
