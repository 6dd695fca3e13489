"""What the admin pages read: leads found by search, filter and sort a page at a time, the outbox by state
and its failed sends, feeds with their item counts. Every count, filter, sort and page is the database's:
nothing here loads more rows than one page shows."""


from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, case, func, or_
from sqlmodel import col, select

from nurture.models import FeedItem, Lead, Send, SendState, Stage, Suppression
from nurture.store.base import Base


class LeadOrder(StrEnum):
    """What the leads list may be sorted by."""

    CREATED = "created"
    SCORE = "score"
    EMAIL = "email"
    STAGE = "stage"


FUNNEL = {stage: rank for rank, stage in enumerate(Stage)}  # stages sort as a lead moves, on either database
SUPPRESSED, NOT_SUPPRESSED = "yes", "no"


@dataclass(frozen=True)
class LeadSearch:
    """Which leads a list shows and in what order; None (or empty) means any."""

    text: str = ""  # a substring of the email, name or company, in any case
    stage: Stage | None = None
    industry: str | None = None
    customer: bool | None = None
    locale: str | None = None
    country: str | None = None
    min_score: int | None = None
    max_score: int | None = None
    suppressed: Suppression | str | None = None  # a reason, or SUPPRESSED / NOT_SUPPRESSED
    order: LeadOrder = LeadOrder.CREATED
    descending: bool = True


class StateCount(NamedTuple):
    state: SendState
    sends: int
    next_retry_at: datetime | None  # the soonest a deferred send may be tried again


class FeedCount(NamedTuple):
    items: int
    newest: datetime | None


def lead_filters(search: LeadSearch) -> list[ColumnElement[bool]]:
    """The WHERE of a lead search, one condition per filter given."""
    found: list[ColumnElement[bool]] = []
    if search.text:
        found.append(or_(*(func.lower(column).contains(search.text.lower(), autoescape=True) for column in (
            col(Lead.email), col(Lead.company), col(Lead.first_name) + " " + col(Lead.last_name)))))
    exact: dict[Any, Any] = {Lead.stage: search.stage, Lead.industry: search.industry, Lead.customer: search.customer,
                             Lead.locale: search.locale, Lead.country: search.country}
    found += [col(column) == value for column, value in exact.items() if value is not None]
    if search.min_score is not None:
        found.append(col(Lead.score) >= search.min_score)
    if search.max_score is not None:
        found.append(col(Lead.score) <= search.max_score)
    if search.suppressed == SUPPRESSED:
        found.append(col(Lead.suppressed).is_not(None))
    elif search.suppressed == NOT_SUPPRESSED:
        found.append(col(Lead.suppressed).is_(None))
    elif search.suppressed is not None:
        found.append(col(Lead.suppressed) == Suppression(search.suppressed))
    return found


def lead_order(search: LeadSearch) -> list[Any]:
    """The ORDER BY of a lead search; the id breaks ties, so that pages neither repeat nor skip a lead."""
    funnel = case(*((col(Lead.stage) == stage, rank) for stage, rank in FUNNEL.items()))
    key: Any = {LeadOrder.CREATED: col(Lead.created_at), LeadOrder.SCORE: col(Lead.score),
                LeadOrder.EMAIL: col(Lead.email), LeadOrder.STAGE: funnel}[search.order]
    if search.descending:
        return [key.desc(), col(Lead.id).desc()]
    return [key.asc(), col(Lead.id).asc()]


class Browse(Base):
    # leads

    def find_leads(self, search: LeadSearch, limit: int, offset: int = 0) -> tuple[int, list[Lead]]:
        """How many leads match `search`, and the `limit` of them from `offset` on, in its order."""
        where = lead_filters(search)
        with self.reading() as session:
            total = session.exec(select(func.count()).select_from(Lead).where(*where)).one()
            rows = session.exec(select(Lead).where(*where).order_by(*lead_order(search)).limit(limit).offset(offset))
            return total, list(rows.all())

    # the outbox

    def send_counts(self) -> list[StateCount]:
        """Every state of a send with how many are in it (none too), and when the first deferred is due."""
        query = select(Send.state, func.count(), func.min(Send.retry_at)).group_by(col(Send.state))
        with self.reading() as session:
            found = {state: (count, retry_at) for state, count, retry_at in session.exec(query).all()}
        return [StateCount(state, *found.get(state, (0, None))) for state in SendState]

    def failed_sends(self, limit: int, offset: int = 0) -> list[tuple[Send, str]]:
        """Failed sends, newest first, each with its lead's address."""
        query = (select(Send, Lead.email).join(Lead, col(Lead.id) == col(Send.lead_id))
                 .where(Send.state == SendState.FAILED).order_by(col(Send.id).desc()).limit(limit).offset(offset))
        with self.reading() as session:
            return [(send, email) for send, email in session.exec(query).all()]

    # feeds

    def feed_counts(self) -> dict[str, FeedCount]:
        """Each feed that has items: how many it keeps, and when the newest was published."""
        query = select(FeedItem.feed, func.count(), func.max(FeedItem.published)).group_by(col(FeedItem.feed))
        with self.reading() as session:
            return {feed: FeedCount(count, newest) for feed, count, newest in session.exec(query).all()}
