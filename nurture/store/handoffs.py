"""Hand-offs to sales and the outcomes sales records."""


from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select

from nurture.errors import InputError
from nurture.models import (
    AWAITING,
    OPEN_HANDOFFS,
    Handoff,
    HandoffState,
    Lead,
    Outcome,
    Stage,
    WebhookDelivery,
)
from nurture.score import rules as scoring
from nurture.settings import Program, Scoring
from nurture.store.leads import schedule
from nurture.store.ledger import Ledger

OUTCOME_STAGES = {Outcome.WON: Stage.WON, Outcome.NOT_A_FIT: Stage.DISQUALIFIED}  # the rest: back to nurture


class Handoffs(Ledger):
    # hand-offs

    def handoff(self, handoff_id: int) -> Handoff | None:
        with self.session() as session:
            return session.get(Handoff, handoff_id)

    def handoffs_of(self, lead_id: int) -> list[Handoff]:
        with self.session() as session:
            query = select(Handoff).where(Handoff.lead_id == lead_id).order_by(col(Handoff.id))
            return list(session.exec(query).all())

    def pending_handoffs(self) -> list[Handoff]:
        query = select(Handoff).where(OPEN_HANDOFFS)  # through ix_handoff_open
        with self.session() as session:
            return list(session.exec(query.order_by(col(Handoff.id))).all())

    def claim_handoff(self, handoff_id: int, message_id: str, owner_name: str = "", owner_email: str = "") -> bool:
        """Take a pending hand-off for delivery to its owner; False if another worker has it or it went out."""
        with self.session() as session:
            result = session.exec(update(Handoff).where(
                col(Handoff.id) == handoff_id, col(Handoff.state) == HandoffState.PENDING,
            ).values(state=HandoffState.SENDING, message_id=message_id, claimed_at=self.clock(),
                     owner_name=owner_name, owner_email=owner_email))
            return result.rowcount == 1  # type: ignore[attr-defined]

    def waiting_for_outcome(self, sent_before: datetime, unset: str) -> list[Handoff]:
        """Hand-offs whose mail went before `sent_before` and that have no outcome yet (nor `unset`, the
        follow-up not yet made: reminded_at or escalated_at), whose lead is still in that cycle."""
        column = col(getattr(Handoff, unset))
        with self.reading() as session:
            return list(session.exec(select(Handoff).join(Lead, col(Lead.id) == col(Handoff.lead_id)).where(
                AWAITING, column.is_(None),  # through ix_handoff_awaiting
                col(Handoff.sent_at) < sent_before, col(Lead.cycle) == col(Handoff.cycle))).all())

    def claim_follow_up(self, handoff_id: int, unset: str, now: datetime) -> bool:
        """Take one follow-up (reminded_at or escalated_at) of a hand-off: once, whatever the workers."""
        with self.session() as session:
            result = session.exec(update(Handoff).where(col(Handoff.id) == handoff_id,
                                                        col(getattr(Handoff, unset)).is_(None),
                                                        col(Handoff.outcome).is_(None)).values({unset: now}))
            return result.rowcount == 1  # type: ignore[attr-defined]

    # the hand-off posted to a webhook

    def add_webhook(self, handoff_id: int, url: str, now: datetime) -> None:
        """Record that this hand-off is to be posted to `url`, before anything is sent; once a hand-off."""
        with self.session() as session:
            if session.exec(select(WebhookDelivery).where(WebhookDelivery.handoff_id == handoff_id)).first() is None:
                session.add(WebhookDelivery(handoff_id=handoff_id, url=url, next_at=now))

    def due_webhooks(self, now: datetime) -> list[WebhookDelivery]:
        with self.reading() as session:
            return list(session.exec(select(WebhookDelivery).where(
                WebhookDelivery.state == "pending", col(WebhookDelivery.next_at) <= now)
                .order_by(col(WebhookDelivery.id))).all())

    def claim_webhook(self, delivery: WebhookDelivery, now: datetime, lease: timedelta) -> bool:
        """Hold a due delivery for `lease` (moving its next try on): two workers never post it at once."""
        with self.session() as session:
            result = session.exec(update(WebhookDelivery).where(
                col(WebhookDelivery.id) == delivery.id, col(WebhookDelivery.state) == "pending",
                col(WebhookDelivery.next_at) == delivery.next_at).values(next_at=now + lease))
            return result.rowcount == 1  # type: ignore[attr-defined]

    def finish_webhook(self, delivery_id: int, state: str, attempts: int, next_at: datetime, error: str | None,
                       delivered_at: datetime | None) -> None:
        with self.session() as session:
            session.exec(update(WebhookDelivery).where(col(WebhookDelivery.id) == delivery_id).values(
                state=state, attempts=attempts, next_at=next_at, error=error, delivered_at=delivered_at))

    def webhooks(self, state: str | None = None, limit: int = 100) -> list[WebhookDelivery]:
        query = select(WebhookDelivery)
        if state:
            query = query.where(WebhookDelivery.state == state)
        with self.reading() as session:
            return list(session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit)).all())

    def release_stale_handoffs(self, before: datetime) -> int:
        """Hand-offs left 'sending' by a worker that died go back to pending (sent again, same Message-ID)."""
        with self.session() as session:
            result = session.exec(update(Handoff).where(  # type: ignore[call-overload]
                OPEN_HANDOFFS, col(Handoff.state) == HandoffState.SENDING, col(Handoff.claimed_at) < before,
            ).values(state=HandoffState.PENDING))
            return int(result.rowcount)

    def finish_handoff(self, handoff_id: int, delivered: bool, now: datetime) -> None:
        state, sent_at = (HandoffState.SENT, now) if delivered else (HandoffState.PENDING, None)
        with self.session() as session:
            session.exec(update(Handoff).where(col(Handoff.id) == handoff_id)
                         .values(state=state, sent_at=sent_at))

    def decide(self, handoff_id: int, outcome: Outcome, now: datetime, rules: Scoring, program: Program,
               note: str | None = None) -> Lead:
        """Record sales' outcome (and its note): won ends the journey, not a fit disqualifies the lead (nurture
        stops), lost and no result start a new nurture cycle."""
        with self.session() as session:
            handoff = session.get(Handoff, handoff_id)
            if handoff is None:
                raise InputError(f"no hand-off {handoff_id}")
            lead = session.exec(select(Lead).where(Lead.id == handoff.lead_id).with_for_update()).one()
            if handoff.outcome is not None or lead.cycle != handoff.cycle:
                raise InputError(f"this hand-off was already decided: {handoff.outcome or 'superseded'}")
            handoff.outcome, handoff.decided_at, handoff.note = outcome, now, note
            if outcome in OUTCOME_STAGES:
                lead.stage = scoring.move(lead.stage, OUTCOME_STAGES[outcome])
            else:
                lead.stage = scoring.move(lead.stage, Stage.MQL)
                lead.cycle += 1
                lead.cycle_started_at = now
                lead.last_step = lead.last_mailed_at = None  # nothing recorded in the new cycle yet
                lead.score = self._score(session, lead, rules, now)
            schedule(lead, program)  # the new cycle's first digest; none once won or not a fit
            session.add(lead)
            return lead
