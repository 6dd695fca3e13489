"""The funnel: how many people reached each stage, overall, per cohort and per segment; how long they took
to reach sales; where the current MQLs' scores stand. One aggregate query over the leads each, with the
facts of each lead (was it nurtured, did a person engage, its hand-offs) looked up by index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select, case, column, func, select, text
from sqlalchemy.sql.elements import ColumnClause, ColumnElement

from nurture import models
from nurture.models import Outcome
from nurture.report import sql
from nurture.report.sql import CONSENTS, HANDOFFS, LEAD_DAYS, LEADS, SENDS, Window
from nurture.store.figures import cohorts as kept
from nurture.store.figures.cohorts import SQL_WITHIN_DAYS

NURTURED = text(str(models.NURTURED))  # word for word: SQLite takes a partial index only for its own condition

SEGMENTS = ("industry", "customer", "locale", "country", "source", "interest")


@dataclass(frozen=True)
class Stages:
    """People at each stage of the funnel. A lead may skip one: it can engage before it is nurtured (the
    confirmation mail is tracked too) or go to sales having opened nothing (a form on the website):

    leads: created; confirmed: gave consent; mql: nurtured (a digest went out: a Marketing Qualified Lead);
    engaged: a person (never a machine) opened or clicked one of its mails; sql: handed to sales at least
    once (`sql_within`: within SQL_WITHIN_DAYS of its creation); won: sales won it; no_deal: sales reported
    lost or no result and never won it; not_a_fit: disqualified by sales.
    """

    label: str
    leads: int
    confirmed: int
    mql: int
    engaged: int
    sql: int
    sql_within: int
    won: int
    no_deal: int
    not_a_fit: int
    sql_of_mql: int  # handed to sales after its first digest went: the MQLs that became SQLs

    @property
    def mql_to_sql(self) -> float | None:
        """Of the MQLs, the share that went to sales (a lead that asked before its first digest is an SQL
        that was never an MQL: it is not counted here)."""
        return ratio(self.sql_of_mql, self.mql)

    @property
    def sql_to_won(self) -> float | None:
        return ratio(self.won, self.sql)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def stages(connection: Connection, window: Window, by: str, period: str = "month") -> list[Stages]:
    """The funnel of the leads created in `window`, one row per cohort (`by` "cohort": the `period` they
    were created in) or per value of a segment (SEGMENTS); `overall` sums the cohorts. On SQLite, the
    cohorts of a window of whole days are read off the figures it keeps a day at a time (nurture.store.figures)."""
    if by == "cohort" and connection.dialect.name == "sqlite" and window.whole_days:
        query = sql.day_sums(LEAD_DAYS, kept.FIGURES, window, sql.period_of("sqlite", LEAD_DAYS.c.day, period))
        return [Stages(str(row[0]), *(int(value or 0) for value in row[1:])) for row in connection.execute(query)]
    return live_stages(connection, window, by, period)


def live_stages(connection: Connection, window: Window, by: str, period: str = "month") -> list[Stages]:
    """`stages` read off the leads, their first digests and their hand-offs."""
    dialect = connection.dialect.name
    handoffs = _handoffs_by_lead()
    label, source = segment_of(dialect, by, period)
    mailed = (select(SENDS.c.lead_id).where(SENDS.c.step == 1, SENDS.c.sent_at.is_not(None))
              .group_by(SENDS.c.lead_id).subquery("nurtured"))  # its first digest went (in any cycle)
    nurtured = mailed.c.lead_id.is_not(None)
    engaged = LEADS.c.engaged_at.is_not(None)  # kept by the judge (nurture.store.engagement)
    within = sql.days_between(dialect, LEADS.c.created_at, handoffs.c.first_at) <= SQL_WITHIN_DAYS
    query = (select(label.label("label"), func.count().label("leads"), func.count(LEADS.c.confirmed_at),
                    _sum(nurtured), _sum(engaged), func.count(handoffs.c.first_at), _sum(within),
                    _sum(handoffs.c.won == 1), _sum((handoffs.c.no_deal == 1) & (handoffs.c.won == 0)),
                    _sum(handoffs.c.not_a_fit == 1), _sum(nurtured & handoffs.c.first_at.is_not(None)))
             .select_from(source.outerjoin(handoffs, handoffs.c.lead_id == LEADS.c.id)
                          .outerjoin(mailed, mailed.c.lead_id == LEADS.c.id))
             .where(*window.holds(LEADS.c.created_at))
             .group_by(label).order_by(label))
    return [Stages(str(row[0]), *(int(value or 0) for value in row[1:])) for row in connection.execute(query)]


def overall(cohorts: Sequence[Stages]) -> Stages:
    """The funnel of every lead, from its cohorts (each lead is in one)."""
    return Stages("all leads", *(sum(getattr(row, name) for row in cohorts) for name in (
        "leads", "confirmed", "mql", "engaged", "sql", "sql_within", "won", "no_deal", "not_a_fit", "sql_of_mql")))


def _sum(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


def _handoffs_by_lead() -> Any:
    """Per lead: its first hand-off, and whether sales ever won it, ended it without a deal, or found it no fit."""
    def ever(*outcomes: Outcome) -> ColumnElement[int]:
        return func.max(case((HANDOFFS.c.outcome.in_(outcomes), 1), else_=0))

    return (select(HANDOFFS.c.lead_id, func.min(HANDOFFS.c.created_at).label("first_at"),
                   ever(Outcome.WON).label("won"), ever(Outcome.LOST, Outcome.NO_RESULT).label("no_deal"),
                   ever(Outcome.NOT_A_FIT).label("not_a_fit"))
            .group_by(HANDOFFS.c.lead_id).subquery("handoffs"))


def segment_of(dialect: str, by: str, period: str = "month", leads: Any = LEADS) -> tuple[ColumnElement[Any], Any]:
    """What names a lead's row by `by` (a segment, or its cohort of `period`), and the leads joined to what
    names them: a lead counts under each of its interests. `leads` is the lead table, or a selection of
    leads with its columns and their `id`: only those are named."""
    match by:
        case "cohort":
            return sql.period_of(dialect, leads.c.created_at, period), leads
        case "industry":
            return func.coalesce(func.nullif(leads.c.industry, ""), "(none)"), leads
        case "customer":
            return case((leads.c.customer.is_(True), "customer"), else_="prospect"), leads
        case "locale":
            return leads.c.locale, leads
        case "country":
            return func.coalesce(func.nullif(leads.c.country, ""), "(unknown)"), leads
        case "source":
            consents = select(CONSENTS.c.lead_id, func.min(CONSENTS.c.id).label("first"))
            if leads is not LEADS:  # the first consents of those leads alone, not of every lead
                consents = consents.where(CONSENTS.c.lead_id.in_(select(leads.c.id)))
            first = consents.group_by(CONSENTS.c.lead_id).subquery("first_consent")
            how = CONSENTS.alias("signup")
            name = case((how.c.how.like("import%"), "import"), (how.c.how.like("api%"), "api"),
                        else_=func.coalesce(how.c.how, "(unknown)"))
            return name, leads.outerjoin(first, first.c.lead_id == leads.c.id).outerjoin(
                how, how.c.id == first.c.first)
        case "interest":
            interests = sql.interests_of(dialect, leads).subquery("interests")
            return interests.c.value, leads.join(interests, interests.c.lead_id == leads.c.id)
    raise ValueError(f"segment {by!r}: one of {', '.join(SEGMENTS)}")


@dataclass(frozen=True)
class Distribution:
    """How many of a whole fall on each value (days to SQL, a score), and what that says."""

    counts: tuple[tuple[int, int], ...]  # (value, how many), by value

    @property
    def total(self) -> int:
        return sum(count for _, count in self.counts)

    def quantile(self, share: float) -> int | None:
        """The smallest value at or below which `share` of the whole falls (None: there is none)."""
        if not self.total:
            return None
        seen = 0
        for value, count in self.counts:
            seen += count
            if seen >= share * self.total:
                return value
        return self.counts[-1][0]

    @property
    def median(self) -> int | None:
        return self.quantile(0.5)

    def buckets(self, edges: Sequence[int]) -> list[tuple[str, int]]:
        """Counts in the ranges that `edges` start: [0, 7) is "0-6", the last is "N+"."""
        found = []
        for low, high in zip(edges, [*edges[1:], None], strict=True):
            count = sum(n for value, n in self.counts if value >= low and (high is None or value < high))
            found.append((f"{low}+" if high is None else f"{low}-{high - 1}", count))
        return found


def days_to_sql(connection: Connection, window: Window) -> Distribution:
    """Whole days from a lead's creation to its first hand-off, over the leads created in `window`."""
    first = (select(HANDOFFS.c.lead_id, func.min(HANDOFFS.c.created_at).label("at"))
             .group_by(HANDOFFS.c.lead_id).subquery("first_handoff"))
    days = sql.whole_days(connection.dialect.name, LEADS.c.created_at, first.c.at).label("days")
    query = (select(days, func.count()).select_from(LEADS.join(first, first.c.lead_id == LEADS.c.id))
             .where(*window.holds(LEADS.c.created_at)).group_by(days).order_by(days))
    return Distribution(tuple((int(value), int(count)) for value, count in connection.execute(query)))


@dataclass(frozen=True)
class InNurture:
    """How many leads in nurture now (confirmed MQLs, neither suppressed nor erased) hold each score, by
    segment (customer or not, industry): read once for their scores and for the thresholds."""

    counts: tuple[tuple[int, bool, str, int], ...]  # (score, customer, industry, how many)

    @property
    def scores(self) -> Distribution:
        found: dict[int, int] = {}
        for score, _, _, count in self.counts:
            found[score] = found.get(score, 0) + count
        return Distribution(tuple(sorted(found.items())))


def in_nurture(connection: Connection) -> InNurture:
    # off ix_lead_nurtured alone, which SQLite, with no statistics, would pass over for ix_lead_stage and the rows
    source = text("lead INDEXED BY ix_lead_nurtured") if connection.dialect.name == "sqlite" else LEADS
    named: list[ColumnClause[Any]] = [column("score"), column("customer"), column("industry")]
    query: Select[Any] = select(*named, func.count()).select_from(source).where(NURTURED).group_by(*named)
    return InNurture(tuple((int(score), bool(customer), str(industry), int(count))
                           for score, customer, industry, count in connection.execute(query)))
