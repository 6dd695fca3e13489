"""The connection to the database, and what the store's callers hand it and get back."""


from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from nurture.models import (
    JOURNAL,
    Event,
    EventKind,
    Suppression,
)
from nurture.scoring import Credit

SUPPRESSION_EVENTS = {Suppression.UNSUBSCRIBED: EventKind.UNSUBSCRIBE, Suppression.BOUNCED: EventKind.BOUNCE,
                      Suppression.COMPLAINED: EventKind.COMPLAINT}
MQL_ONLY = (EventKind.OPEN, EventKind.CLICK, EventKind.SENT)  # earn nothing once a lead is with sales


@dataclass(frozen=True)
class Hit:
    """An event about to be recorded: what happened, and what the rules say it is worth."""

    lead_id: int
    kind: EventKind
    occurred_at: datetime
    credit: Credit
    send_id: int | None = None
    link: int | None = None
    action: str | None = None
    ignored: str | None = None  # why it earns nothing (a machine, say)
    qualify: bool = False  # a rule that sends the lead to sales at once (a contact form)
    method: str | None = None
    user_agent: str | None = None
    client: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Recorded:
    event: Event
    score: int
    handoff_id: int | None  # set when this event qualified the lead


def make_engine(url: str, busy_seconds: float = 30, reads_only: bool = False) -> Engine:
    """An engine. On SQLite every transaction takes the write lock at once (BEGIN IMMEDIATE), so that two
    writers never deadlock; `busy_seconds` is how long it waits for another's. An engine for `reads_only`
    takes no lock: in WAL mode its reads go on while another connection writes."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_seconds})
        sa_event.listen(engine, "connect", _sqlite_connect)
        begin = "BEGIN" if reads_only else "BEGIN IMMEDIATE"
        sa_event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's begin hook emits BEGIN IMMEDIATE
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def journal_url(url: str) -> str:
    """Where the tracking server's journal of hits lives: on SQLite a file of its own beside the database,
    so that storing a hit never waits for a judge's write lock; elsewhere the database itself."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    return parsed.set(database=f"{parsed.database}-hits").render_as_string(hide_password=False)


class Base:
    """The connection to the database: sessions and the schema."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        journal = journal_url(url)
        self.journal_engine = self.engine if journal == url else make_engine(journal)
        self.journal_reader = self.engine if journal == url else make_engine(journal, reads_only=True)

    def create(self) -> None:
        SQLModel.metadata.create_all(self.engine)
        JOURNAL.create_all(self.journal_engine)

    def close(self) -> None:
        for engine in (self.engine, self.journal_engine, self.journal_reader):
            engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session
