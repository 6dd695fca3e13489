"""The schema's version: a new database is made at the newest revision, a database made by an earlier
release is refused with the command that upgrades it and then upgraded with its data, one made by a
newer release is refused."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Connection, text
from sqlmodel import SQLModel

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import EventKind, Outcome, Stage, Suppression
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings
from nurture.store import Store, schema
from nurture.store.base import journal_url
from nurture.store.schema import include_object
from tests.conftest import ROOT, SECRET, T0, _plain, make_lead

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RELEASES = {  # an earlier release, and what `nurture db upgrade` says of a database it made
    "225c8d7": f"the database, made before schema versions, was taken as revision {schema.BASELINE} and upgraded "
               f"to {schema.head()}",
    "7b22c53": f"the database was upgraded from revision 0001 to {schema.head()}",
}
BEHIND = {
    "225c8d7": "the database was made by a release of nurture from before schema versions",
    "7b22c53": f"the database's schema is at revision 0001, this release needs {schema.head()}",
}


def load_release(database_url: str, release: str = "225c8d7") -> None:
    """Fill the empty database at `database_url` with what `release` made (tests/fixtures)."""
    folder = FIXTURES / f"release-{release}"
    if database_url.startswith("sqlite"):
        for dump, url in (("sqlite.sql", database_url), ("sqlite-hits.sql", journal_url(database_url))):
            with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
                connection.executescript((folder / dump).read_text(encoding="utf-8"))
        return
    name = unquote(database_url).rsplit("search_path=", 1)[1]
    with psycopg.connect(_plain(database_url.split("?")[0]), autocommit=True) as connection:
        connection.execute((folder / "postgresql.sql").read_text(encoding="utf-8").replace("__SCHEMA__", name))


def add_lead(connection: Connection, lead_id: int = 1, cycle: int = 0) -> None:
    """A lead as a database at an earlier revision holds it (the columns every revision since 0010 has)."""
    connection.execute(text("INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, "
                            "country, customer, stage, cycle, cycle_started_at, score, created_at, tracking) VALUES "
                            "(:id, :email, '', '', '', '', '[]', 'en', '', false, 'MQL', :cycle, :t, 0, :t, true)"),
                       {"id": lead_id, "email": f"lead{lead_id}@example.com", "cycle": cycle, "t": T0})


def add_digest(connection: Connection, links: str = "[]") -> None:
    """Lead 1's first digest, sent, with its tracked links (JSON), as an earlier revision holds it."""
    connection.execute(text("INSERT INTO send (id, lead_id, cycle, step, template, state, message_id, subject, links, "
                            "attempts, created_at) VALUES (1, 1, 0, 1, 'digest', 'SENT', '', '', :links, 1, :t)"),
                       {"t": T0, "links": links})


def differences(store: Store) -> list[object]:
    """What separates the database's schema from the models' (the journal of hits aside)."""
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": include_object,
                                                               "compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def test_a_new_database_is_made_at_the_newest_revision(database_url: str) -> None:
    store = Store(database_url)
    try:
        store.create()
        assert schema.current(store.engine) == schema.head()
        assert differences(store) == []
        store.create()  # opened again: nothing to do
    finally:
        store.close()


def test_the_migrations_make_the_models_schema(database_url: str) -> None:
    store = Store(database_url)
    try:
        assert store.upgrade() == schema.Upgraded(None, schema.head())
        assert differences(store) == []
        store.create()
    finally:
        store.close()


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_a_database_of_an_earlier_release_is_refused_with_the_command_that_upgrades_it(
        database_url: str, settings: Settings, release: str) -> None:
    load_release(database_url, release)
    store = Store(database_url)
    try:
        with pytest.raises(schema.SchemaBehind, match=r"run `nurture db upgrade`"):
            store.create()
    finally:
        store.close()
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "leads", "list"],
                                env={"NURTURE_DATABASE_URL": database_url, "NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {BEHIND[release]}; run `nurture db upgrade` to bring it "
                                                  "up to date (its data is kept)"]


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_a_database_of_an_earlier_release_upgrades_with_its_data(database_url: str, settings: Settings,
                                                                  release: str) -> None:
    load_release(database_url, release)
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "db", "upgrade"],
                                env={"NURTURE_DATABASE_URL": database_url, "NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 0, result.output
    assert result.output == RELEASES[release] + "\n"
    store = Store(database_url)
    try:
        store.create()
        assert differences(store) == []
        leads = {lead.email: (lead.stage, lead.score, lead.cycle, lead.suppressed) for lead in store.leads()}
        assert leads == {"lead0@example.com": (Stage.MQL, 0, 1, None), "lead1@example.com": (Stage.MQL, 0, 0, None),
                         "lead2@example.com": (Stage.MQL, -25, 0, Suppression.UNSUBSCRIBED)}
        assert [event.kind for event in store.events_of(1)] == [EventKind.OPEN, EventKind.EXTERNAL]
        for lead in store.leads():  # mailed before double opt-in: taken as confirmed, and the record says so
            assert lead.id is not None and lead.confirmed_at == lead.created_at
            assert [c.how for c in store.consents_of(lead.id)] == ["before double opt-in (taken as confirmed)"]
        assert [handoff.outcome for handoff in store.handoffs_of(1)] == [Outcome.NO_RESULT]
        assert {send.state.value for lead_id in (1, 2, 3) for send in store.sends_of(lead_id)} == {"sent"}
        make_lead(store, email="new@example.com")  # life goes on
        report = asyncio.run(Engine(settings, store, MemoryMailer()).send_due(T0))
        assert report.failed == [] and [line.split(":")[0] for line in report.sent] == ["new@example.com"]
    finally:
        store.close()


def test_a_database_of_a_newer_release_is_refused(database_url: str) -> None:
    store = Store(database_url)
    try:
        store.create()
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
        with pytest.raises(schema.SchemaAhead, match=r"revision f00d, which this release of nurture does not know"):
            store.create()
        with pytest.raises(schema.SchemaAhead):
            store.upgrade()
    finally:
        store.close()


def test_the_journal_of_hits_carries_its_version(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nurture.db'}"
    load_release(url)  # its journal has no version: the schema of version 1
    store = Store(url)
    try:
        store.upgrade()
        hits = sqlite3.connect(tmp_path / "nurture.db-hits")
        assert hits.execute("PRAGMA user_version").fetchone() == (schema.JOURNAL_VERSION,)
        hits.execute("PRAGMA user_version = 99")
        hits.commit()
        hits.close()
        with pytest.raises(schema.SchemaAhead, match="journal of hits .* has version 99"):
            store.create()
    finally:
        store.close()


def test_events_judged_before_0011_are_marked_as_a_machines_by_their_reason(database_url: str) -> None:
    from alembic import command

    store = Store(database_url)
    try:
        with store.engine.begin() as connection:
            command.upgrade(schema.config(connection), "0010")
            add_lead(connection)
            reasons = [None, "HEAD request (prefetch)", "scanner user agent (Barracuda)", "already credited",
                       "lead is sql", "not counted, by admin", "click burst: 4 links in 1.2 s"]
            for number, reason in enumerate(reasons, start=1):
                connection.execute(text("INSERT INTO event (id, lead_id, cycle, kind, points, counted, reason, "
                                        "occurred_at) VALUES (:id, 1, 0, 'OPEN', 1, :counted, :reason, :t)"),
                                   {"id": number, "counted": reason is None, "reason": reason, "t": T0})
            command.upgrade(schema.config(connection), "head")
            marked = dict(connection.execute(text("SELECT reason, machine FROM event")).all())
        assert {reason for reason, machine in marked.items() if machine} == {
            "HEAD request (prefetch)", "scanner user agent (Barracuda)", "click burst: 4 links in 1.2 s"}
        assert differences(store) == []
    finally:
        store.close()


def test_engagement_is_counted_into_the_mails_and_leads_by_0012(database_url: str) -> None:
    from alembic import command

    store = Store(database_url)
    try:
        with store.engine.begin() as connection:
            command.upgrade(schema.config(connection), "0011")
            add_lead(connection)
            add_digest(connection)
            hits = [("OPEN", True, 1), ("OPEN", False, 2), ("OPEN", False, 3), ("CLICK", False, 4),
                    ("CLICK", True, 5), ("SENT", False, 6)]
            for number, (kind, machine, minute) in enumerate(hits, start=1):
                connection.execute(text("INSERT INTO event (id, lead_id, cycle, send_id, kind, points, counted, "
                                        "machine, occurred_at) VALUES (:id, 1, 0, 1, :kind, 0, true, :machine, :at)"),
                                   {"id": number, "kind": kind, "machine": machine,
                                    "at": T0 + timedelta(minutes=minute)})
            command.upgrade(schema.config(connection), "head")
        [send] = store.sends_of(1)
        assert (send.hits, send.machine_hits, send.clicks) == (5, 2, 1)
        assert (send.opened_at, send.clicked_at) == (T0 + timedelta(minutes=2), T0 + timedelta(minutes=4))
        assert store.lead(1).engaged_at == T0 + timedelta(minutes=2)
    finally:
        store.close()


def test_the_steps_of_each_leads_cycle_are_recorded_on_the_lead_by_0013(database_url: str) -> None:
    from alembic import command

    store = Store(database_url)
    try:
        with store.engine.begin() as connection:
            command.upgrade(schema.config(connection), "0012")
            for lead_id, cycle in ((1, 0), (2, 1), (3, 0)):
                add_lead(connection, lead_id, cycle)
            sends = [(1, 0, 0, 0), (1, 0, 1, 7), (1, 0, 2, 14),  # lead 1: its confirmation and two digests
                     (2, 0, 0, 0), (2, 0, 1, 7), (2, 0, 2, 14), (2, 0, 3, 21), (2, 1, 1, 40)]  # lead 2: recycled
            for number, (lead_id, cycle, step, day) in enumerate(sends, start=1):
                connection.execute(text("INSERT INTO send (id, lead_id, cycle, step, template, state, message_id, "
                                        "subject, links, attempts, created_at) VALUES (:id, :lead, :cycle, :step, "
                                        "'digest', 'SENT', '', '', '[]', 1, :at)"),
                                   {"id": number, "lead": lead_id, "cycle": cycle, "step": step,
                                    "at": T0 + timedelta(days=day)})
            command.upgrade(schema.config(connection), "head")
        found = {lead.id: (lead.last_step, lead.last_mailed_at, lead.due_at) for lead in store.leads()}
        assert found == {1: (2, T0 + timedelta(days=14), None), 2: (1, T0 + timedelta(days=40), None),
                         3: (None, None, None)}  # due_at is given by Store.restore_due, which knows the program
        assert differences(store) == []
    finally:
        store.close()


def test_clicks_stored_before_0019_are_given_their_links_address_and_tag(database_url: str) -> None:
    from alembic import command

    from nurture.report import build
    from nurture.settings import Scoring

    store = Store(database_url)
    links = ('[{"url": "https://example.com/pricing", "tag": "high-intent", "action": null, "points": null}, '
             '{"url": "https://example.com/call", "tag": null, "action": "callback", "points": null}]')
    try:
        with store.engine.begin() as connection:
            command.upgrade(schema.config(connection), "0018")
            add_lead(connection)
            add_digest(connection, links)
            clicks = [("CLICK", 0, None), ("CLICK", 1, "callback"), ("OPEN", None, None)]
            for number, (kind, link, action) in enumerate(clicks, start=1):
                connection.execute(text("INSERT INTO event (id, lead_id, cycle, send_id, kind, link, action, points, "
                                        "counted, machine, occurred_at) VALUES (:id, 1, 0, 1, :kind, :link, :action, "
                                        "0, true, false, :at)"),
                                   {"id": number, "kind": kind, "link": link, "action": action, "at": T0})
            command.upgrade(schema.config(connection), "head")
            found = connection.execute(text("SELECT url, tag FROM event ORDER BY id")).all()
        assert [tuple(row) for row in found] == [("https://example.com/pricing", "high-intent"),
                                                 ("https://example.com/call", None), (None, None)]
        with store.reader.connect() as connection:
            report = build(connection, Scoring())
        assert sorted((c.name, c.clicks) for c in report.tags) == [("callback", 1), ("high-intent", 1)]
        assert differences(store) == []
    finally:
        store.close()


def test_0024_leaves_a_sends_items_as_they_were_and_takes_their_extra_keys_away_and_back(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import inspect

    def keys(connection: Connection) -> set[str]:
        return {key["referred_table"] for key in inspect(connection).get_foreign_keys("senditem")}

    def indexes(connection: Connection) -> set[str]:
        return {index["name"] for index in inspect(connection).get_indexes("send")}

    store = Store(database_url)
    try:
        with store.engine.begin() as connection:
            command.upgrade(schema.config(connection), "0023")
            add_lead(connection)
            add_digest(connection)
            connection.execute(text("INSERT INTO feeditem (id, feed, guid, title, link, summary, published, "
                                    "fetched_at) VALUES (7, 'f', 'g', 't', 'https://example.com/', '', :at, :at)"),
                               {"at": T0})
            connection.execute(text("INSERT INTO senditem (send_id, lead_id, item_id, position) VALUES (1, 1, 7, 0)"))
            assert keys(connection) == {"send", "lead", "feeditem"} and "ix_send_lead_id" in indexes(connection)
            command.upgrade(schema.config(connection), "0024")
            assert keys(connection) == {"send"} and "ix_send_lead_id" not in indexes(connection)
            items = text("SELECT send_id, lead_id, item_id, position FROM senditem")
            assert [tuple(row) for row in connection.execute(items)] == [(1, 1, 7, 0)]
            command.downgrade(schema.config(connection), "0023")
            assert keys(connection) == {"send", "lead", "feeditem"} and "ix_send_lead_id" in indexes(connection)
            assert [tuple(row) for row in connection.execute(items)] == [(1, 1, 7, 0)]
            command.upgrade(schema.config(connection), "head")
        assert differences(store) == []
    finally:
        store.close()
