"""How a delivery attempt ended, and what storing it leads to: the row of the send, the cost of a sent
digest, the suppression of a bounced lead."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Dialect, bindparam, delete, select, update
from sqlmodel import Session

from nurture.models import UNSETTLED, EventKind, Send, SendItem, SendState, Suppression
from nurture.score import rules as scoring
from nurture.send import answers
from nurture.settings import Delivery, Scoring
from nurture.store import NewEvent, Store
from nurture.store.base import column_arrays, unnest

_SENDS = Send.__table__  # type: ignore[attr-defined]
HELD = update(_SENDS).where(  # executemany, the columns set named by the rows: only while this worker holds the claim
    _SENDS.c.id == bindparam("send_id"), _SENDS.c.claimed_by == bindparam("worker"))
RELEASE_ITEMS = delete(SendItem.__table__).where(  # type: ignore[attr-defined]
    SendItem.__table__.c.send_id.in_(bindparam("sends", expanding=True)))  # type: ignore[attr-defined]
UNSETTLED_SENDS = (select(_SENDS.c.id, _SENDS.c.lead_id).where(UNSETTLED)  # the index's words: both planners take it
                   .order_by(_SENDS.c.id).limit(bindparam("limit")))
SETTLED = (update(_SENDS).where(_SENDS.c.id.in_(bindparam("ids", expanding=True)), _SENDS.c.unsettled)
           .values(unsettled=False).returning(_SENDS.c.id, _SENDS.c.lead_id, _SENDS.c.step, _SENDS.c.state,
                                              _SENDS.c.error))
SETTLE_BATCH = 1_000  # sends a transaction of `settle`
LIVE = timedelta(minutes=10)  # a run whose clock is this close to the wall clock is live


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
        """A sent digest books its cost; a bounce suppresses its lead; a failed send gives its items back; a
        full mailbox is a soft bounce."""
        state = self.row["state"]
        return (state is SendState.SENT and self.step > 0) or state in (SendState.BOUNCED, SendState.FAILED) or \
            self.mailbox_full

    @property
    def mailbox_full(self) -> bool:
        return self.row["state"] in (SendState.DEFERRED, SendState.FAILED) and answers.mailbox_full(
            self.row["error"] or "")


class Results:
    """Storing results: the outbox's part that a delivery run's lanes (or its log) write through."""

    store: Store
    worker: str

    def finish(self, results: Sequence[Result], now: datetime, rules: Scoring, policy: Delivery,
               connection: Connection | None = None, settle: bool = True) -> None:
        """Record a group of results in one transaction; a sent digest books its cost, a bounce suppresses.

        `connection`, when given, is used instead of one from the pool. `settle=False` stores the results
        alone, in one statement, each marked unsettled where it leads to more: `settle` stores the rest
        later, a batch at a time (a delivery run on PostgreSQL, whose next message waits for this write).
        """
        if not results:
            return
        finished = [self.finished(result, now, policy) for result in results]
        with transaction(self.store, connection) as held:
            self.write_in(held, finished, now, rules, settle)

    def settle(self, now: datetime, rules: Scoring, batch: int = SETTLE_BATCH) -> int:
        """Store what results recorded with `settle=False` lead to, `batch` sends a transaction; return how
        many were settled. Any worker may settle any send (a dead worker's too, on whatever host): each
        transaction locks the leads first, as the judge does, then takes the sends still unsettled, so two
        settlers never settle one send twice nor wait for each other in a circle."""
        settled = 0
        while True:
            with self.store.engine.begin() as connection:
                waiting = connection.execute(UNSETTLED_SENDS, {"limit": batch}).all()
                if not waiting:
                    return settled
                locked = self.store.lock_leads_in(connection, [lead_id for _, lead_id in waiting])
                taken = connection.execute(SETTLED, {"ids": [send_id for send_id, _ in waiting]}).all()
                finished = (Finished({"send_id": send_id, "state": state, "error": error}, lead_id, step)
                            for send_id, lead_id, step, state, error in taken)
                self._consequences(connection, [done for done in finished if done.follows], now, rules, locked)
            settled += len(taken)
            if len(waiting) < batch:
                return settled

    async def finish_ahead(self, results: Sequence[Result], now: datetime, policy: Delivery, connection: Any) -> None:
        """`finish(settle=False)` for a writer on an event loop, on a `psycopg.AsyncConnection` in autocommit
        (see Store.loop_connection): one statement, its own transaction, writes every row (held_each: the
        rows as arrays), and nothing waits on a thread. 5,000 digests on PostgreSQL (bench_send --postgres):
        10.3 s through SQLAlchemy's async engine, 9.3 s with a statement a row in psycopg's pipeline, whose
        parsing and binding of each row cost the sender 0.4 ms a row. A group of 4 results costs the sender
        0.22 ms of CPU in autocommit, 0.46 ms as the statement and a COMMIT in psycopg's pipeline."""
        if not results:
            return
        statement, params = held_each(self.store.engine.dialect, self.worker,
                                      _ahead([self.finished(result, now, policy) for result in results]))
        await connection.execute(statement, params)

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

    def write_in(self, connection: Connection, sends: Sequence[Finished], now: datetime, rules: Scoring,
                 settle: bool = True) -> None:
        """Store finished sends, and what they lead to (or, `settle=False`, mark them unsettled where they
        lead to more), in the caller's transaction: only those this worker still holds the claim of (HELD)."""
        if not settle:
            connection.execute(HELD, _ahead(sends))
            return
        connection.execute(HELD, sorted((finished.row for finished in sends), key=by_send))
        self._consequences(connection, [finished for finished in sends if finished.follows], now, rules)

    def _consequences(self, connection: Connection, followups: Sequence[Finished], now: datetime,
                      rules: Scoring, locked: Mapping[int, Any] | None = None) -> None:
        """A sent digest books its cost (all of them in a few statements); a bounce suppresses its lead; a
        failed send gives back the items it would have carried (`nurture sends retry` chooses anew)."""
        failed = [finished.row["send_id"] for finished in followups if finished.row["state"] is SendState.FAILED]
        if failed:
            connection.execute(RELEASE_ITEMS, {"sends": failed})
        full = [finished for finished in followups if finished.mailbox_full]
        followups = [finished for finished in followups
                     if finished.row["state"] in (SendState.SENT, SendState.BOUNCED) or finished.mailbox_full]
        if not followups:
            return
        if locked is None:
            locked = self.store.lock_leads_in(connection, [finished.lead_id for finished in followups])  # in order
        costs: list[NewEvent] = []
        earning: list[NewEvent] = []  # under rules that pay for a digest, which may qualify a lead
        bounces: list[tuple[int, int, str | None]] = []
        for finished in followups:
            send_id = finished.row["send_id"]
            if finished.mailbox_full:
                continue
            if finished.row["state"] is SendState.SENT:
                credit = scoring.credit_send(finished.step - 1, send_id, rules)
                hit = NewEvent(finished.lead_id, EventKind.SENT, now, credit, send_id=send_id)
                (earning if credit.points > 0 else costs).append(hit)
            else:
                bounces.append((finished.lead_id, send_id, finished.row["error"]))
        if costs:
            self.store.record_costs_in(connection, costs, locked)
        if not earning and not bounces and not full:
            return
        with Session(bind=connection, expire_on_commit=False) as session:  # the ORM, for what may qualify a lead
            for hit in earning:
                self.store.record_in(session, hit, rules)
            for lead_id, send_id, error in bounces:  # refused at SMTP time: a hard bounce
                self.store.suppress_in(session, lead_id, Suppression.BOUNCED, now, rules, (error or "")[:300], send_id,
                                       "hard")
            for finished in full:  # refused for a full mailbox: the send is tried again, and the lead counts it
                self.store.soft_bounce_in(session, finished.lead_id, finished.row["send_id"], finished.row["error"],
                                          now, rules)
            session.flush()


def _ahead(sends: Sequence[Finished]) -> list[dict[str, Any]]:
    """The rows HELD writes for results stored ahead of what they lead to: each marked unsettled where it
    leads to more, in the order of their ids."""
    return sorted(({**done.row, "unsettled": done.follows} for done in sends), key=by_send)


def held_each(dialect: Dialect, worker: str, rows: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """HELD for many rows in one statement on PostgreSQL (rows of the same columns, `send_id` naming the
    send), and its parameters: the rows as arrays (store.base.unnest); the sends still held by `worker`
    locked in the order of their ids, as HELD's rows are (by_send), then written."""
    keys = tuple(key for key in rows[0] if key not in ("send_id", "worker"))
    params = column_arrays(dialect, _SENDS, [{**row, "id": row["send_id"]} for row in rows], ("id", *keys))
    return _held_each(dialect, keys), {**params, "worker": worker}


@functools.cache
def _held_each(dialect: Dialect, keys: tuple[str, ...]) -> str:
    return (f"WITH given AS (SELECT * FROM {unnest(dialect, _SENDS, ('id', *keys))} AS given (id, {', '.join(keys)})), "
            "held AS (SELECT send.id FROM send JOIN given ON given.id = send.id WHERE send.claimed_by = %(worker)s "
            "ORDER BY send.id FOR UPDATE OF send) "
            f"UPDATE send SET {', '.join(f'{key} = given.{key}' for key in keys)} "
            "FROM given JOIN held ON held.id = given.id WHERE send.id = given.id")


def by_send(row: Mapping[str, Any]) -> int:
    """Rows are written in the order of their ids: on PostgreSQL every writer of many sends (describe,
    finish, and renew and release through Outbox._held) then locks them in one order, and no two deadlock."""
    return int(row["send_id"])


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
def transaction(store: Store, connection: Connection | None) -> Iterator[Connection]:
    if connection is None:
        with store.engine.begin() as fresh:
            yield fresh
        return
    with connection.begin():
        yield connection


