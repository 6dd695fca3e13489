"""The outbox: every send is recorded before delivery, claimed by one worker, and finished with its result.

    queued -> sending -> sent
                      -> deferred -> sending ...   (a temporary failure; tried again at retry_at)
                      -> failed                    (too many attempts, or a message that cannot be built)
                      -> bounced                   (a 5xx reply: the lead is suppressed)

A claim marks sends `sending` with the worker's name and the time; once their messages are built, the
worker stores what each carries (`describe`: Message-ID, subject, links) before any of them goes out, so
a click on a link finds it at once. A worker that dies leaves them so:
on the same host a dead process's claims are taken back at once, elsewhere when the lease runs out.
Claims use `FOR UPDATE SKIP LOCKED` on PostgreSQL, so many workers share one outbox. Results are
stored in group commits on PostgreSQL; on SQLite a run logs them first (nurture.send.resultlog), and they
reach the table a batch at a time (`apply_log`).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from nurture.models import EventKind, FeedItem, ResultLogMark, Send, SendItem, SendState, Suppression
from nurture.program import Due
from nurture.score import rules as scoring
from nurture.send import resultlog
from nurture.settings import Delivery, Scoring
from nurture.store import NewEvent, Store

_SENDS = Send.__table__  # type: ignore[attr-defined]
HELD = update(_SENDS).where(  # executemany, the columns set named by the rows: only while this worker holds the claim
    _SENDS.c.id == bindparam("send_id"), _SENDS.c.claimed_by == bindparam("worker"))

ITEMS = (  # built once: SQLAlchemy keys its statement cache on the statement, which costs as much as the query
    select(SendItem.send_id, SendItem.item_id).where(col(SendItem.send_id).in_(bindparam("send_ids", expanding=True)))
    .order_by(col(SendItem.send_id), col(SendItem.position)))
FEED_ITEMS = select(FeedItem).where(col(FeedItem.id).in_(bindparam("item_ids", expanding=True)))

_MARKS = ResultLogMark.__table__  # type: ignore[attr-defined]
LIVE = timedelta(minutes=10)  # a run whose clock is this close to the wall clock is live


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class ClaimedSend:
    """A claimed send as its delivery needs it: plain data, cheap to hand to another process (an ORM
    instance pickles its whole mapper state)."""

    id: int
    lead_id: int
    step: int
    template: str
    attempts: int
    created_at: datetime


CLAIMED = [_SENDS.c[name] for name in ClaimedSend.__dataclass_fields__]  # what a claim hands back, in order


@dataclass(frozen=True)
class Result:
    """How one delivery attempt ended."""

    send: Send | ClaimedSend
    state: SendState  # sent, deferred, failed, bounced; queued gives the claim back untried
    error: str | None = None
    at: datetime | None = None  # the wall-clock time the server took it


@dataclass(frozen=True)
class Finished:
    """A result as the outbox stores it: the row HELD writes, and what its send leads to."""

    row: dict[str, Any]
    lead_id: int
    step: int

    @property
    def follows(self) -> bool:
        """A sent digest books its cost; a bounce suppresses its lead."""
        state = self.row["state"]
        return (state is SendState.SENT and self.step > 0) or state is SendState.BOUNCED


class Outbox:
    def __init__(self, store: Store, worker: str | None = None):
        self.store = store
        self.worker = worker or worker_name()
        self.clock = store.clock

    def enqueue(self, due: Due, now: datetime, item_ids: Sequence[int] = ()) -> bool:
        """Record one queued send with its items; False when this step, or an item, reached the lead before."""
        return self.enqueue_many([(due, item_ids)], now)[0]

    def enqueue_many(self, steps: Sequence[tuple[Due, Sequence[int]]], now: datetime) -> list[bool]:
        """Record many queued sends, and their items, in one transaction; False for a step already recorded.

        Items a lead was already sent are left out (a race between two enqueuers is the only way to
        meet one, since the items were chosen among the new ones).
        """
        if not steps:
            return []
        with self.store.session() as session:
            rows = [dict(lead_id=due.lead_id, cycle=due.cycle, step=due.step, template=due.template)
                    for due, _ in steps]
            statement = _insert(session, _SENDS).values(  # the same for every row: bound once, not per row
                state=SendState.QUEUED, links=[], created_at=now, attempts=0, message_id="", subject="",
            ).on_conflict_do_nothing(index_elements=["lead_id", "cycle", "step"])
            inserted = session.connection().execute(statement.returning(_SENDS.c.id, _SENDS.c.lead_id), rows).all()
            send_of = {lead_id: send_id for send_id, lead_id in inserted}
            items = [{"send_id": send_of[due.lead_id], "lead_id": due.lead_id, "item_id": item_id, "position": n}
                     for due, item_ids in steps if due.lead_id in send_of for n, item_id in enumerate(item_ids)]
            if items:
                statement = _insert(session, SendItem.__table__)  # type: ignore[attr-defined]
                session.connection().execute(statement.on_conflict_do_nothing(index_elements=["lead_id", "item_id"]),
                                             items)
        return [due.lead_id in send_of for due, _ in steps]

    def reclaim_orphans(self, rules: Scoring) -> int:
        """Give back the claims of runs on this host that are over: whose process is gone, or whose result
        log no run holds (its results are stored first); return how many."""
        over = self._conclude_abandoned(rules)
        with self.store.session() as session:
            owners = session.exec(select(Send.claimed_by).where(Send.state == SendState.SENDING).distinct()).all()
            dead = [owner for owner in owners if owner and owner != self.worker and (owner in over or _gone(owner))]
            if not dead:
                return 0
            result = session.exec(update(Send).where(  # type: ignore[call-overload]
                col(Send.state) == SendState.SENDING, col(Send.claimed_by).in_(dead),
            ).values(state=SendState.QUEUED, claimed_by=None, claimed_at=None))
            return int(result.rowcount)

    def claim(self, limit: int, now: datetime, lease_seconds: float) -> list[ClaimedSend]:
        """Take up to `limit` sends that are due for delivery (at program time `now`): queued, deferred and due,
        or abandoned (leases run on the wall clock, whatever time the program runs at)."""
        wall = self.clock()
        expired = wall - timedelta(seconds=lease_seconds)
        claimable = or_(
            col(Send.state) == SendState.QUEUED,
            (col(Send.state) == SendState.DEFERRED) & (col(Send.retry_at) <= now),
            (col(Send.state) == SendState.SENDING) & (col(Send.claimed_at) < expired),
        )
        with self.store.session() as session:
            ids = list(session.exec(select(Send.id).where(claimable).order_by(col(Send.id)).limit(limit)
                                    .with_for_update(skip_locked=True)).all())
            if not ids:
                return []
            rows = session.connection().execute(update(_SENDS).where(_SENDS.c.id.in_(ids)).values(
                state=SendState.SENDING, claimed_by=self.worker, claimed_at=wall).returning(*CLAIMED)).all()
        # made into ClaimedSends after the commit: on SQLite every other writer (the sender's results) waits meanwhile
        claimed = (ClaimedSend(*row) for row in rows)
        return sorted(claimed, key=lambda send: send.id)

    def _conclude_abandoned(self, rules: Scoring) -> set[str]:
        """Store and remove the logs of runs on this host that ended or died; return their workers."""
        folder = resultlog.folder_for(self.store.url)
        over = set()
        for path in resultlog.logs(folder) if folder else []:
            with resultlog.abandoned(path) as free:
                if free:
                    over.add(self.conclude_log(path, rules))
        return over

    def release(self) -> int:
        """Give back every claim this worker still holds; return how many."""
        with self.store.engine.begin() as connection:
            result = connection.execute(update(_SENDS).where(_SENDS.c.id.in_(self._held())).values(
                state=SendState.QUEUED, claimed_by=None, claimed_at=None))
            return int(result.rowcount)

    def renew(self) -> None:
        """Extend the lease of everything this worker holds."""
        with self.store.engine.begin() as connection:
            connection.execute(update(_SENDS).where(_SENDS.c.id.in_(self._held())).values(claimed_at=self.clock()))

    def _held(self) -> Any:
        """The ids of the sends this worker holds, their rows locked in the order of their ids (see _by_send)."""
        return (select(_SENDS.c.id).where(_SENDS.c.claimed_by == self.worker, _SENDS.c.state == SendState.SENDING)
                .order_by(_SENDS.c.id).with_for_update().scalar_subquery())

    def describe(self, built: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Store what the messages of claimed sends carry, (send id, {message_id, subject, links}) each,
        before they go out: the tracking server looks up a click's URL here."""
        if built:
            rows = sorted(({"send_id": send_id, "worker": self.worker, **described} for send_id, described in built),
                          key=_by_send)
            with self.store.engine.begin() as connection:
                connection.execute(HELD, rows)

    def items(self, send_ids: Sequence[int], known: dict[int, FeedItem] | None = None) -> dict[int, list[FeedItem]]:
        """The items of many sends, in the order each send carries them. `known`: items read before, by
        id, which are not read again (a run's digests share a few dozen items); those read now join it."""
        known = {} if known is None else known
        with self.store.reading() as session:
            carried = session.connection().execute(ITEMS, {"send_ids": list(send_ids)}).all()
            unknown = sorted({item_id for _, item_id in carried if item_id not in known})
            if unknown:
                known.update((item.id or 0, item) for item in session.exec(FEED_ITEMS, params={"item_ids": unknown}))
        found: dict[int, list[FeedItem]] = {send_id: [] for send_id in send_ids}
        for send_id, item_id in carried:
            found[send_id].append(known[item_id])
        return found

    def finish(self, results: Sequence[Result], now: datetime, rules: Scoring, policy: Delivery,
               connection: Connection | None = None) -> None:
        """Record a group of results in one transaction; a sent digest books its cost, a bounce suppresses.

        `connection`, when given, is used instead of one from the pool.
        """
        if results:
            with _transaction(self.store, connection) as held:
                self.write_in(held, [self.finished(result, now, policy) for result in results], now, rules)

    def finished(self, result: Result, now: datetime, policy: Delivery) -> Finished:
        """What the outbox stores of a result."""
        send = result.send
        attempts = send.attempts + (result.state is not SendState.QUEUED)
        state = final_state(send, result.state, policy.max_attempts)
        assert send.id is not None
        row = {"send_id": send.id, "worker": self.worker, "state": state, "attempts": attempts,
               "error": result.error, "claimed_by": None, "claimed_at": None,
               "sent_at": delivered_at(now, result.at) if state is SendState.SENT else None,
               "retry_at": now + timedelta(minutes=policy.retry_after_minutes) if state is SendState.DEFERRED else None}
        return Finished(row, send.lead_id, send.step)

    def write_in(self, connection: Connection, sends: Sequence[Finished], now: datetime, rules: Scoring) -> None:
        """Store finished sends, and what they lead to, in the caller's transaction: only those this
        worker still holds the claim of (HELD)."""
        connection.execute(HELD, sorted((finished.row for finished in sends), key=_by_send))
        self._consequences(connection, [finished for finished in sends if finished.follows], now, rules)

    def log_record(self, result: Result, now: datetime, policy: Delivery) -> resultlog.Record:
        """A result as a run's log holds it (nurture.send.resultlog): the row without the claim it ends."""
        finished = self.finished(result, now, policy)
        row = {key: value for key, value in finished.row.items() if key not in _CLAIM}
        return {"lead_id": finished.lead_id, "step": finished.step, **row}

    def apply_log(self, path: Path, rules: Scoring) -> int:
        """Store what the log at `path` holds past what was applied before; return how many results."""
        with self.store.engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, so the mark read is the mark
            applied = connection.execute(select(_MARKS.c.applied).where(_MARKS.c.log == path.name)).scalar()
            chunk = resultlog.read(path, applied or 0)
            if not chunk.records:
                return 0
            worker, now, first = _from_header(path, chunk.header)
            described = first and all(key in chunk.records[0][1] for key in _DESCRIBED)  # see _from_header
            sends: list[Finished] = []
            for at, record in chunk.records:
                try:
                    sends.append(_from_record(record, worker, described))
                except ValueError as error:
                    raise resultlog.BrokenLog(f"{path}: byte {at}: {error}") from None
            self.write_in(connection, sends, now, rules)
            mark = sqlite.insert(_MARKS).values(log=path.name, applied=chunk.end)
            connection.execute(mark.on_conflict_do_update(index_elements=["log"], set_={"applied": chunk.end}))
        return len(sends)

    def conclude_log(self, path: Path, rules: Scoring) -> str:
        """Store the rest of a log no run writes any more, then remove it and its mark; return its worker."""
        self.apply_log(path, rules)
        worker = str(resultlog.read_header(path).get("worker", ""))
        path.unlink(missing_ok=True)  # first: a log without its mark would be applied again from the start
        with self.store.engine.begin() as connection:
            connection.execute(delete(_MARKS).where(_MARKS.c.log == path.name))
        return worker

    def _consequences(self, connection: Connection, followups: Sequence[Finished], now: datetime,
                      rules: Scoring) -> None:
        """A sent digest books its cost (all of them in a few statements); a bounce suppresses its lead."""
        if not followups:
            return
        locked = self.store.lock_leads_in(connection, [finished.lead_id for finished in followups])  # in order
        costs: list[NewEvent] = []
        earning: list[NewEvent] = []  # under rules that pay for a digest, which may qualify a lead
        bounces: list[tuple[int, str | None]] = []
        for finished in followups:
            send_id = finished.row["send_id"]
            if finished.row["state"] is SendState.SENT:
                credit = scoring.credit_send(finished.step - 1, send_id, rules)
                hit = NewEvent(finished.lead_id, EventKind.SENT, now, credit, send_id=send_id)
                (earning if credit.points > 0 else costs).append(hit)
            else:
                bounces.append((finished.lead_id, finished.row["error"]))
        if costs:
            self.store.record_costs_in(connection, costs, locked)
        if not earning and not bounces:
            return
        with Session(bind=connection, expire_on_commit=False) as session:  # the ORM, for what may qualify a lead
            for hit in earning:
                self.store.record_in(session, hit, rules)
            for lead_id, error in bounces:
                self.store.suppress_in(session, lead_id, Suppression.BOUNCED, now, rules, (error or "")[:200])
            session.flush()

    def counts(self) -> dict[SendState, int]:
        with self.store.reading() as session:
            rows = session.exec(select(Send.state, func.count()).group_by(col(Send.state))).all()
        return {SendState(state): count for state, count in rows}


def _by_send(row: Mapping[str, Any]) -> int:
    """Rows are written in the order of their ids: on PostgreSQL every writer of many sends (describe,
    finish, and renew and release through _held) then locks them in one order, and no two deadlock."""
    return int(row["send_id"])


_CLAIM = ("worker", "claimed_by", "claimed_at")  # what HELD sets or checks of the claim, not of the result
_LOGGED = {"send_id": (int,), "lead_id": (int,), "step": (int,), "state": (str,), "attempts": (int,),
           "error": (str, type(None)), "sent_at": (str, type(None)),
           "retry_at": (str, type(None))}  # what a record holds, of what kinds
_DESCRIBED = {"message_id": (str,), "subject": (str,), "links": (list,)}  # in format 1 only
_RESULTS = {SendState.SENT, SendState.DEFERRED, SendState.FAILED, SendState.BOUNCED, SendState.QUEUED}


def _from_header(path: Path, header: resultlog.Record) -> tuple[str, datetime, bool]:
    """The worker and time of a log, and whether it is of the first format (no "format" in its header),
    whose records carry what their messages carried, unless the version that wrote it stored that when
    it built them (as this one does)."""
    written = header.get("format", 1)
    if type(written) is not int or written not in (1, resultlog.FORMAT):
        raise resultlog.BrokenLog(f"{path}: written in format {written!r}, which this version does not read")
    try:
        return str(header["worker"]), datetime.fromisoformat(header["now"]), written == 1
    except (KeyError, TypeError, ValueError) as error:
        raise resultlog.BrokenLog(f"{path}: its header names no worker and time: {error}") from None


def _from_record(record: resultlog.Record, worker: str, described: bool = False) -> Finished:
    """A logged result as HELD stores it, with what its message carried where the record holds that
    (`described`: format 1); ValueError naming what is missing or wrong."""
    for key, kinds in (_LOGGED | _DESCRIBED).items() if described else _LOGGED.items():
        if key not in record:
            raise ValueError(f"a record lacks {key!r}")
        if type(record[key]) not in kinds:
            raise ValueError(f"{key!r} is a {type(record[key]).__name__}")
    state = SendState(record["state"])
    if state not in _RESULTS:
        raise ValueError(f"no result leaves a send {state.value}")
    row = {"send_id": record["send_id"], "worker": worker, "state": state, "attempts": record["attempts"],
           "error": record["error"], "claimed_by": None, "claimed_at": None, "sent_at": _time(record["sent_at"]),
           "retry_at": _time(record["retry_at"])}
    if described:
        row.update({key: record[key] for key in _DESCRIBED})
    return Finished(row, record["lead_id"], record["step"])


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def delivered_at(now: datetime, wall: datetime | None) -> datetime:
    """When a send went out: the wall clock in a live run; the program's time in a run replayed in the past
    (`send-due --at` an earlier day), but never a time in the future, which would make every later open
    look like it came during delivery."""
    if wall is None:
        return now
    return wall if now >= wall - LIVE else min(now, wall)


def final_state(send: Send | ClaimedSend, state: SendState, max_attempts: int) -> SendState:
    """A temporary failure on the last allowed attempt is final."""
    if state is SendState.DEFERRED and send.attempts + 1 >= max_attempts:
        return SendState.FAILED
    return state


@contextmanager
def _transaction(store: Store, connection: Connection | None) -> Iterator[Connection]:
    if connection is None:
        with store.engine.begin() as fresh:
            yield fresh
        return
    with connection.begin():
        yield connection


def _insert(session: Any, table: Any) -> Any:
    """INSERT with ON CONFLICT support, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _gone(owner: str) -> bool:
    """True when `owner` names a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
