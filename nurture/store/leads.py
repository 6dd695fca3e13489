"""Leads, their send history, and the items they have not been sent."""


from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from nurture.errors import InputError, UnknownLead
from nurture.models import (
    FeedItem,
    Lead,
    Send,
    SendItem,
    Stage,
)
from nurture.program import History
from nurture.store.base import Base

T = TypeVar("T")


IN_LIST = 10_000  # values per IN (...): PostgreSQL's driver takes at most 65,535 parameters a statement


def chunked(values: Sequence[T], size: int = IN_LIST) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Leads(Base):
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
            taken = [email for chunk in chunked(emails) for email in
                     session.exec(select(Lead.email).where(col(Lead.email).in_(chunk))).all()]
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

    def lead_ids_in(self, stage: Stage, min_score: int | None = None) -> list[int]:
        """The leads in `stage` (with at least `min_score` points, when given), by id."""
        query = select(Lead.id).where(Lead.stage == stage)
        if min_score is not None:
            query = query.where(Lead.score >= min_score)
        with self.reading() as session:
            return [lead_id for lead_id in session.exec(query.order_by(col(Lead.id))).all() if lead_id is not None]

    def leads_by_id(self, ids: Sequence[int]) -> dict[int, Lead]:
        with self.reading() as session:
            return {lead.id: lead for chunk in chunked(ids) if chunk
                    for lead in session.exec(select(Lead).where(col(Lead.id).in_(chunk))).all() if lead.id is not None}

    def emails_by_id(self, ids: Sequence[int]) -> dict[int, str]:
        """The email address of each lead: cheaper than whole leads, where that is all a caller needs."""
        with self.reading() as session:
            return {lead_id: email for chunk in chunked(ids) if chunk
                    for lead_id, email in session.exec(select(Lead.id, Lead.email).where(col(Lead.id).in_(chunk)))
                    if lead_id is not None}

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
