"""The figures SQLite keeps a day at a time for each step (nurture.store.figures) against the mails they
count: after every kind of change a mail or a notice can go through, the report read off the figures is
the report read off the mails."""

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
from nurture.report.sql import Window
from nurture.store import Store, figures, schema
from tests.conftest import make_lead

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
STATES = list(SendState)
NOTICE_KINDS = (EventKind.UNSUBSCRIBE, EventKind.BOUNCE, EventKind.COMPLAINT, EventKind.OPEN)
WINDOWS = (Window(), Window(T0 + timedelta(days=2)), Window(None, T0 + timedelta(days=3)),
           Window(T0 + timedelta(days=1), T0 + timedelta(days=4)))
MOMENT = Send.__table__.c.created_at.type  # type: ignore[attr-defined]
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


def moment(rng: random.Random) -> datetime:
    return T0 + timedelta(days=rng.randrange(5), hours=rng.randrange(24), minutes=rng.randrange(60))


def both(connection: Connection) -> None:
    """The report of each window, off the figures and off the mails: the same."""
    for window in WINDOWS:
        assert steps(connection, window) == live_steps(connection, window), window


class Mails:
    """Random changes of mails and notices, as any part of nurture (or an operator's SQL) may make them."""

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

    def step(self) -> None:
        choices = [self.add_send] * 3
        if self.sends:
            choices += [self.change_send] * 4 + [self.add_notice] * 2 + [self.delete_send]
        if self.events:
            choices += [self.change_notice, self.delete_notice]
        self.rng.choice(choices)()


@pytest.mark.parametrize("seed", range(4))
def test_the_figures_follow_every_change_of_a_mail_and_its_notices(sqlite_store: Store, seed: int) -> None:
    leads = [make_lead(sqlite_store, email=f"lead{n}@example.com").id or 0 for n in range(5)]
    rng = random.Random(seed)
    with sqlite_store.engine.begin() as connection:
        mails = Mails(connection, leads, rng)
        for number in range(300):
            mails.step()
            if number % 10 == 0:
                both(connection)
        both(connection)
        kept = connection.execute(text("SELECT * FROM step_day WHERE sent <> 0 ORDER BY day, step, template")).all()
        assert not connection.execute(text("SELECT 1 FROM step_day WHERE sent = 0 AND (bounced <> 0 OR opened <> 0 OR "
                                           "clicks <> 0 OR unsubscribed <> 0 OR hits <> 0)")).all()
        figures.count_again(connection)
        assert connection.execute(text("SELECT * FROM step_day ORDER BY day, step, template")).all() == kept
        assert kept, "the changes left no mail that counts: the test proves nothing"


def test_a_late_bounce_an_unsubscribe_and_their_repeats_count_once(sqlite_store: Store) -> None:
    lead = make_lead(sqlite_store).id
    with sqlite_store.engine.begin() as connection:
        connection.execute(sql(
            "INSERT INTO send (id, lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
            "created_at, sent_at, unsettled, clicks, hits, machine_hits) VALUES (1, :lead, 0, 1, 'digest', 'SENT', '', "
            "'', '[]', 1, :at, :at, 0, 0, 0, 0)"), {"lead": lead, "at": T0})
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
            connection.execute(sql(
                "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
                "created_at, sent_at, unsettled, clicks, hits, machine_hits) VALUES (:lead, :cycle, 1, 'digest', "
                "'SENT', '', '', '[]', 1, :at, :at, 0, 0, 0, 0)"),
                {"lead": lead, "cycle": number, "at": T0 + timedelta(hours=hours)})
        assert not PARTIAL.whole_days
        [step] = steps(connection, PARTIAL)
        assert step.sent == 2
        assert [s.sent for s in steps(connection, Window(T0 + timedelta(days=1), T0 + timedelta(days=4)))] == [3]


def triggers(connection: Connection) -> set[str]:
    return {name for (name,) in connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))}


def test_a_new_database_has_the_triggers_an_upgraded_one_has(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as connection:
        assert triggers(connection) == set(figures.TRIGGERS)


def test_mails_stored_before_0020_are_counted_by_it(tmp_path: Path) -> None:
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
            assert triggers(connection) == set(figures.TRIGGERS)
            command.downgrade(schema.config(connection), "0019")
            assert triggers(connection) == set()
            assert not connection.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'step_day'")).all()
    finally:
        store.close()
