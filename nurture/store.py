"""Every query nurture needs. Nothing else talks SQL.

Write transactions that decide something (a credit, a stage change, a hand-off) lock the lead first:
`SELECT ... FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite. That is what makes concurrent
events for one lead produce exactly one qualification and one hand-off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, col, create_engine, select

from nurture import scoring
from nurture.errors import InputError, UnknownLead
from nurture.models import (
    Event,
    EventKind,
    FeedItem,
    FeedState,
    Handoff,
    HandoffState,
    Lead,
    Outcome,
    Send,
    SendItem,
    SinkMessage,
    Stage,
    Suppression,
)
from nurture.program import History
from nurture.scoring import Credit
from nurture.settings import Scoring

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


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
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


class Store:
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

    # leads

    def add_lead(self, lead: Lead) -> Lead:
        try:
            with self.session() as session:
                session.add(lead)
                session.flush()
        except IntegrityError:
            raise InputError(f"a lead with email {lead.email} already exists") from None
        return lead

    def add_leads(self, leads: Sequence[Lead]) -> None:
        """Add all leads or none."""
        emails = [lead.email for lead in leads]
        with self.session() as session:
            taken = session.exec(select(Lead.email).where(col(Lead.email).in_(emails))).all()
            if taken:
                raise InputError(f"leads already exist: {', '.join(sorted(taken)[:5])}")
            session.add_all(leads)

    def lead(self, lead_id: int) -> Lead:
        with self.session() as session:
            lead = session.get(Lead, lead_id)
        if lead is None:
            raise UnknownLead(f"no lead with id {lead_id}")
        return lead

    def lead_by_email(self, email: str) -> Lead:
        with self.session() as session:
            lead = session.exec(select(Lead).where(Lead.email == email.strip().lower())).first()
        if lead is None:
            raise UnknownLead(f"no lead with email {email}")
        return lead

    def leads(self, limit: int = 1000) -> list[Lead]:
        with self.session() as session:
            return list(session.exec(select(Lead).order_by(col(Lead.id)).limit(limit)).all())

    def leads_in(self, stage: Stage) -> list[Lead]:
        with self.session() as session:
            return list(session.exec(select(Lead).where(Lead.stage == stage).order_by(col(Lead.id))).all())

    def leads_by_id(self, ids: Sequence[int]) -> dict[int, Lead]:
        with self.session() as session:
            rows = session.exec(select(Lead).where(col(Lead.id).in_(ids))).all()
        return {lead.id: lead for lead in rows if lead.id is not None}

    def set_preferences(self, lead_id: int, interests: list[str], industry: str) -> None:
        with self.session() as session:
            lead = session.get(Lead, lead_id)
            if lead is None:
                raise UnknownLead(f"no lead with id {lead_id}")
            lead.interests = interests
            lead.industry = industry

    def histories(self) -> list[History]:
        """The send history of every lead the program may still mail."""
        query = (
            select(  # type: ignore[call-overload]
                Lead.id, Lead.stage, Lead.cycle, Lead.cycle_started_at, func.max(Send.step), func.max(Send.created_at)
            )
            .join(Send, (col(Send.lead_id) == col(Lead.id)) & (col(Send.cycle) == col(Lead.cycle)),
                  isouter=True)
            .where(Lead.stage == Stage.MQL, col(Lead.suppressed).is_(None))
            .group_by(col(Lead.id))
            .order_by(col(Lead.id))
        )
        with self.session() as session:
            rows = session.exec(query).all()
        return [History(lead_id, stage, False, cycle, started, step, last)
                for lead_id, stage, cycle, started, step, last in rows]

    def note_skip(self, lead_id: int, reason: str, now: datetime) -> None:
        with self.session() as session:
            session.exec(update(Lead).where(col(Lead.id) == lead_id)
                         .values(skipped_at=now, skip_reason=reason))

    # sends

    def new_items(self, lead_id: int, feeds: Sequence[str], limit: int) -> list[FeedItem]:
        """The newest items of these feeds that the lead has not been sent, by item or by link (the same
        article in two feeds is two items)."""
        sent = select(SendItem.item_id).where(SendItem.lead_id == lead_id)
        sent_links = (select(FeedItem.link).join(SendItem, col(SendItem.item_id) == col(FeedItem.id))
                      .where(SendItem.lead_id == lead_id))
        query = (
            select(FeedItem)
            .where(col(FeedItem.feed).in_(feeds), col(FeedItem.id).not_in(sent), col(FeedItem.link).not_in(sent_links))
            .order_by(col(FeedItem.published).desc(), col(FeedItem.id).desc())
            .limit(limit)
        )
        with self.session() as session:
            return list(session.exec(query).all())

    def send(self, send_id: int) -> Send | None:
        with self.session() as session:
            return session.get(Send, send_id)

    def sends_of(self, lead_id: int) -> list[Send]:
        with self.session() as session:
            return list(session.exec(select(Send).where(Send.lead_id == lead_id).order_by(col(Send.id))).all())

    # events and scores

    def record(self, hit: Hit, rules: Scoring) -> Recorded:
        """Store one event, credit it at most once, and qualify the lead when it reaches the threshold."""
        with self.session() as session:
            return self.record_in(session, hit, rules)

    def record_in(self, session: Session, hit: Hit, rules: Scoring) -> Recorded:
        """`record` inside the caller's transaction."""
        lead = self._locked(session, hit.lead_id)
        event = self._insert_event(session, lead, hit)
        score, handoff_id = self.settle_in(session, lead, rules, hit.occurred_at, force=hit.qualify and event.counted)
        return Recorded(event, score, handoff_id)

    @staticmethod
    def _locked(session: Session, lead_id: int) -> Lead:
        lead = session.exec(select(Lead).where(Lead.id == lead_id).with_for_update()).first()
        if lead is None:
            raise UnknownLead(f"no lead with id {lead_id}")
        return lead

    def settle_in(self, session: Session, lead: Lead, rules: Scoring, now: datetime,
                force: bool = False) -> tuple[int, int | None]:
        """Bring the lead's score up to date; qualify it (one hand-off per cycle) once it has earned it."""
        score = self._score(session, lead, rules, now)
        lead.score = score
        session.add(lead)
        earned = force or scoring.qualifies(lead.stage, score, rules, lead.customer, lead.industry)
        if not earned or lead.stage is not Stage.MQL or lead.suppressed is not None:
            return score, None
        assert lead.id is not None
        lead.stage = scoring.move(lead.stage, Stage.SQL)
        handoff = Handoff(lead_id=lead.id, cycle=lead.cycle, score=score, created_at=now)
        session.add(handoff)
        session.flush()
        return score, handoff.id

    def _insert_event(self, session: Session, lead: Lead, hit: Hit) -> Event:
        key, reason = hit.credit.key, hit.ignored
        if reason is None and lead.stage is not Stage.MQL and hit.kind in MQL_ONLY:
            reason = f"lead is {lead.stage.value}"
        if reason is None and key and self._credited(session, key):
            reason = "already credited"
        event = Event(lead_id=hit.lead_id, cycle=lead.cycle, send_id=hit.send_id, kind=hit.kind, link=hit.link,
                      action=hit.action, occurred_at=hit.occurred_at, method=hit.method,
                      user_agent=(hit.user_agent or "")[:300] or None, client=hit.client, detail=hit.detail,
                      points=hit.credit.points, counted=reason is None, reason=reason, credit_for=key,
                      credit_key=key if reason is None else None)
        session.add(event)
        session.flush()
        return event

    def recount_in(self, session: Session, lead_id: int, rules: Scoring, now: datetime) -> int:
        """Set a lead's stored score to the exact sum of its counted points, in the caller's transaction."""
        lead = self._locked(session, lead_id)
        lead.score = self._score(session, lead, rules, now)
        session.add(lead)
        return lead.score

    def rescore(self, lead_id: int, rules: Scoring, now: datetime) -> tuple[int, int | None]:
        """Recompute one lead's score (expiry, new rules, an override) and qualify it if it now has earned it."""
        with self.session() as session:
            return self.settle_in(session, self._locked(session, lead_id), rules, now)

    def override(self, event_id: int, counted: bool, who: str, rules: Scoring, now: datetime) -> tuple[int, int | None]:
        """A person's judgment on one event: count it after all, or not. The raw event stays as it was."""
        with self.session() as session:
            event = session.get(Event, event_id)
            if event is None:
                raise InputError(f"no event {event_id}")
            lead = self._locked(session, event.lead_id)
            if counted and not event.counted and event.credit_for and self._credited(session, event.credit_for):
                raise InputError(f"event {event_id} was already credited by another event of the same email")
            event.counted = counted
            event.credit_key = event.credit_for if counted else None
            event.reason = None if counted else f"not counted, by {who}"
            if counted:
                event.detail = f"counted by {who}" + (f"; {event.detail}" if event.detail else "")
            session.add(event)
            session.flush()
            return self.settle_in(session, lead, rules, now)

    def credited(self, key: str) -> bool:
        """Whether an event already holds this once-only credit."""
        with self.session() as session:
            return self._credited(session, key)

    @staticmethod
    def _credited(session: Session, key: str) -> bool:
        return session.exec(select(Event.id).where(Event.credit_key == key)).first() is not None

    @staticmethod
    def _score(session: Session, lead: Lead, rules: Scoring, now: datetime) -> int:
        """The sum of the counted points of the lead's current cycle (all cycles without reset), unexpired."""
        first_cycle = lead.cycle if rules.reset_on_recycle else 0
        query = select(func.coalesce(func.sum(Event.points), 0)).where(
            Event.lead_id == lead.id, col(Event.counted).is_(True), col(Event.cycle) >= first_cycle)
        cutoff = scoring.expiry_cutoff(rules, now)
        if cutoff is not None:
            query = query.where(col(Event.occurred_at) >= cutoff)
        return int(session.exec(query).one())

    def quiet_leads(self, days: float, now: datetime) -> list[tuple[int, int, datetime]]:
        """MQLs with no counted open or click for `days`: (lead id, cycle, when the quiet began)."""
        active = (select(Event.lead_id, func.max(Event.occurred_at).label("last"))
                  .where(col(Event.kind).in_([EventKind.OPEN, EventKind.CLICK]), col(Event.counted).is_(True))
                  .group_by(col(Event.lead_id)).subquery())
        query = (select(Lead.id, Lead.cycle, Lead.cycle_started_at, active.c.last)  # type: ignore[call-overload]
                 .join(active, active.c.lead_id == Lead.id, isouter=True)
                 .where(Lead.stage == Stage.MQL, col(Lead.suppressed).is_(None)))
        with self.session() as session:
            rows = session.exec(query).all()
        quiet = []
        for lead_id, cycle, started, last in rows:
            since = max(started, last) if last else started
            if since.tzinfo is None:  # SQLite hands aggregates back without the column's type
                since = since.replace(tzinfo=now.tzinfo)
            if now - since >= timedelta(days=days):
                quiet.append((lead_id or 0, cycle, since))
        return quiet

    def repoint(self, points: Sequence[tuple[int, int]]) -> None:
        """Set what events are worth, by id (rescoring under new rules); counted flags stay as judged."""
        if points:
            with self.session() as session:
                session.execute(update(Event), [{"id": event_id, "points": value} for event_id, value in points])

    def events_of(self, lead_id: int) -> list[Event]:
        with self.session() as session:
            query = select(Event).where(Event.lead_id == lead_id).order_by(col(Event.id))
            return list(session.exec(query).all())

    def suppress(self, lead_id: int, reason: Suppression, now: datetime, rules: Scoring,
                 detail: str | None = None) -> bool:
        """Stop all mail to a lead and score the matching rule once; False if it was suppressed already."""
        with self.session() as session:
            return self.suppress_in(session, lead_id, reason, now, rules, detail)

    def suppress_in(self, session: Session, lead_id: int, reason: Suppression, now: datetime, rules: Scoring,
                    detail: str | None = None) -> bool:
        """`suppress` inside the caller's transaction."""
        kind = SUPPRESSION_EVENTS[reason]
        lead = session.exec(select(Lead).where(Lead.id == lead_id).with_for_update()).one()
        if lead.suppressed is not None:
            return False
        credit = scoring.credit_suppression(kind, lead_id, lead.cycle, rules)
        lead.suppressed = reason
        self.record_in(session, Hit(lead_id, kind, now, credit, detail=detail), rules)
        return True

    # hand-offs

    def handoff(self, handoff_id: int) -> Handoff | None:
        with self.session() as session:
            return session.get(Handoff, handoff_id)

    def handoffs_of(self, lead_id: int) -> list[Handoff]:
        with self.session() as session:
            query = select(Handoff).where(Handoff.lead_id == lead_id).order_by(col(Handoff.id))
            return list(session.exec(query).all())

    def pending_handoffs(self) -> list[Handoff]:
        query = select(Handoff).where(col(Handoff.state).in_([HandoffState.PENDING, HandoffState.SENDING]))
        with self.session() as session:
            return list(session.exec(query.order_by(col(Handoff.id))).all())

    def claim_handoff(self, handoff_id: int, message_id: str) -> bool:
        """Take a pending hand-off for delivery; False if another worker has it or it went out."""
        with self.session() as session:
            result = session.exec(update(Handoff).where(
                col(Handoff.id) == handoff_id, col(Handoff.state) == HandoffState.PENDING,
            ).values(state=HandoffState.SENDING, message_id=message_id, claimed_at=datetime.now(UTC)))
            return result.rowcount == 1  # type: ignore[attr-defined]

    def release_stale_handoffs(self, before: datetime) -> int:
        """Hand-offs left 'sending' by a worker that died go back to pending (sent again, same Message-ID)."""
        with self.session() as session:
            result = session.exec(update(Handoff).where(  # type: ignore[call-overload]
                col(Handoff.state) == HandoffState.SENDING, col(Handoff.claimed_at) < before,
            ).values(state=HandoffState.PENDING))
            return int(result.rowcount)

    def finish_handoff(self, handoff_id: int, delivered: bool, now: datetime) -> None:
        state, sent_at = (HandoffState.SENT, now) if delivered else (HandoffState.PENDING, None)
        with self.session() as session:
            session.exec(update(Handoff).where(col(Handoff.id) == handoff_id)
                         .values(state=state, sent_at=sent_at))

    def decide(self, handoff_id: int, outcome: Outcome, now: datetime, rules: Scoring) -> Lead:
        """Record sales' outcome: won ends the journey, no result starts a new nurture cycle."""
        with self.session() as session:
            handoff = session.get(Handoff, handoff_id)
            if handoff is None:
                raise InputError(f"no hand-off {handoff_id}")
            lead = session.exec(select(Lead).where(Lead.id == handoff.lead_id).with_for_update()).one()
            if handoff.outcome is not None or lead.cycle != handoff.cycle:
                raise InputError(f"this hand-off was already decided: {handoff.outcome or 'superseded'}")
            handoff.outcome, handoff.decided_at = outcome, now
            if outcome is Outcome.WON:
                lead.stage = scoring.move(lead.stage, Stage.WON)
            else:
                lead.stage = scoring.move(lead.stage, Stage.MQL)
                lead.cycle += 1
                lead.cycle_started_at = now
                lead.score = self._score(session, lead, rules, now)
            session.add(lead)
            return lead

    # feeds

    def feed_states(self) -> dict[str, FeedState]:
        with self.session() as session:
            return {state.feed: state for state in session.exec(select(FeedState)).all()}

    def save_feed(self, state: FeedState, items: Sequence[FeedItem]) -> int:
        """Store a feed's fetch result and its new items; return how many items were new."""
        with self.session() as session:
            guids = [item.guid for item in items]
            known = set(session.exec(select(FeedItem.guid).where(
                FeedItem.feed == state.feed, col(FeedItem.guid).in_(guids))).all())
            new = [item for item in {item.guid: item for item in items}.values() if item.guid not in known]
            session.add_all(new)
            session.merge(state)
            return len(new)

    def items(self, feeds: Sequence[str] | None = None, limit: int = 100) -> list[FeedItem]:
        query = select(FeedItem)
        if feeds is not None:
            query = query.where(col(FeedItem.feed).in_(feeds))
        with self.session() as session:
            return list(session.exec(query.order_by(col(FeedItem.published).desc()).limit(limit)).all())

    # the development sink

    def add_sink_message(self, message: SinkMessage) -> None:
        with self.session() as session:
            session.add(message)

    def sink_messages(self, limit: int = 100, recipient: str | None = None) -> list[SinkMessage]:
        with self.session() as session:
            rows = session.exec(select(SinkMessage).order_by(col(SinkMessage.id).desc()).limit(limit)).all()
        return [row for row in rows if recipient is None or recipient in row.recipients]

    def sink_message(self, message_id: int) -> SinkMessage | None:
        with self.session() as session:
            return session.get(SinkMessage, message_id)

    def clear_sink(self) -> None:
        with self.session() as session:
            session.exec(SinkMessage.__table__.delete())  # type: ignore[attr-defined]

