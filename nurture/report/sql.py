"""What the report's queries say differently on SQLite and PostgreSQL: days between two moments, the
start of a week or month, the elements of a JSON list. Each function takes the dialect's name and returns
an expression; the queries stay one text for both databases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import Float, Integer, Select, case, cast, func, select, true
from sqlalchemy.sql.elements import ColumnElement

from nurture.models import Consent, Event, FeedItem, Handoff, Lead, LeadDay, Send, SendItem, StepDay

LEADS = Lead.__table__  # type: ignore[attr-defined]
SENDS = Send.__table__  # type: ignore[attr-defined]
EVENTS = Event.__table__  # type: ignore[attr-defined]
HANDOFFS = Handoff.__table__  # type: ignore[attr-defined]
CONSENTS = Consent.__table__  # type: ignore[attr-defined]
ITEMS = FeedItem.__table__  # type: ignore[attr-defined]
SEND_ITEMS = SendItem.__table__  # type: ignore[attr-defined]
STEP_DAYS = StepDay.__table__  # type: ignore[attr-defined]
LEAD_DAYS = LeadDay.__table__  # type: ignore[attr-defined]

PERIODS = ("week", "month")


def days_between(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    """Days (with their fraction) from `start` to `end`."""
    if dialect == "sqlite":
        return cast(func.julianday(end) - func.julianday(start), Float)
    return cast(func.extract("epoch", end - start) / 86400.0, Float)


def whole_days(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    """Whole days from `start` to `end`, rounded down; NULL where either is (SQLAlchemy's floor() for
    SQLite raises on NULL)."""
    return case((start.is_(None) | end.is_(None), None),
                else_=cast(func.floor(days_between(dialect, start, end)), Integer))


def period_of(dialect: str, moment: Any, period: str) -> ColumnElement[Any]:
    """The first day of the week (a Monday) or month of `moment`, as YYYY-MM-DD."""
    if period not in PERIODS:
        raise ValueError(f"period {period!r}")
    if dialect == "sqlite":
        if period == "month":
            return func.strftime("%Y-%m-01", moment)
        return func.date(moment, "-6 days", "weekday 1")  # the Monday on or before it
    return func.to_char(func.date_trunc(period, func.timezone("UTC", moment)), "YYYY-MM-DD")  # not the session's zone


def interests_of(dialect: str, leads: Any = LEADS) -> Select[Any]:
    """(lead_id, value): a row for each interest of each lead of `leads` (the lead table, or a selection of
    it with the columns `id` and `interests`)."""
    if dialect == "sqlite":
        each = func.json_each(leads.c.interests).table_valued("value")
        return select(leads.c.id.label("lead_id"), each.c.value.label("value")).select_from(leads.join(each, true()))
    # PostgreSQL: a set-returning function in the select list yields a row per element
    return select(leads.c.id.label("lead_id"), func.json_array_elements_text(leads.c.interests).label("value"))


def day_sums(table: Any, figures: Sequence[str], window: Window, *by: ColumnElement[Any]) -> Select[Any]:
    """The sums of `figures` in `table` (figures kept a row a day, nurture.store.figures) over the days of
    `window` (whole days), by `by`, where the first figure counts something, in the order of `by`."""
    sums = [func.sum(table.c[name]) for name in figures]
    return (select(*by, *sums).where(*window.holds_days(table.c.day)).group_by(*by).having(sums[0] > 0)
            .order_by(*by))


@dataclass(frozen=True)
class Window:
    """The span a report covers: [since, until), either end open."""

    since: datetime | None = None
    until: datetime | None = None

    def holds(self, column: Any) -> list[ColumnElement[bool]]:
        """The conditions that keep `column` (a moment) inside the window."""
        conditions = []
        if self.since is not None:
            conditions.append(column >= _utc(self.since))
        if self.until is not None:
            conditions.append(column < _utc(self.until))
        return conditions

    @property
    def whole_days(self) -> bool:
        """Whether each end is open or a midnight (UTC): the window is whole days."""
        return all(end is None or _utc(end).time() == time(0) for end in (self.since, self.until))

    def holds_days(self, column: Any) -> list[ColumnElement[bool]]:
        """The conditions that keep `column` (a day) inside a window of `whole_days`."""
        conditions = []
        if self.since is not None:
            conditions.append(column >= _utc(self.since).date())
        if self.until is not None:
            conditions.append(column < _utc(self.until).date())
        return conditions


def _utc(moment: datetime) -> datetime:
    """A moment without a zone is taken as UTC, as nurture stores every moment."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


ALL_TIME = Window()
