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
stored in group commits on PostgreSQL, what they lead to settled a batch at a time after (`settle`); on
SQLite a run logs them first (nurture.send.resultlog), and they reach the table a batch at a time
(`apply_log`).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, column, func, literal, or_, table, text, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from nurture.models import OPEN_SENDS, FeedItem, Lead, Send, SendItem, SendState
from nurture.program import Due
from nurture.send.replay import Replay
from nurture.send.results import HELD, ClaimedSend, by_send, held_each
from nurture.settings import Scoring
from nurture.store import Store
from nurture.store.base import arrays, copy_rows, insert_rows

_ITEMS = SendItem.__table__  # type: ignore[attr-defined]
_SENDS = Send.__table__  # type: ignore[attr-defined]
_LEADS = Lead.__table__  # type: ignore[attr-defined]
ITEMS = (  # built once: SQLAlchemy keys its statement cache on the statement, which costs as much as the query
    select(SendItem.send_id, SendItem.item_id).where(col(SendItem.send_id).in_(bindparam("send_ids", expanding=True)))
    .order_by(col(SendItem.send_id), col(SendItem.position)))
FEED_ITEMS = select(FeedItem).where(col(FeedItem.id).in_(bindparam("item_ids", expanding=True)))

# a recorded step moves its lead on (what nurture.program.due reads), in the transaction that records it;
# a step of an earlier cycle, or below the one recorded, changes nothing
MAILED = update(_LEADS).where(
    _LEADS.c.id == bindparam("lead"), _LEADS.c.cycle == bindparam("of_cycle"),
    or_(_LEADS.c.last_step.is_(None), _LEADS.c.last_step < bindparam("step")),
).values(last_step=bindparam("step"), due_at=bindparam("next", type_=_LEADS.c.due_at.type))

# MAILED for many leads in one statement on PostgreSQL, each column an array (`arrays`): the leads locked in
# the order of their ids, as the judge and the settler lock them, then written (a lead's last step in the
# batch when it has two)
MAILED_EACH = text("""
WITH given AS (
    SELECT DISTINCT ON (lead) * FROM unnest(CAST(:lead AS integer[]), CAST(:of_cycle AS integer[]),
                                            CAST(:step AS integer[]), CAST(:next AS timestamptz[]))
        AS given (lead, of_cycle, step, next)
    ORDER BY lead, step DESC),
taken AS (
    SELECT lead.id FROM lead JOIN given ON given.lead = lead.id
    WHERE lead.cycle = given.of_cycle AND (lead.last_step IS NULL OR lead.last_step < given.step)
    ORDER BY lead.id FOR UPDATE OF lead)
UPDATE lead SET last_step = given.step, due_at = given.next, last_mailed_at = :now
FROM given JOIN taken ON taken.id = given.lead WHERE lead.id = given.lead""")
# PostgreSQL records many queued sends through COPY into a table of the transaction
QUEUED_SENDS = text("CREATE TEMPORARY TABLE queued_send (lead_id integer, cycle integer, step integer, "
                    "template varchar) ON COMMIT DROP")
COPY_QUEUED_SENDS = "COPY queued_send (lead_id, cycle, step, template) FROM STDIN"
_QUEUED = table("queued_send", column("lead_id"), column("cycle"), column("step"), column("template"))
RECORD_QUEUED_SENDS = postgresql.insert(_SENDS).from_select(
    ["lead_id", "cycle", "step", "template", "state", "links", "created_at", "attempts", "message_id", "subject"],
    core_select(_QUEUED.c.lead_id, _QUEUED.c.cycle, _QUEUED.c.step, _QUEUED.c.template,
                literal(SendState.QUEUED, _SENDS.c.state.type), literal([], _SENDS.c.links.type),
                bindparam("now", type_=_SENDS.c.created_at.type), literal(0), literal(""), literal(""))
    .order_by(_QUEUED.c.lead_id, _QUEUED.c.step),
).on_conflict_do_nothing(index_elements=["lead_id", "cycle", "step"]).returning(_SENDS.c.id, _SENDS.c.lead_id,
                                                                                 _SENDS.c.step)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


CLAIMED = [_SENDS.c[name] for name in ClaimedSend.__dataclass_fields__]  # what a claim hands back, in order

OPEN = (SendState.QUEUED, SendState.DEFERRED, SendState.SENDING)  # as models.OPEN_SENDS says


# SQLite takes a partial index only where the query names its condition word for word, and its planner
# prefers the rowid's order for ORDER BY id LIMIT: there the claim says which index to read
SQLITE_CLAIMABLE = text(
    "SELECT id FROM send INDEXED BY ix_send_open WHERE state IN ('QUEUED', 'DEFERRED', 'SENDING') AND "
    "(state = 'QUEUED' OR (state = 'DEFERRED' AND retry_at <= :now) OR (state = 'SENDING' AND claimed_at < :expired))"
    " ORDER BY id LIMIT :limit"
).bindparams(bindparam("now", type_=_SENDS.c.retry_at.type), bindparam("expired", type_=_SENDS.c.claimed_at.type))

SQLITE_CLAIMANTS = text("SELECT DISTINCT claimed_by FROM send INDEXED BY ix_send_open WHERE "
                        "state IN ('QUEUED', 'DEFERRED', 'SENDING') AND state = 'SENDING'").columns(_SENDS.c.claimed_by)


def claimable(limit: int, now: datetime, expired: datetime, sqlite: bool = False) -> Any:
    """The ids of the oldest `limit` sends a worker may claim: queued, deferred and due, or abandoned by a
    worker whose lease ran out before `expired`. It reads the partial index ix_send_open, so the database
    reads the open sends only, never the history (tests/integration/test_claim_plan.py)."""
    if sqlite:
        return SQLITE_CLAIMABLE.bindparams(now=now, expired=expired, limit=limit)
    due = col(Send.state).in_(OPEN) & or_(  # the first term matches the index's condition
        col(Send.state) == SendState.QUEUED,
        (col(Send.state) == SendState.DEFERRED) & (col(Send.retry_at) <= now),
        (col(Send.state) == SendState.SENDING) & (col(Send.claimed_at) < expired),
    )
    return select(Send.id).where(due).order_by(col(Send.id)).limit(limit).with_for_update(skip_locked=True)


class Outbox(Replay):
    """The sends of the program: recorded, claimed, described, given back; their results are stored through
    Results and Replay."""

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
            inserted = (self._record_copied if self.store.engine.dialect.name == "postgresql" else self._record)(
                session.connection(), steps, now)
            send_of = {lead_id: send_id for send_id, lead_id, _ in inserted}
            recorded = {(lead_id, step) for _, lead_id, step in inserted}
            mailed = [{"lead": due.lead_id, "of_cycle": due.cycle, "step": due.step, "next": due.next_at}
                      for due, _ in steps if (due.lead_id, due.step) in recorded]
            items = [{"send_id": send_of[due.lead_id], "lead_id": due.lead_id, "item_id": item_id, "position": n}
                     for due, item_ids in steps if due.lead_id in send_of for n, item_id in enumerate(item_ids)]
            connection = session.connection()
            if mailed and self.store.engine.dialect.name == "postgresql":  # a statement for all rows, not one a row
                connection.execute(MAILED_EACH, {"now": now, **arrays(mailed)})
            elif mailed:
                connection.execute(MAILED.values(last_mailed_at=now), mailed)
            insert_rows(connection, _ITEMS, items, unless=("lead_id", "item_id"))
        return [due.lead_id in send_of for due, _ in steps]

    @staticmethod
    def _record(connection: Connection, steps: Sequence[tuple[Due, Sequence[int]]], now: datetime) -> Sequence[Any]:
        """Insert the queued sends, a step recorded before left out; (id, lead id, step) of each inserted."""
        rows = [dict(lead_id=due.lead_id, cycle=due.cycle, step=due.step, template=due.template) for due, _ in steps]
        statement = sqlite.insert(_SENDS).values(  # the same for every row: bound once, not per row
            state=SendState.QUEUED, links=[], created_at=now, attempts=0, message_id="", subject="",
        ).on_conflict_do_nothing(index_elements=["lead_id", "cycle", "step"])
        return connection.execute(statement.returning(_SENDS.c.id, _SENDS.c.lead_id, _SENDS.c.step), rows).all()

    @staticmethod
    def _record_copied(connection: Connection, steps: Sequence[tuple[Due, Sequence[int]]],
                       now: datetime) -> Sequence[Any]:
        """`_record` on PostgreSQL: the steps through COPY into a table of the transaction, then one INSERT
        from it (5,000 sends: 0.09 s against 0.33 s for INSERT ... VALUES in pages, which the driver parses
        anew for every page)."""
        connection.execute(QUEUED_SENDS)
        copy_rows(connection, COPY_QUEUED_SENDS, ((due.lead_id, due.cycle, due.step, due.template) for due, _ in steps))
        return connection.execute(RECORD_QUEUED_SENDS, {"now": now}).all()

    def requeue(self, items: Mapping[int, tuple[int, Sequence[int]]]) -> list[int]:
        """Queue failed sends again, each with the items it now carries: {send id: (lead id, item ids)}.
        Return the ids queued (a send no longer failed is left as it is)."""
        if not items:
            return []
        with self.store.session() as session:
            queued = session.connection().execute(update(_SENDS).where(
                _SENDS.c.id.in_(sorted(items)), _SENDS.c.state == SendState.FAILED,
            ).values(state=SendState.QUEUED, attempts=0, error=None, retry_at=None, claimed_by=None, claimed_at=None)
                .returning(_SENDS.c.id)).scalars().all()
            rows = [{"send_id": send_id, "lead_id": items[send_id][0], "item_id": item_id, "position": n}
                    for send_id in queued for n, item_id in enumerate(items[send_id][1])]
            if rows:
                statement = _insert(session, SendItem.__table__)  # type: ignore[attr-defined]
                session.connection().execute(statement.on_conflict_do_nothing(index_elements=["lead_id", "item_id"]),
                                             rows)
        return sorted(queued)

    def reclaim_orphans(self, rules: Scoring) -> int:
        """Give back the claims of runs on this host that are over: whose process is gone, or whose result
        log no run holds (its results are stored first); return how many."""
        over = self.conclude_abandoned(rules)
        with self.store.session() as session:
            claimants = SQLITE_CLAIMANTS if self.store.is_sqlite else select(Send.claimed_by).where(
                OPEN_SENDS, col(Send.state) == SendState.SENDING).distinct()  # through ix_send_open
            owners = session.execute(claimants).scalars().all()
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
        with self.store.session() as session:
            query = claimable(limit, now, wall - timedelta(seconds=lease_seconds), self.store.is_sqlite)
            ids = list(session.execute(query).scalars().all())
            if not ids:
                return []
            rows = session.connection().execute(update(_SENDS).where(_SENDS.c.id.in_(ids)).values(
                state=SendState.SENDING, claimed_by=self.worker, claimed_at=wall).returning(*CLAIMED)).all()
        # made into ClaimedSends after the commit: on SQLite every other writer (the sender's results) waits meanwhile
        claimed = (ClaimedSend(*row) for row in rows)
        return sorted(claimed, key=lambda send: send.id)


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
        """The ids of the sends this worker holds, their rows locked in the order of their ids (see by_send)."""
        return (select(_SENDS.c.id).where(_SENDS.c.claimed_by == self.worker, _SENDS.c.state == SendState.SENDING)
                .order_by(_SENDS.c.id).with_for_update().scalar_subquery())

    def describe(self, built: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Store what the messages of claimed sends carry, (send id, {message_id, subject, links}) each,
        before they go out: the tracking server looks up a click's URL here."""
        if built:
            rows = sorted(({"send_id": send_id, "worker": self.worker, **described} for send_id, described in built),
                          key=by_send)
            with self.store.engine.begin() as connection:
                if connection.dialect.name == "postgresql":  # one statement, not one a row
                    connection.exec_driver_sql(*held_each(connection.dialect, self.worker, rows))
                else:
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


    def oldest_due(self, now: datetime) -> datetime | None:
        """When the longest-waiting send that is due for delivery was recorded (queued, or deferred and
        due again at `now`); None when none is."""
        due = or_(col(Send.state) == SendState.QUEUED,
                  (col(Send.state) == SendState.DEFERRED) & (col(Send.retry_at) <= now))
        with self.store.reading() as session:
            oldest = session.exec(select(func.min(Send.created_at)).where(due)).one()
        if oldest is not None and oldest.tzinfo is None:  # SQLite hands aggregates back without their zone
            oldest = oldest.replace(tzinfo=now.tzinfo)
        return oldest

    def counts(self, states: Sequence[SendState] | None = None) -> dict[SendState, int]:
        """Sends by state: of `states` only, read through the index of states, or of every state, which
        reads every mail ever sent."""
        query = select(Send.state, func.count())
        if states is not None:
            query = query.where(col(Send.state).in_(states))
        with self.store.reading() as session:
            rows = session.exec(query.group_by(col(Send.state))).all()
        return {SendState(state): count for state, count in rows}


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
