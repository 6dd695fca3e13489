"""The figures SQLite keeps a day at a time (nurture.store.figures) against the rows they count: after
every kind of change a mail, a notice, a lead or a hand-off can go through, the report read off the
figures is the report read off the rows."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, TextClause, bindparam, text

from nurture.models import EventKind, Send, SendState
from nurture.report.engagement import live_steps, steps
from nurture.report.funnel import live_stages, stages
from nurture.report.sql import Window
from nurture.store import Store, figures, schema
from nurture.store.figures import cohorts as cohorts_kept
from nurture.store.figures import steps as steps_kept
from tests.conftest import make_lead

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
STATES = list(SendState)
NOTICE_KINDS = (EventKind.UNSUBSCRIBE, EventKind.BOUNCE, EventKind.COMPLAINT, EventKind.OPEN)
WINDOWS = (Window(), Window(T0 + timedelta(days=2)), Window(None, T0 + timedelta(days=3)),
           Window(T0 + timedelta(days=1), T0 + timedelta(days=4)))
MOMENT = Send.__table__.c.created_at.type  # type: ignore[attr-defined]
KEPT = {"step_day": "sent", "lead_day": "leads"}  # each table of figures, and what every row of it counts
FIGURES = {"step_day": steps_kept.FIGURES, "lead_day": cohorts_kept.FIGURES}
PARTIAL = Window(T0 + timedelta(days=1, hours=6), T0 + timedelta(days=3, hours=18))  # ends within days


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'nurture.db'}")
    store.create()
    yield store
    store.close()


def sql(statement: str) -> TextClause:
    """`statement` with its moments (:at, :sent, :t) bound as nurture stores them."""
    return text(statement).bindparams(*(bindparam(name, type_=MOMENT) for name in ("at", "sent", "t")
                                        if re.search(rf":{name}\b", statement)))


def add_digest(connection: Connection, lead: int | None, at: datetime, cycle: int = 0, then: str = "") -> None:
    """A first digest of `lead` that went out at `at` (`then`: what the INSERT does on a conflict)."""
    connection.execute(sql(
        "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, created_at, "
        "sent_at, unsettled, clicks, hits, machine_hits) VALUES (:lead, :cycle, 1, 'digest', 'SENT', '', '', '[]', 1, "
        f":at, :at, 0, 0, 0, 0) {then}"), {"lead": lead, "cycle": cycle, "at": at})


def moment(rng: random.Random) -> datetime:
    return T0 + timedelta(days=rng.randrange(5), hours=rng.randrange(24), minutes=rng.randrange(60))


def both(connection: Connection) -> None:
    """The report of each window, off the figures and off the rows: the same."""
    for window in WINDOWS:
        assert steps(connection, window) == live_steps(connection, window), window
        for period in ("week", "month"):
            assert stages(connection, window, "cohort", period) == live_stages(connection, window, "cohort", period)


class Changes:
    """Random changes of mails, notices, leads and hand-offs, as any part of nurture (or an operator's SQL)
    may make them."""

    def __init__(self, connection: Connection, leads: list[int], rng: random.Random):
        self.connection, self.leads, self.rng = connection, leads, rng
        self.sends: list[int] = []
        self.events: list[int] = []
        self.made = 0  # sends inserted: each a cycle of its own

    def run(self, statement: str, **params: object) -> None:
        self.connection.execute(sql(statement), params)

    def add_send(self) -> None:
        state = self.rng.choice(STATES)
        at = moment(self.rng)
        sent = at if state is SendState.SENT or self.rng.random() < 0.2 else None
        self.made += 1
        cursor = self.connection.execute(sql(
            "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
            "created_at, sent_at, unsettled, clicks, hits, machine_hits) VALUES (:lead, :cycle, :step, :template, "
            ":state, '', '', '[]', 0, :at, :sent, 0, :clicks, :hits, :machine)"),
            {"lead": self.rng.choice(self.leads), "cycle": self.made, "step": self.rng.randrange(3),
             "template": self.rng.choice(("digest", "confirmation")), "state": state.name, "at": at, "sent": sent,
             "clicks": self.rng.randrange(3), "hits": self.rng.randrange(5), "machine": self.rng.randrange(2)})
        self.sends.append(int(cursor.lastrowid or 0))

    def change_send(self) -> None:
        send = self.rng.choice(self.sends)
        change = self.rng.randrange(5)
        if change == 0:
            state = self.rng.choice(STATES)
            self.run("UPDATE send SET state = :state, sent_at = CASE WHEN :state = 'SENT' THEN :at ELSE sent_at END "
                     "WHERE id = :id", state=state.name, at=moment(self.rng), id=send)
        elif change == 1:  # the judge: a person's first open, a click, machines' hits
            self.run("UPDATE send SET opened_at = coalesce(opened_at, :at), hits = hits + 2, "
                     "machine_hits = machine_hits + 1 WHERE id = :id", at=moment(self.rng), id=send)
        elif change == 2:
            self.run("UPDATE send SET clicked_at = coalesce(clicked_at, :at), clicks = clicks + 1, hits = hits + 1 "
                     "WHERE id = :id", at=moment(self.rng), id=send)
        elif change == 3:  # a recount: everything at once, to anything
            self.run("UPDATE send SET opened_at = NULL, clicked_at = NULL, clicks = 0, hits = :hits, machine_hits = "
                     ":hits WHERE id = :id", hits=self.rng.randrange(3), id=send)
        else:  # moved to another day, or step
            self.run("UPDATE send SET sent_at = :at, step = step + 1 WHERE id = :id", at=moment(self.rng), id=send)

    def add_notice(self) -> None:
        send = self.rng.choice(self.sends)
        cursor = self.connection.execute(sql(
            "INSERT INTO event (lead_id, cycle, send_id, kind, points, counted, machine, occurred_at) "
            "SELECT lead_id, cycle, id, :kind, 0, 1, 0, :at FROM send WHERE id = :id"),
            {"kind": self.rng.choice(NOTICE_KINDS).name, "at": moment(self.rng), "id": send})
        self.events.append(int(cursor.lastrowid or 0))

    def change_notice(self) -> None:
        event = self.rng.choice(self.events)
        if self.rng.random() < 0.5:
            self.run("UPDATE event SET kind = :kind WHERE id = :id", kind=self.rng.choice(NOTICE_KINDS).name, id=event)
        else:
            self.run("UPDATE event SET send_id = :send WHERE id = :id", send=self.rng.choice(self.sends), id=event)

    def delete_notice(self) -> None:
        event = self.events.pop(self.rng.randrange(len(self.events)))
        self.run("DELETE FROM event WHERE id = :id", id=event)

    def delete_send(self) -> None:
        send = self.sends.pop(self.rng.randrange(len(self.sends)))
        self.run("DELETE FROM event WHERE send_id = :id", id=send)
        self.events = [id_ for (id_,) in self.connection.execute(text("SELECT id FROM event"))]
        self.run("DELETE FROM send WHERE id = :id", id=send)

    def add_lead(self) -> None:
        cursor = self.connection.execute(sql(
            "INSERT INTO lead (email, first_name, last_name, company, industry, interests, locale, country, customer, "
            "stage, cycle, cycle_started_at, score, created_at, confirmed_at, engaged_at, tracking) VALUES (:email, "
            "'', '', '', '', '[]', 'en', '', false, 'MQL', 0, :at, 0, :at, :sent, :t, true)"),
            {"email": f"new{self.rng.random()}@example.com", "at": moment(self.rng),
             "sent": moment(self.rng) if self.rng.random() < 0.7 else None,
             "t": moment(self.rng) if self.rng.random() < 0.4 else None})
        self.leads.append(int(cursor.lastrowid or 0))

    def change_lead(self) -> None:
        lead, column = self.rng.choice(self.leads), self.rng.choice(("created_at", "confirmed_at", "engaged_at"))
        at = None if column != "created_at" and self.rng.random() < 0.3 else moment(self.rng)
        self.run(f"UPDATE lead SET {column} = :at WHERE id = :id", at=at, id=lead)

    def add_handoff(self) -> None:
        self.made += 1
        self.run("INSERT INTO handoff (lead_id, cycle, score, state, outcome, message_id, created_at, owner_name, "
                 "owner_email) VALUES (:lead, :cycle, 12, 'SENT', :outcome, '', :at, '', '')",
                 lead=self.rng.choice(self.leads), cycle=self.made, outcome=self.outcome(),
                 at=moment(self.rng) + timedelta(days=self.rng.choice((0, 100, 200))))

    def change_handoff(self) -> None:
        handoffs = [id_ for (id_,) in self.connection.execute(text("SELECT id FROM handoff"))]
        if not handoffs:
            return
        handoff, change = self.rng.choice(handoffs), self.rng.randrange(4)
        if change == 0:
            self.run("UPDATE handoff SET outcome = :outcome WHERE id = :id", outcome=self.outcome(), id=handoff)
        elif change == 1:
            self.run("UPDATE handoff SET created_at = :at WHERE id = :id", at=moment(self.rng), id=handoff)
        elif change == 2:
            self.run("UPDATE handoff SET lead_id = :lead WHERE id = :id", lead=self.rng.choice(self.leads), id=handoff)
        else:
            self.run("DELETE FROM handoff WHERE id = :id", id=handoff)

    def move_send(self) -> None:
        self.run("UPDATE send SET lead_id = :lead WHERE id = :id", lead=self.rng.choice(self.leads),
                 id=self.rng.choice(self.sends))

    def delete_lead(self) -> None:
        """A lead gone with everything of it (nurture erases, an operator may delete)."""
        if len(self.leads) <= 5:  # a few are kept, with their mails: something still counts at the end
            return
        lead = self.leads.pop(self.rng.randrange(len(self.leads)))
        mails = "SELECT id FROM send WHERE lead_id = :id"
        for statement in (f"DELETE FROM event WHERE lead_id = :id OR send_id IN ({mails})",
                          "DELETE FROM senditem WHERE lead_id = :id", "DELETE FROM send WHERE lead_id = :id",
                          "DELETE FROM handoff WHERE lead_id = :id", "DELETE FROM consent WHERE lead_id = :id",
                          "DELETE FROM lead WHERE id = :id"):
            self.run(statement, id=lead)
        self.sends = [id_ for (id_,) in self.connection.execute(text("SELECT id FROM send"))]
        self.events = [id_ for (id_,) in self.connection.execute(text("SELECT id FROM event"))]

    def outcome(self) -> str | None:
        return self.rng.choice((None, "WON", "LOST", "NO_RESULT", "NOT_A_FIT"))

    def step(self) -> None:
        choices = [self.add_send] * 3 + [self.add_lead, self.change_lead, self.add_handoff, self.change_handoff,
                                         self.delete_lead]
        if self.sends:
            choices += [self.change_send] * 4 + [self.add_notice] * 2 + [self.delete_send, self.move_send]
        if self.events:
            choices += [self.change_notice, self.delete_notice]
        self.rng.choice(choices)()


@pytest.mark.parametrize("seed", range(4))
def test_the_figures_follow_every_change_of_what_they_count(sqlite_store: Store, seed: int) -> None:
    leads = [make_lead(sqlite_store, email=f"lead{n}@example.com").id or 0 for n in range(5)]
    rng = random.Random(seed)
    with sqlite_store.engine.begin() as connection:
        changes = Changes(connection, leads, rng)
        counted = set()  # the tables that counted something at a check
        for number in range(300):
            changes.step()
            if number % 10 == 0:
                both(connection)
                counted |= {table for table, whole in KEPT.items()
                            if connection.execute(text(f"SELECT 1 FROM {table} WHERE {whole} <> 0")).first()}
        both(connection)
        kept = {table: connection.execute(text(f"SELECT * FROM {table} WHERE {whole} <> 0 ORDER BY 1, 2, 3")).all()
                for table, whole in KEPT.items()}
        for table, whole in KEPT.items():  # a row that counts nothing any more counts nothing at all
            counting = " OR ".join(f"{name} <> 0" for name in FIGURES[table])
            assert not connection.execute(text(f"SELECT * FROM {table} WHERE {whole} = 0 AND ({counting})")).all()
        figures.count_again(connection)
        assert {table: connection.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3")).all()
                for table in KEPT} == kept
        assert counted == set(KEPT), "nothing counted at the checks: the test proves nothing"


def test_a_late_bounce_an_unsubscribe_and_their_repeats_count_once(sqlite_store: Store) -> None:
    lead = make_lead(sqlite_store).id
    with sqlite_store.engine.begin() as connection:
        add_digest(connection, lead, T0)  # send 1
        for kind in ("BOUNCE", "BOUNCE", "UNSUBSCRIBE", "UNSUBSCRIBE", "COMPLAINT"):
            connection.execute(sql("INSERT INTO event (lead_id, cycle, send_id, kind, points, counted, machine, "
                                    "occurred_at) VALUES (:lead, 0, 1, :kind, 0, 1, 0, :at)"),
                               {"lead": lead, "kind": kind, "at": T0})
        connection.execute(text("UPDATE send SET state = 'BOUNCED' WHERE id = 1"))  # the bounce processed
        [step] = steps(connection, Window())
        assert (step.sent, step.bounced, step.unsubscribed) == (1, 1, 1)
        assert steps(connection, Window()) == live_steps(connection, Window())


def test_a_window_within_days_reads_the_mails(sqlite_store: Store) -> None:
    lead = make_lead(sqlite_store).id
    with sqlite_store.engine.begin() as connection:
        for number, hours in enumerate((29, 31, 55)):  # day 1 06:00 is the window's start: the first is out
            add_digest(connection, lead, T0 + timedelta(hours=hours), cycle=number)
        assert not PARTIAL.whole_days
        [step] = steps(connection, PARTIAL)
        assert step.sent == 2
        assert [s.sent for s in steps(connection, Window(T0 + timedelta(days=1), T0 + timedelta(days=4)))] == [3]


def triggers(connection: Connection) -> set[str]:
    return {name for (name,) in connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}


def test_a_new_database_has_the_triggers_an_upgraded_one_has(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as connection:
        assert triggers(connection) == set(figures.TRIGGERS)


def test_mails_and_leads_stored_before_0020_are_counted_by_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'earlier.db'}")
    try:
        with store.engine.begin() as connection:
            command.upgrade(schema.config(connection), "0019")
            connection.execute(sql(
                "INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
                "customer, stage, cycle, cycle_started_at, score, created_at, tracking) VALUES (1, 'a@example.com', "
                "'', '', '', '', '[]', 'en', '', false, 'MQL', 0, :t, 0, :t, true)"), {"t": T0})
            for number, state in enumerate(("SENT", "BOUNCED", "QUEUED", "SENT")):
                connection.execute(sql(
                    "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
                    "created_at, sent_at, unsettled, clicks, hits, machine_hits, opened_at) VALUES (1, :n, 1, "
                    "'digest', :state, '', '', '[]', 1, :t, :t, false, 1, 3, 1, :t)"),
                    {"n": number, "state": state, "t": T0 + timedelta(days=number)})
            command.upgrade(schema.config(connection), "head")
            [step] = steps(connection, Window())
            assert (step.sent, step.bounced, step.opened, step.hits) == (3, 1, 3, 9)
            assert steps(connection, Window()) == live_steps(connection, Window())
            [cohort] = stages(connection, Window(), "cohort")
            assert (cohort.leads, cohort.mql) == (1, 1)
            assert triggers(connection) == set(figures.TRIGGERS)
            command.downgrade(schema.config(connection), "0019")
            assert triggers(connection) == set()
            tables = text("SELECT 1 FROM sqlite_master WHERE name IN ('step_day', 'lead_day')")
            assert not connection.execute(tables).all()
    finally:
        store.close()


def test_a_skipped_insert_takes_nothing_away(sqlite_store: Store) -> None:
    """A hand-off or first digest that its unique key skips (ON CONFLICT DO NOTHING) changes no count."""
    lead = make_lead(sqlite_store).id
    with sqlite_store.engine.begin() as connection:
        handoff = ("INSERT INTO handoff (lead_id, cycle, score, state, outcome, message_id, created_at, owner_name, "
                   "owner_email) VALUES (:lead, 0, 12, 'SENT', 'WON', '', :at, '', '') ON CONFLICT DO NOTHING")
        for _ in range(2):
            connection.execute(sql(handoff), {"lead": lead, "at": T0})
            add_digest(connection, lead, T0, then="ON CONFLICT DO NOTHING")
        [cohort] = stages(connection, Window(), "cohort")
        assert (cohort.leads, cohort.mql, cohort.sql, cohort.won) == (1, 1, 1, 1)
        assert stages(connection, Window(), "cohort") == live_stages(connection, Window(), "cohort")


def test_a_migration_rebuilds_a_watched_table_inside_rebuilding(sqlite_store: Store) -> None:
    """SQLite refuses to drop a table that triggers name: Alembic's batch mode (a copy of the table, the old
    one dropped, the copy renamed) runs inside figures.rebuilding, which keeps the figures whole."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    lead = make_lead(sqlite_store).id
    with sqlite_store.engine.begin() as connection:
        add_digest(connection, lead, T0)
        operations = Operations(MigrationContext.configure(connection))
        with pytest.raises(Exception, match="step_day|lead_day"):  # noqa: PT011 - SQLite's own error
            with connection.begin_nested(), operations.batch_alter_table("send", recreate="always"):
                pass
        with figures.rebuilding(connection), operations.batch_alter_table("send", recreate="always"):
            pass
        assert triggers(connection) == set(figures.TRIGGERS)
        both(connection)
        assert [step.sent for step in steps(connection, Window())] == [1]


def test_nurture_db_recount_counts_the_figures_anew(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from nurture.cli import main
    from tests.conftest import ROOT, SECRET

    url = f"sqlite:///{tmp_path / 'nurture.db'}"
    store = Store(url)
    store.create()
    lead = make_lead(store).id
    with store.engine.begin() as connection:
        figures.drop_triggers(connection)  # figures gone stale, as they would without their triggers
        add_digest(connection, lead, T0)
        figures.create_triggers(connection)
        assert steps(connection, Window()) == []
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "db", "recount"],
                                env={"NURTURE_DATABASE_URL": url, "NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 0, result.output
    assert "counted anew" in result.output
    with store.engine.connect() as connection:
        assert [step.sent for step in steps(connection, Window())] == [1]
        both(connection)
    store.close()
