"""The connection to the database, and what the store's callers hand it and get back."""


from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from nurture.models import (
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


def make_engine(url: str, busy_seconds: float = 30) -> Engine:
    """An engine; on SQLite, `busy_seconds` is how long a write waits for another's write lock."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_seconds})
        sa_event.listen(engine, "connect", _sqlite_connect)
        sa_event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's begin hook emits BEGIN IMMEDIATE
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Base:
    """The connection to the database: sessions and the schema."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)

    def create(self) -> None:
        SQLModel.metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session
