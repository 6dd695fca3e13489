"""Events and scores: credit once, score exactly, qualify exactly once."""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, update
from sqlalchemy import select as core_select  # for table columns; sqlmodel's select is for models
from sqlmodel import Session, col, select

from nurture.errors import InputError, UnknownLead
from nurture.models import (
    PENDING_HITS,
    Event,
    EventKind,
    Handoff,
    Lead,
    Stage,
    Suppression,
)
from nurture.score import rules as scoring
from nurture.settings import Program, Scoring
from nurture.store import engagement
from nurture.store.base import SUPPRESSION_EVENTS, Base, NewEvent, Recorded, chunked, insert_rows
from nurture.store.leads import schedule

EVENTS = Event.__table__  # type: ignore[attr-defined]
LEADS = Lead.__table__  # type: ignore[attr-defined]
# set-based statements, built once (an expanding IN list compiles to the same cached SQL every time)
LOCK_LEADS = (core_select(LEADS.c.id, LEADS.c.stage, LEADS.c.cycle, LEADS.c.suppressed, LEADS.c.customer,
                     LEADS.c.industry, LEADS.c.score, LEADS.c.erased_at)
              .where(LEADS.c.id.in_(bindparam("ids", expanding=True))).order_by(LEADS.c.id).with_for_update())
HELD_CREDITS = core_select(EVENTS.c.credit_key).where(EVENTS.c.credit_key.in_(bindparam("keys", expanding=True)))
ADD_POINTS = update(LEADS).where(LEADS.c.id == bindparam("lead")).values(score=LEADS.c.score + bindparam("delta"))


# characters kept of a click's link: ix_event_person_click holds them, and PostgreSQL takes 2,704 bytes an entry
URL_KEPT = 2000
TAG_KEPT = 200


def _kept(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


def event_row(hit: NewEvent, cycle: int, reason: str | None, journalled: int | None = None,
              machine: bool = False) -> dict[str, Any]:
    """The Event row of a hit: counted unless there is a reason not to (scoring.refusal). `journalled`: the
    key of the tracking server's hit it was judged from; `machine`: the reason is that a machine made it."""
    key = hit.credit.key
    return dict(lead_id=hit.lead_id, cycle=cycle, send_id=hit.send_id, kind=hit.kind, link=hit.link,
                url=_kept(hit.url, URL_KEPT), tag=_kept(hit.tag, TAG_KEPT), action=hit.action,
                occurred_at=hit.occurred_at, method=hit.method, user_agent=(hit.user_agent or "")[:300] or None,
                client=hit.client, detail=hit.detail,
                points=hit.credit.points, counted=reason is None, reason=reason, credit_for=key,
                credit_key=key if reason is None else None, hit=journalled, machine=machine)


class Ledger(Base):
    # events and scores

    def pending_hits(self) -> int:
        """Opens and clicks stored by the tracking server and not yet judged."""
        with self.journal_reader.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(PENDING_HITS)).scalar_one())

    def record(self, hit: NewEvent, rules: Scoring) -> Recorded:
        """Store one event, credit it at most once, and qualify the lead when it reaches the threshold."""
        with self.session() as session:
            return self.record_in(session, hit, rules)

    def record_in(self, session: Session, hit: NewEvent, rules: Scoring) -> Recorded:
        """`record` inside the caller's transaction."""
        lead = self._locked(session, hit.lead_id)
        event = self._insert_event(session, lead, hit)
        score, handoff_id = self.qualify_in(session, lead, rules, hit.occurred_at, force=hit.qualify and event.counted)
        return Recorded(event, score, handoff_id)

    @staticmethod
    def lock_leads_in(connection: Connection, lead_ids: Sequence[int]) -> dict[int, Any]:
        """Lock these leads for the caller's transaction, in the order of their ids (as every writer that
        locks several does, so that two never wait for each other); return their rows."""
        return {row.id: row for chunk in chunked(sorted(set(lead_ids)))
                for row in connection.execute(LOCK_LEADS, {"ids": list(chunk)})}

    def record_costs_in(self, connection: Connection, hits: Sequence[NewEvent],
                        locked: Mapping[int, Any] | None = None) -> None:
        """Record many events that earn no points or cost some (a digest's cost), in the caller's
        transaction: a statement for all, not an ORM transaction each. Each credit is booked once, as by
        `record_in`; none of these can qualify a lead. A score moves by the points counted, as the judge's
        do, where `record_in` counts it again: the two agree while the stored score is exact, which
        Engine.apply_rules sees to (expired points) before each run. `locked`: the leads' rows, when the
        caller has locked them already (lock_leads_in)."""
        if any(hit.credit.points > 0 or hit.qualify for hit in hits):
            raise ValueError("record_costs_in records costs only: an event that earns points may qualify its lead")
        leads = locked if locked is not None else self.lock_leads_in(connection, [hit.lead_id for hit in hits])
        keys = [hit.credit.key for hit in hits if hit.credit.key]
        held = {key for chunk in chunked(keys) for (key,) in connection.execute(HELD_CREDITS, {"keys": list(chunk)})}
        rows: list[dict[str, Any]] = []
        delta: dict[int, int] = defaultdict(int)
        for hit in hits:
            lead = leads.get(hit.lead_id)
            if lead is None:
                raise UnknownLead(f"no lead with id {hit.lead_id}")
            key, reason = hit.credit.key, _refusal(hit, lead.stage, held)
            if reason is None and key:
                held.add(key)
            if reason is None:
                delta[hit.lead_id] += hit.credit.points
            rows.append(event_row(hit, lead.cycle, reason))
        insert_rows(connection, EVENTS, rows)
        changes = [{"lead": lead_id, "delta": points} for lead_id, points in delta.items() if points]
        if changes:
            connection.execute(ADD_POINTS, changes)

    @staticmethod
    def _locked(session: Session, lead_id: int) -> Lead:
        lead = session.exec(select(Lead).where(Lead.id == lead_id).with_for_update()).first()
        if lead is None:
            raise UnknownLead(f"no lead with id {lead_id}")
        return lead

    def qualify_in(self, session: Session, lead: Lead, rules: Scoring, now: datetime,
                force: bool = False) -> tuple[int, int | None]:
        """Bring the lead's score up to date; qualify it (one hand-off per cycle) once it has earned it."""
        score = self._score(session, lead, rules, now)
        lead.score = score
        session.add(lead)
        earned = force or scoring.qualifies(lead.stage, score, rules, lead.customer, lead.industry) or (
            rules.callback_qualifies and self._called_back(session, lead))
        if not earned or lead.stage is not Stage.MQL or lead.suppressed is not None:
            return score, None
        assert lead.id is not None
        lead.stage = scoring.move(lead.stage, Stage.SQL)
        lead.due_at = None  # with sales: nurture stops
        handoff = Handoff(lead_id=lead.id, cycle=lead.cycle, score=score, created_at=now)
        session.add(handoff)
        session.flush()
        return score, handoff.id

    @staticmethod
    def _called_back(session: Session, lead: Lead) -> bool:
        """Whether a counted click on a mail's "Call back" is in the lead's cycle (scoring.callback_qualifies)."""
        return session.exec(select(Event.id).where(
            Event.lead_id == lead.id, Event.cycle == lead.cycle, Event.kind == EventKind.CLICK,
            Event.action == "callback", col(Event.counted).is_(True)).limit(1)).first() is not None

    def _insert_event(self, session: Session, lead: Lead, hit: NewEvent) -> Event:
        key = hit.credit.key
        held = {key} if key and self._credited(session, key) else set()
        event = Event(**event_row(hit, lead.cycle, _refusal(hit, lead.stage, held)))
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
            return self.qualify_in(session, self._locked(session, lead_id), rules, now)

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
            event.machine = event.machine and not counted  # a person who counts it says a person made it
            if counted:
                event.detail = f"counted by {who}" + (f"; {event.detail}" if event.detail else "")
            session.add(event)
            session.flush()
            if event.send_id is not None and event.kind in (EventKind.OPEN, EventKind.CLICK):
                engagement.recount(session.connection(), [event.send_id], [event.lead_id])
            return self.qualify_in(session, lead, rules, now)

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
        within = scoring.scope(rules, lead.cycle, now)
        query = select(func.coalesce(func.sum(Event.points), 0)).where(
            Event.lead_id == lead.id, col(Event.counted).is_(True), col(Event.cycle) >= within.first_cycle)
        if within.cutoff is not None:
            query = query.where(col(Event.occurred_at) >= within.cutoff)
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
                 detail: str | None = None, send_id: int | None = None, action: str | None = None) -> bool:
        """Stop all mail to a lead and score the matching rule once; False if it was suppressed already."""
        with self.session() as session:
            return self.suppress_in(session, lead_id, reason, now, rules, detail, send_id, action)

    def suppress_in(self, session: Session, lead_id: int, reason: Suppression, now: datetime, rules: Scoring,
                    detail: str | None = None, send_id: int | None = None, action: str | None = None) -> bool:
        """`suppress` inside the caller's transaction; `send_id`, `action` and `detail` describe its event
        (the send a bounce came back for, what kind of bounce, the server's words)."""
        kind = SUPPRESSION_EVENTS[reason]
        lead = session.exec(select(Lead).where(Lead.id == lead_id).with_for_update()).one()
        if lead.suppressed is not None:
            return False
        credit = scoring.credit_suppression(kind, lead_id, lead.cycle, rules)
        lead.suppressed = reason
        lead.due_at = None
        self.record_in(session, NewEvent(lead_id, kind, now, credit, send_id=send_id, action=action, detail=detail),
                       rules)
        return True

    def lift_suppression(self, lead_id: int, who: str, rules: Scoring, now: datetime,
                         program: Program) -> Suppression | None:
        """Let a suppressed lead be mailed again: the events that suppressed it in this cycle no longer
        count (a bounce that was the relay's fault, an unsubscribe the person took back), so a later one
        suppresses and scores afresh. Returns what the suppression was, or None when there was none."""
        with self.session() as session:
            lead = self._locked(session, lead_id)
            reason = lead.suppressed
            if reason is None:
                return None
            for event in session.exec(select(Event).where(
                    Event.lead_id == lead_id, Event.kind == SUPPRESSION_EVENTS[reason], Event.cycle == lead.cycle,
                    col(Event.counted).is_(True), Event.points != 0)).all():
                event.counted, event.credit_key = False, None
                event.reason = f"suppression lifted by {who} on {now:%Y-%m-%d}"
                session.add(event)
            lead.suppressed = None
            schedule(lead, program)  # its next digest is due as if it had never been suppressed
            session.add(lead)
            session.flush()
            self.qualify_in(session, lead, rules, now)
            return reason

    def suppressions(self, limit: int = 1000) -> list[tuple[Lead, Event | None]]:
        """The suppressed leads, most recent first, each with the last event of a suppressing kind (the one
        that suppressed it, with its date and the server's or the person's words)."""
        latest = (select(func.max(Event.id)).where(Event.lead_id == Lead.id,
                                                   col(Event.kind).in_(list(SUPPRESSION_EVENTS.values())))
                  .correlate(Lead).scalar_subquery())
        query = (select(Lead, Event).outerjoin(Event, col(Event.id) == latest)
                 .where(col(Lead.suppressed).is_not(None))
                 .order_by(col(Event.occurred_at).desc(), col(Lead.id).desc()).limit(limit))
        with self.reading() as session:
            return [(lead, event) for lead, event in session.exec(query).all()]

    def soft_bounce(self, lead_id: int, send_id: int | None, detail: str, now: datetime, rules: Scoring) -> str:
        """`soft_bounce_in` in a transaction of its own."""
        with self.session() as session:
            return self.soft_bounce_in(session, lead_id, send_id, detail, now, rules)

    def soft_bounce_in(self, session: Session, lead_id: int, send_id: int | None, detail: str, now: datetime,
                       rules: Scoring) -> str:
        """A soft bounce (a full mailbox): an event of no points; the `soft_bounces`-th within
        `soft_bounce_days` suppresses the lead as bounced, and the bounce rule scores it. Says what was done."""
        self.record_in(session, NewEvent(lead_id, EventKind.BOUNCE, now, scoring.Credit(0, None), send_id=send_id,
                                         action="soft", detail=detail[:300]), rules)
        since = now - timedelta(days=rules.soft_bounce_days)
        count = int(session.exec(select(func.count()).select_from(Event).where(
            Event.lead_id == lead_id, Event.kind == EventKind.BOUNCE, Event.action == "soft",
            col(Event.occurred_at) >= since)).one())
        limit, days = rules.soft_bounces, f"{rules.soft_bounce_days:g}"
        if count < limit:
            return f"soft bounce {count} of {limit} in {days} days before lead {lead_id} is suppressed"
        done = self.suppress_in(session, lead_id, Suppression.BOUNCED, now, rules,
                                f"{count} soft bounces in {days} days (the last: {detail})"[:300], send_id, "soft")
        return f"soft bounce {count} in {days} days, lead {lead_id} " + ("suppressed" if done else
                                                                        "was suppressed already")


def _refusal(hit: NewEvent, stage: Stage, held: set[str]) -> str | None:
    return scoring.refusal(hit.kind, stage, hit.credit.key, held, hit.ignored)
