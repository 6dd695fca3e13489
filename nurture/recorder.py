"""Recording opens and clicks in groups: one transaction for all the hits that arrived meanwhile.

Every hit is answered only after its event is committed, so nothing is lost; but a thousand concurrent
hits cost one transaction, not a thousand. Within the transaction the group's leads are locked
(`FOR UPDATE` on PostgreSQL; SQLite's write lock), credits are checked against the event log, scores
move by the points of what was counted, and a lead that reaches its threshold is qualified exactly once.

What a delivered send is (its lead, delivery time, links) never changes, so it is kept in memory; so are
the last minute's hits of each send, which the machine classifier needs to see a burst. With several
tracking servers each sees only its own share of a burst; credits and hand-offs stay exact regardless.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from nurture import machines, scoring
from nurture.models import Event, EventKind, Lead, Send, SendState, Stage
from nurture.settings import Scoring
from nurture.store import Store

EVENTS = Event.__table__  # type: ignore[attr-defined]
LEADS = Lead.__table__  # type: ignore[attr-defined]
SENDS = Send.__table__  # type: ignore[attr-defined]
ADD_POINTS = update(LEADS).where(LEADS.c.id == bindparam("lead")).values(score=LEADS.c.score + bindparam("delta"))
UNCOUNT = update(EVENTS).where(  # an earlier hit, named by its send and its exact time
    EVENTS.c.send_id == bindparam("send"), EVENTS.c.occurred_at == bindparam("at"), EVENTS.c.counted.is_(True),
).values(counted=False, credit_key=None, reason=bindparam("why"))
MEMORY = timedelta(minutes=1)
log = logging.getLogger(__name__)
# built once: statements with expanding IN lists compile to the same cached SQL every time
FACTS = select(SENDS.c.id, SENDS.c.lead_id, SENDS.c.sent_at, SENDS.c.links, SENDS.c.state).where(
    SENDS.c.id.in_(bindparam("ids", expanding=True)))
LOCK = (select(LEADS.c.id, LEADS.c.stage, LEADS.c.cycle, LEADS.c.suppressed, LEADS.c.customer, LEADS.c.industry,
               LEADS.c.score)
        .where(LEADS.c.id.in_(bindparam("ids", expanding=True))).order_by(LEADS.c.id).with_for_update())
HELD = select(EVENTS.c.credit_key).where(EVENTS.c.credit_key.in_(bindparam("keys", expanding=True)))


@dataclass(frozen=True)
class Hit:
    """A verified open or click, waiting to be written."""

    kind: EventKind
    send_id: int
    link: int | None
    method: str
    user_agent: str
    client: str | None
    at: datetime


@dataclass(frozen=True)
class Written:
    known: bool  # False: a genuine token that names no email or link we have
    url: str | None = None  # where a click goes
    counted: bool = False
    reason: str | None = None
    handoff_id: int | None = None
    settle: int | None = None  # a lead that reached its threshold: qualify it after scoring.settle_seconds


@dataclass(frozen=True)
class SendFacts:
    lead_id: int
    sent_at: datetime | None
    links: list[dict[str, Any]]


@dataclass
class Seen:
    """An earlier hit on a send, as the classifier sees it, and what its event earned."""

    prior: machines.Prior
    lead_id: int
    points: int


@dataclass
class Recorder:
    store: Store
    rules: Scoring
    signals: machines.Signals = field(default_factory=machines.Signals)
    max_sends: int = 200_000
    facts: OrderedDict[int, SendFacts] = field(default_factory=OrderedDict)
    recent: dict[int, deque[Seen]] = field(default_factory=lambda: defaultdict(deque))

    def write(self, hits: Sequence[Hit]) -> list[Written]:
        """Record a group of hits in one transaction; one result per hit, in order.

        If the group cannot be written, each hit is tried alone, so one bad hit costs only itself.
        """
        try:
            return self._write(hits)
        except Exception:
            if len(hits) == 1:
                raise
            log.exception("a group of %d hits failed; writing them one by one", len(hits))
        return [self._alone(hit) for hit in hits]

    def _alone(self, hit: Hit) -> Written:
        try:
            return self._write([hit])[0]
        except Exception:
            log.exception("hit on send %s not recorded", hit.send_id)
            facts = self.facts.get(hit.send_id)
            link = _link(facts, hit) if facts else None
            return Written(known=facts is not None, url=(link or {}).get("url"), reason="not recorded")

    def _write(self, hits: Sequence[Hit]) -> list[Written]:
        facts = self._facts({hit.send_id for hit in hits})
        with self.store.engine.begin() as connection:
            leads = _lock(connection, {facts[h.send_id].lead_id for h in hits if h.send_id in facts})
            group = _Group(self, connection, facts, leads)
            drafts = [group.add(hit) for hit in hits]
            results = group.commit(drafts)
        group.remember()  # only once the transaction has committed
        return results

    def _facts(self, send_ids: set[int]) -> dict[int, SendFacts]:
        found = {send_id: self.facts[send_id] for send_id in send_ids if send_id in self.facts}
        missing = send_ids - found.keys()
        if missing:
            with self.store.engine.connect() as connection:
                for send_id, lead_id, sent_at, links, state in connection.execute(FACTS, {"ids": list(missing)}):
                    found[send_id] = SendFacts(lead_id, sent_at, links or [])
                    if state is SendState.SENT:  # final: safe to keep
                        self.facts[send_id] = found[send_id]
            while len(self.facts) > self.max_sends:
                self.facts.popitem(last=False)
        return found

    def remember(self, send_id: int, seen: Seen) -> None:
        recent = self.recent[send_id]
        recent.append(seen)
        while recent and seen.prior.at - recent[0].prior.at > MEMORY:
            recent.popleft()
        if len(self.recent) > self.max_sends:
            stale = [key for key, hits in self.recent.items() if not hits or seen.prior.at - hits[-1].prior.at > MEMORY]
            for key in stale:
                del self.recent[key]


def _lock(connection: Any, lead_ids: set[int]) -> dict[int, Any]:
    return {row.id: row for row in connection.execute(LOCK, {"ids": sorted(lead_ids)})} if lead_ids else {}


@dataclass
class _Draft:
    written: Written
    row: int | None = None  # index of its event row


class _Group:
    """One transaction's worth of hits."""

    def __init__(self, recorder: Recorder, connection: Any, facts: dict[int, SendFacts], leads: dict[int, Any]):
        self.recorder = recorder
        self.rules = recorder.rules
        self.connection = connection
        self.facts = facts
        self.leads = leads
        self.rows: list[dict[str, Any]] = []
        self.hits: list[Hit] = []
        self.taken: set[str] = set()
        self.delta: dict[int, int] = defaultdict(int)
        self.uncount: list[dict[str, Any]] = []  # earlier events, already stored, now judged a machine's
        self.flipped: list[Seen] = []  # ... and their memory, changed once the transaction commits
        self.recount: set[int] = set()  # leads whose score is recomputed exactly after an uncount
        self.by_send: dict[int, list[int]] = defaultdict(list)  # this group's rows of each send
        self.settling: set[int] = set()

    def add(self, hit: Hit) -> _Draft:
        facts = self.facts.get(hit.send_id)
        link = _link(facts, hit) if facts else None
        if facts is None or (hit.kind is EventKind.CLICK and link is None):
            return _Draft(Written(known=False))
        lead = self.leads.get(facts.lead_id)
        if lead is None:  # the lead is gone
            return _Draft(Written(known=False))
        if hit.kind is EventKind.OPEN:
            credit = scoring.credit_open(hit.send_id, self.rules)
        else:
            credit = scoring.credit_click(hit.send_id, hit.link or 0, link or {}, self.rules)
        reason = self._judge(hit, facts, link)
        if reason is None and lead.stage is not Stage.MQL:
            reason = f"lead is {lead.stage.value}"
        if reason is None and credit.key in self.taken:
            reason = "already credited"
        if reason is None:
            self.taken.add(credit.key or "")
            self.delta[facts.lead_id] += credit.points
        self.rows.append(dict(lead_id=facts.lead_id, cycle=lead.cycle, send_id=hit.send_id, kind=hit.kind,
                              link=hit.link, action=(link or {}).get("action"), points=credit.points,
                              counted=reason is None, reason=reason, credit_for=credit.key,
                              credit_key=credit.key if reason is None else None, occurred_at=hit.at,
                              method=hit.method, user_agent=hit.user_agent[:300] or None, client=hit.client,
                              detail=None))
        self.hits.append(hit)
        self.by_send[hit.send_id].append(len(self.rows) - 1)
        return _Draft(Written(known=True, url=(link or {}).get("url")), row=len(self.rows) - 1)

    def _judge(self, hit: Hit, facts: SendFacts, link: dict[str, Any] | None) -> str | None:
        """The classifier's verdict, given the send's earlier hits: those stored before (remembered) and
        those of this group; earlier hits it now sees as a machine's are taken back."""
        stored = [seen for seen in self.recorder.recent.get(hit.send_id, ()) if seen not in self.flipped]
        rows = self.by_send.get(hit.send_id, [])
        earlier = [seen.prior for seen in stored] + [_prior(self.rows[row]) for row in rows]
        verdict = machines.classify(
            machines.Hit(hit.method, hit.user_agent, hit.at, facts.sent_at, kind=hit.kind.value, client=hit.client,
                         link=hit.link, honeypot=(link or {}).get("action") == "honeypot"),
            earlier, self.recorder.signals)
        for index in verdict.retroactive:
            if index < len(stored):
                self._take_back_stored(hit.send_id, stored[index], verdict.reason or "")
            else:
                self._take_back_row(rows[index - len(stored)], verdict.reason or "")
        return verdict.reason

    def _take_back_stored(self, send_id: int, seen: Seen, why: str) -> None:
        if seen.prior.counted:
            self.uncount.append({"send": send_id, "at": seen.prior.at, "why": why})
            self.flipped.append(seen)
            self.recount.add(seen.lead_id)

    def _take_back_row(self, row: int, why: str) -> None:
        record = self.rows[row]
        if record["counted"]:
            self.taken.discard(record["credit_key"])
            self.delta[record["lead_id"]] -= record["points"]
            record.update(counted=False, credit_key=None, reason=why)

    def remember(self) -> None:
        """Bring the memory of recent hits up to date with what was committed."""
        for seen in self.flipped:
            seen.prior = replace(seen.prior, counted=False)
        for hit, row in zip(self.hits, self.rows, strict=True):
            self.recorder.remember(hit.send_id, Seen(_prior(row), row["lead_id"], row["points"]))

    def commit(self, drafts: list[_Draft]) -> list[Written]:
        """Write the group's events and score changes; qualify the leads that reached their threshold."""
        self._drop_held_credits()
        if self.rows:
            self.connection.execute(insert(EVENTS), self.rows)
        if self.uncount:
            self.connection.execute(UNCOUNT, self.uncount)
        changes = [{"lead": lead_id, "delta": delta} for lead_id, delta in self.delta.items()
                   if delta and lead_id not in self.recount]
        if changes:
            self.connection.execute(ADD_POINTS, changes)
        if self.recount:  # what an uncount takes back depends on cycles, expiry and other servers: count again
            with Session(bind=self.connection) as session:
                for lead_id in self.recount:
                    self.recorder.store.recount_in(session, lead_id, self.rules, self.hits[-1].at)
                session.flush()
        handoffs = self._qualify()
        return [self._final(draft, handoffs) for draft in drafts]

    def _drop_held_credits(self) -> None:
        """A credit already held by an event outside this group: the new hit earns nothing."""
        keys = [row["credit_key"] for row in self.rows if row["credit_key"]]
        if not keys:
            return
        held = {key for (key,) in self.connection.execute(HELD, {"keys": keys})}
        for row in self.rows:
            if row["credit_key"] in held:
                row.update(counted=False, credit_key=None, reason="already credited")
                self.delta[row["lead_id"]] -= row["points"]

    def _qualify(self) -> dict[int, int]:
        """Hand-offs for the leads whose score now reaches their threshold (settled exactly, with expiry).

        With `settle_seconds` the leads are only named (Written.settle); the caller settles them later.
        """
        reached = [lead_id for lead_id, delta in self.delta.items() if delta > 0 and self._reaches(lead_id, delta)]
        handoffs: dict[int, int] = {}
        if self.rules.settle_seconds:
            self.settling.update(reached)
        elif reached:
            with Session(bind=self.connection) as session:
                for lead_id in reached:
                    lead = session.get(Lead, lead_id)
                    assert lead is not None
                    latest = max(row["occurred_at"] for row in self.rows if row["lead_id"] == lead_id)
                    _, handoff_id = self.recorder.store.settle_in(session, lead, self.rules, latest)
                    if handoff_id is not None:
                        handoffs[lead_id] = handoff_id
                session.flush()
        return handoffs

    def _reaches(self, lead_id: int, delta: int) -> bool:
        lead = self.leads[lead_id]
        line = scoring.threshold(self.rules, lead.customer, lead.industry or "")
        return lead.suppressed is None and lead.stage is Stage.MQL and lead.score + delta >= line

    def _final(self, draft: _Draft, handoffs: dict[int, int]) -> Written:
        if draft.row is None:
            return draft.written
        row = self.rows[draft.row]
        lead_id = row["lead_id"]
        settle = lead_id if lead_id in self.settling else None
        self.settling.discard(lead_id)
        return Written(True, draft.written.url, row["counted"], row["reason"], handoffs.pop(lead_id, None), settle)


def _prior(row: dict[str, Any]) -> machines.Prior:
    return machines.Prior(at=row["occurred_at"], kind=row["kind"].value, link=row["link"], counted=row["counted"],
                          honeypot=row["action"] == "honeypot")


def _link(facts: SendFacts, hit: Hit) -> dict[str, Any] | None:
    if hit.kind is not EventKind.CLICK:
        return None
    if hit.link is None or not 0 <= hit.link < len(facts.links):
        return None
    return facts.links[hit.link]
