"""Judging stored hits: which are a person's, what they earn, and which leads reach sales.

The tracking server stores each open and click as it comes (nurture.track.journal), answering once it is
stored. The judge takes the stored hits in the order they arrived, a batch per transaction, and turns each into an
Event: classified by nurture.score.machines, credited by nurture.score.rules; the leads' scores move by what was
counted, and a lead that reaches its threshold is qualified exactly once. The batch leaves the journal
once its events are written, and an event carries its hit's key, so no hit is judged twice.

Judges take turns (SQLite's write lock; an advisory lock on PostgreSQL), so every tracking process may
run one. What a burst needs to be seen (the last minute's hits on each message) is read from the event
log, so a judge sees the hits that every process stored.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from nurture.models import PENDING_HITS, Event, EventKind, Lead, Send, SendState, Stage, link_at
from nurture.score import machines
from nurture.score import rules as scoring
from nurture.settings import Scoring
from nurture.store import NewEvent, Store, engagement
from nurture.store.ledger import ADD_POINTS, HELD_CREDITS, event_row
from nurture.store.locks import XACT_LOCK, Lock

EVENTS = Event.__table__  # type: ignore[attr-defined]
SENDS = Send.__table__  # type: ignore[attr-defined]
PENDING = PENDING_HITS
MEMORY = timedelta(minutes=1)  # how far back a burst can reach
log = logging.getLogger(__name__)

# built once: statements with expanding IN lists compile to the same cached SQL every time
OLDEST = select(PENDING).order_by(PENDING.c.id).limit(bindparam("limit"))
FORGET = delete(PENDING).where(PENDING.c.id.in_(bindparam("ids", expanding=True)))
JUDGED = select(EVENTS.c.hit).where(EVENTS.c.hit.in_(bindparam("keys", expanding=True)))
FACTS = select(SENDS.c.id, SENDS.c.lead_id, SENDS.c.sent_at, SENDS.c.links, SENDS.c.state).where(
    SENDS.c.id.in_(bindparam("ids", expanding=True)))
RECENT = (select(EVENTS.c.id, EVENTS.c.send_id, EVENTS.c.lead_id, EVENTS.c.occurred_at, EVENTS.c.kind,
                 EVENTS.c.link, EVENTS.c.counted, EVENTS.c.action, EVENTS.c.machine)
          .where(EVENTS.c.send_id.in_(bindparam("ids", expanding=True)), EVENTS.c.occurred_at >= bindparam("since"),
                 EVENTS.c.kind.in_([EventKind.OPEN, EventKind.CLICK]))
          .order_by(EVENTS.c.occurred_at, EVENTS.c.id))
UNCOUNT = update(EVENTS).where(EVENTS.c.id == bindparam("event"), EVENTS.c.counted.is_(True)).values(
    counted=False, credit_key=None, reason=bindparam("why"), machine=True)
# a stored hit that earned nothing (already credited, the lead with sales) now seen to be a machine's
MARK = update(EVENTS).where(EVENTS.c.id == bindparam("event"), EVENTS.c.machine.is_(False)).values(
    reason=bindparam("why"), machine=True)


@dataclass(frozen=True)
class JournalRow:
    """A stored open or click, as the journal holds it."""

    id: int
    key: int
    kind: EventKind
    send_id: int
    link: int | None
    method: str
    user_agent: str
    client: str | None
    at: datetime


@dataclass(frozen=True)
class Judged:
    """What one batch came to: the hits taken from the journal and those judged (the rest had been judged
    before a crash, or name nothing we have), and the leads that reached their threshold."""

    taken: int = 0
    judged: int = 0
    handoffs: tuple[int, ...] = ()  # hand-offs created now (settle_seconds = 0)
    settle: tuple[int, ...] = ()  # leads to qualify once their score has settled for settle_seconds

    def __add__(self, other: Judged) -> Judged:
        return Judged(self.taken + other.taken, self.judged + other.judged, self.handoffs + other.handoffs,
                      self.settle + other.settle)


@dataclass(frozen=True)
class SendFacts:
    lead_id: int
    sent_at: datetime | None
    links: list[dict[str, Any]]
    delivering: bool = False  # claimed, its result not stored yet (its links are: they are stored when it is built)


@dataclass
class Seen:
    """An earlier hit on a message, as the classifier sees it: a stored event, or a row of this batch."""

    prior: machines.Prior
    lead_id: int
    event: int | None = None
    row: int | None = None


@dataclass
class Judge:
    store: Store
    rules: Scoring
    signals: machines.Signals = field(default_factory=machines.Signals)
    max_sends: int = 200_000
    facts: OrderedDict[int, SendFacts] = field(default_factory=OrderedDict)
    taking: list[int] = field(default_factory=list)  # the journal ids of the batch being judged

    def next_batch(self, limit: int = 500) -> Judged:
        """Judge up to `limit` of the oldest stored hits in one transaction.

        If the batch cannot be written, its hits are judged one by one; a hit that fails alone is dropped
        from the journal and logged, so it cannot hold up those behind it. A database that cannot be
        reached (OperationalError) drops nothing: the error goes to the caller, the hits wait.
        """
        try:
            return self._judge(limit)
        except OperationalError:
            raise
        except Exception:
            log.exception("a batch of up to %d hits could not be judged; judging them one by one", limit)
        total = Judged()
        for _ in range(limit):
            self.taking = []
            try:
                judged = self._judge(1)
            except OperationalError:
                raise
            except Exception:
                log.exception("hit %s could not be judged; dropped from the journal", self.taking)
                self._forget(self.taking)
                continue
            if not judged.taken:
                break
            total = total + judged
        return total

    def drain(self) -> Judged:
        """Judge every stored hit."""
        total = Judged()
        while (judged := self.next_batch()).taken:
            total = total + judged
        return total

    def _judge(self, limit: int) -> Judged:
        """One batch: its events are written in one transaction, and its hits leave the journal: in the same
        transaction where the journal is in the database, else just after. A crash between the two leaves
        hits whose events exist: the next batch passes them over (by key)."""
        with self.store.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(XACT_LOCK, {"key": Lock.JUDGE})
            hits = self._oldest(connection, limit)
            self.taking = [hit.id for hit in hits]
            if not hits:
                return Judged()
            judged = set(connection.execute(JUDGED, {"keys": [hit.key for hit in hits]}).scalars())
            fresh = [hit for hit in hits if hit.key not in judged]
            result = self._batch(connection, fresh).commit() if fresh else Judged()
            if self._journal_inside:
                connection.execute(FORGET, {"ids": [hit.id for hit in hits]})
        if not self._journal_inside:
            self._forget([hit.id for hit in hits])
        return Judged(len(hits), result.judged, result.handoffs, result.settle)

    @property
    def _journal_inside(self) -> bool:
        return self.store.journal_engine is self.store.engine

    def _batch(self, connection: Any, hits: list[JournalRow]) -> _Batch:
        facts = self._facts(connection, {hit.send_id for hit in hits})
        leads = Store.lock_leads_in(connection, [facts[h.send_id].lead_id for h in hits if h.send_id in facts])
        recent = _recent(connection, facts.keys(), min(hit.at for hit in hits))
        batch = _Batch(self, connection, facts, leads, recent)
        for hit in hits:
            batch.add(hit)
        return batch

    def _oldest(self, connection: Any, limit: int) -> list[JournalRow]:
        """The oldest stored hits: read on the judge's own connection where the journal is in the database."""
        if self._journal_inside:
            return [_hit(row) for row in connection.execute(OLDEST, {"limit": limit})]
        with self.store.journal_reader.connect() as journal:
            return [_hit(row) for row in journal.execute(OLDEST, {"limit": limit})]

    def _forget(self, ids: list[int]) -> None:
        with self.store.journal_engine.begin() as journal:
            journal.execute(FORGET, {"ids": ids})


    def _facts(self, connection: Any, send_ids: set[int]) -> dict[int, SendFacts]:
        found = {send_id: self.facts[send_id] for send_id in send_ids if send_id in self.facts}
        missing = send_ids - found.keys()
        if missing:
            for send_id, lead_id, sent_at, links, state in connection.execute(FACTS, {"ids": sorted(missing)}):
                found[send_id] = SendFacts(lead_id, _utc(sent_at), links or [], state is SendState.SENDING)
                if state is SendState.SENT:  # final: safe to keep
                    self.facts[send_id] = found[send_id]
            while len(self.facts) > self.max_sends:
                self.facts.popitem(last=False)
        return found


def _hit(row: Any) -> JournalRow:
    kind = EventKind.CLICK if row.kind == "click" else EventKind.OPEN
    return JournalRow(row.id, row.key, kind, row.send_id, row.link, row.method, row.user_agent or "", row.client,
               datetime.fromtimestamp(row.at, UTC))


def _utc(moment: datetime | None) -> datetime | None:
    """The database hands datetimes back without their zone; they are all UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _recent(connection: Any, send_ids: Any, first: datetime) -> dict[int, list[Seen]]:
    """The stored hits of these messages from the last minute before `first`, oldest first."""
    recent: dict[int, list[Seen]] = defaultdict(list)
    if send_ids:
        for row in connection.execute(RECENT, {"ids": sorted(send_ids), "since": first - MEMORY}):
            prior = machines.Prior(at=_utc(row.occurred_at), kind=EventKind(row.kind).value,  # type: ignore[arg-type]
                                   link=row.link, counted=row.counted, honeypot=row.action == "honeypot",
                                   machine=row.machine)
            recent[row.send_id].append(Seen(prior, row.lead_id, row.id))
    return recent


class _Batch:
    """One transaction's worth of hits."""

    def __init__(self, judge: Judge, connection: Any, facts: dict[int, SendFacts], leads: dict[int, Any],
                 recent: dict[int, list[Seen]]):
        self.judge = judge
        self.rules = judge.rules
        self.connection = connection
        self.facts = facts
        self.leads = leads
        self.recent = recent  # each message's earlier hits: stored ones, then this batch's
        self.rows: list[dict[str, Any]] = []
        self.judged = 0  # hits that became events
        self.taken: set[str] = set()
        self.delta: dict[int, int] = defaultdict(int)
        self.uncount: list[dict[str, Any]] = []  # stored events now judged a machine's
        self.recount: set[int] = set()  # leads whose score is recomputed exactly after an uncount
        self.retallied: set[int] = set()  # mails whose engagement is counted again after a take-back...
        self.reengaged: set[int] = set()  # ...and their leads
        self.marked: list[dict[str, Any]] = []  # stored hits that earned nothing, now judged a machine's

    def add(self, hit: JournalRow) -> None:
        facts = self.facts.get(hit.send_id)
        link = _link(facts, hit) if facts else None
        lead = self.leads.get(facts.lead_id) if facts else None
        if facts is None or lead is None or (hit.kind is EventKind.CLICK and link is None):
            log.warning("hit %s names no message, link or lead we have; not judged", hit.id)
            return
        if lead.erased_at is not None:  # nothing more is kept about an erased lead
            return
        if hit.kind is EventKind.OPEN:
            credit = scoring.credit_open(hit.send_id, self.rules)
        else:
            credit = scoring.credit_click(hit.send_id, hit.link or 0, link or {}, self.rules)
        machine_made = self._classify(hit, facts, link)  # why a machine made it, or None
        reason = scoring.refusal(hit.kind, lead.stage, credit.key, self.taken, machine_made)
        if reason is None:
            self.taken.add(credit.key or "")
            self.delta[facts.lead_id] += credit.points
        found = link or {}
        event = NewEvent(facts.lead_id, hit.kind, hit.at, credit, send_id=hit.send_id, link=hit.link,
                         url=found.get("url"), tag=found.get("tag"), action=found.get("action"),
                         method=hit.method, user_agent=hit.user_agent, client=hit.client)
        row = event_row(event, lead.cycle, reason, journalled=hit.key, machine=machine_made is not None)
        self.rows.append(row)
        self.judged += 1
        self.recent[hit.send_id].append(Seen(_prior(row), facts.lead_id, row=len(self.rows) - 1))

    def _classify(self, hit: JournalRow, facts: SendFacts, link: Mapping[str, Any] | None) -> str | None:
        """The classifier's verdict, given the message's earlier hits; those it now sees as a machine's
        are taken back."""
        earlier = self.recent.get(hit.send_id, [])
        verdict = machines.classify(
            machines.Hit(hit.method, hit.user_agent, hit.at, facts.sent_at, kind=hit.kind.value, client=hit.client,
                         link=hit.link, honeypot=(link or {}).get("action") == "honeypot",
                         delivering=facts.delivering),
            [seen.prior for seen in earlier], self.judge.signals)
        for index in verdict.retroactive:
            self._take_back(earlier[index], verdict.reason or "", hit.send_id)
        return verdict.reason

    def _take_back(self, seen: Seen, why: str, send_id: int) -> None:
        """An earlier hit of the message is a machine's after all: it earns nothing (its credit and points
        taken back where it had them) and no report counts it as a person's."""
        counted = seen.prior.counted
        seen.prior = replace(seen.prior, counted=False, machine=True)
        if seen.event is not None:  # stored by an earlier batch
            (self.uncount if counted else self.marked).append({"event": seen.event, "why": why})
            if counted:
                self.recount.add(seen.lead_id)
            self.reengaged.add(seen.lead_id)
            self.retallied.add(send_id)
            return
        assert seen.row is not None
        row = self.rows[seen.row]
        if counted:
            self.taken.discard(row["credit_key"])
            self.delta[row["lead_id"]] -= row["points"]
            row.update(counted=False, credit_key=None)
        row.update(reason=why, machine=True)

    def commit(self) -> Judged:
        """Write the batch's events and score changes; qualify the leads that reached their threshold."""
        if self.uncount:  # first: a credit it frees may go to a later hit of this batch
            self.connection.execute(UNCOUNT, self.uncount)
        if self.marked:
            self.connection.execute(MARK, self.marked)
        self._drop_held_credits()
        if self.rows:
            self.connection.execute(insert(EVENTS), self.rows)
            engagement.add_hits(self.connection, self.rows)
        if self.retallied:
            engagement.recount(self.connection, self.retallied, self.reengaged)
        changes = [{"lead": lead_id, "delta": delta} for lead_id, delta in self.delta.items()
                   if delta and lead_id not in self.recount]
        if changes:
            self.connection.execute(ADD_POINTS, changes)
        if self.recount:  # what an uncount takes back depends on cycles, expiry and other events: count again
            latest = max(row["occurred_at"] for row in self.rows)
            with Session(bind=self.connection) as session:
                for lead_id in self.recount:
                    self.judge.store.recount_in(session, lead_id, self.rules, latest)
                session.flush()
        return self._qualify()

    def _drop_held_credits(self) -> None:
        """A credit already held by an event outside this batch: the new hit earns nothing."""
        keys = [row["credit_key"] for row in self.rows if row["credit_key"]]
        if not keys:
            return
        held = {key for (key,) in self.connection.execute(HELD_CREDITS, {"keys": keys})}
        for row in self.rows:
            if row["credit_key"] in held:
                row.update(counted=False, credit_key=None, reason="already credited")
                self.delta[row["lead_id"]] -= row["points"]

    def _qualify(self) -> Judged:
        """Hand-offs for the leads whose score now reaches their threshold (settled exactly, with expiry).

        With `settle_seconds` the leads are only named; the caller settles them later.
        """
        reached = [lead_id for lead_id, delta in self.delta.items() if delta > 0 and self._reaches(lead_id, delta)]
        if self.rules.callback_qualifies:  # a person asked to be called: to sales whatever the score
            reached += sorted({row["lead_id"] for row in self.rows if row["counted"] and row["action"] == "callback"
                               and row["kind"] is EventKind.CLICK} - set(reached))
        if self.rules.settle_seconds or not reached:
            return Judged(judged=self.judged, settle=tuple(reached))
        handoffs = []
        with Session(bind=self.connection) as session:
            for lead_id in reached:
                lead = session.get(Lead, lead_id)
                assert lead is not None
                latest = max(row["occurred_at"] for row in self.rows if row["lead_id"] == lead_id)
                _, handoff_id = self.judge.store.qualify_in(session, lead, self.rules, latest)
                if handoff_id is not None:
                    handoffs.append(handoff_id)
            session.flush()
        return Judged(judged=self.judged, handoffs=tuple(handoffs))

    def _reaches(self, lead_id: int, delta: int) -> bool:
        lead = self.leads[lead_id]
        line = scoring.threshold(self.rules, lead.customer, lead.industry or "")
        return lead.suppressed is None and lead.stage is Stage.MQL and lead.score + delta >= line


def _prior(row: dict[str, Any]) -> machines.Prior:
    return machines.Prior(at=row["occurred_at"], kind=row["kind"].value, link=row["link"], counted=row["counted"],
                          honeypot=row["action"] == "honeypot", machine=row["machine"])


def _link(facts: SendFacts, hit: JournalRow) -> Mapping[str, Any] | None:
    return link_at(facts.links, hit.link) if hit.kind is EventKind.CLICK else None
