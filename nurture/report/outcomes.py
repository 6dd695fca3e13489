"""What sales made of the hand-offs, read back against what led to them: which rules, links, tags, feeds
and segments go with a won deal (rate and lift, with their counts), and what other thresholds would have
sent to sales. Only hand-offs with a recorded outcome count; a small sample says so."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, String, and_, case, cast, exists, func, literal, select, text, union_all
from sqlalchemy.sql.elements import ColumnElement

from nurture import models
from nurture.models import EventKind, Outcome
from nurture.report import sql
from nurture.report.funnel import SEGMENTS, Distribution, InNurture, ratio, segment_of
from nurture.report.sql import EVENTS, HANDOFFS, ITEMS, LEADS, SEND_ITEMS, Window
from nurture.score import rules as scoring
from nurture.settings import Scoring

SMALL_SAMPLE = 10  # fewer hand-offs than this say little: marked, never hidden
FEATURES = ("rule", "link", "tag", "feed", *SEGMENTS)
SIGNALS = text(str(models.SIGNALS))  # word for word: SQLite takes a partial index only for its own condition


@dataclass(frozen=True)
class Predictor:
    """Among decided hand-offs where `feature` had `value`: how many, how many won, and the lift (their
    rate of winning over the rate of all decided hand-offs)."""

    feature: str
    value: str
    handoffs: int
    won: int
    lift: float | None

    @property
    def rate(self) -> float | None:
        return ratio(self.won, self.handoffs)

    @property
    def small(self) -> bool:
        return self.handoffs < SMALL_SAMPLE


@dataclass(frozen=True)
class Owner:
    """One owner in sales (sales.routes, or the default address): the hand-offs it got and what it said."""

    name: str
    handoffs: int
    won: int
    awaiting: int
    days_to_outcome: Distribution

    @property
    def decided(self) -> int:
        return self.handoffs - self.awaiting


@dataclass(frozen=True)
class Outcomes:
    decided: int  # hand-offs with an outcome
    won: int
    counts: tuple[tuple[str, int], ...]  # by outcome, awaiting included
    predictors: tuple[Predictor, ...]
    days_to_outcome: Distribution = Distribution(())  # whole days from the hand-off mail to the outcome
    owners: tuple[Owner, ...] = ()

    @property
    def rate(self) -> float | None:
        return ratio(self.won, self.decided)


def outcomes(connection: Connection, window: Window) -> Outcomes:
    """The hand-offs made in `window`: their outcomes, and what predicts a won one."""
    made = window.holds(HANDOFFS.c.created_at)
    query = select(HANDOFFS.c.outcome, func.count()).where(*made).group_by(HANDOFFS.c.outcome)
    by_outcome: dict[Outcome | None, int] = dict(connection.execute(query).all())
    counts = tuple((outcome.value, by_outcome[outcome]) for outcome in Outcome if outcome in by_outcome) + (
        (("awaiting", by_outcome[None]),) if None in by_outcome else ())
    decided = sum(count for outcome, count in by_outcome.items() if outcome is not None)
    won = by_outcome.get(Outcome.WON, 0)
    base = ratio(won, decided)
    found = connection.execute(_features(connection.dialect.name, made))
    predictors = sorted((Predictor(feature, str(value), int(n), int(wins), _lift(int(wins), int(n), base))
                         for feature, value, n, wins in found),
                        key=lambda p: (FEATURES.index(p.feature), -(p.lift or 0), -p.handoffs, p.value))
    return Outcomes(decided, won, counts, tuple(predictors), days_to_outcome(connection, made),
                    owners(connection, made))


def owners(connection: Connection, made: Sequence[ColumnElement[bool]]) -> tuple[Owner, ...]:
    """Each owner's hand-offs, won deals, those awaiting an outcome and how long it took to give one."""
    days = _waited(connection.dialect.name).label("days")
    name = case((HANDOFFS.c.sent_at.is_(None), "(its mail not sent yet)"),
                (HANDOFFS.c.owner_email == "", "(the sales address)"),
                else_=func.coalesce(func.nullif(HANDOFFS.c.owner_name, ""), HANDOFFS.c.owner_email)).label("name")
    query = (select(name, HANDOFFS.c.outcome, days, func.count()).where(*made)
             .group_by(name, HANDOFFS.c.outcome, days))
    found: dict[str, dict[str, Any]] = {}
    for owner, outcome, waited, count in connection.execute(query):
        row = found.setdefault(owner, {"handoffs": 0, "won": 0, "awaiting": 0, "days": {}})
        row["handoffs"] += count
        row["won"] += count if outcome is Outcome.WON else 0
        row["awaiting"] += count if outcome is None else 0
        if waited is not None:
            row["days"][int(waited)] = row["days"].get(int(waited), 0) + count
    return tuple(Owner(owner, row["handoffs"], row["won"], row["awaiting"],
                       Distribution(tuple(sorted(row["days"].items()))))
                 for owner, row in sorted(found.items(), key=lambda item: (-item[1]["handoffs"], item[0])))


def _waited(dialect: str) -> ColumnElement[Any]:
    """Whole days from a hand-off's mail to the outcome sales gave it (NULL while it has none)."""
    return sql.whole_days(dialect, func.coalesce(HANDOFFS.c.sent_at, HANDOFFS.c.created_at), HANDOFFS.c.decided_at)


def days_to_outcome(connection: Connection, made: Sequence[ColumnElement[bool]]) -> Distribution:
    """How long sales took to say what came of a hand-off: whole days from its mail to the outcome."""
    days = _waited(connection.dialect.name).label("days")
    query = (select(days, func.count()).where(HANDOFFS.c.decided_at.is_not(None), *made)
             .group_by(days).order_by(days))
    return Distribution(tuple((int(value), int(count)) for value, count in connection.execute(query)))


def _lift(won: int, handoffs: int, base: float | None) -> float | None:
    rate = ratio(won, handoffs)
    return rate / base if rate is not None and base else None


def _features(dialect: str, made: Sequence[ColumnElement[bool]]) -> Any:
    """(feature, value, hand-offs, won) for every feature value seen among the decided hand-offs."""
    decided = (select(HANDOFFS.c.id, HANDOFFS.c.lead_id, HANDOFFS.c.cycle, HANDOFFS.c.created_at,
                      case((HANDOFFS.c.outcome == Outcome.WON, 1), else_=0).label("won"))
               .where(HANDOFFS.c.outcome.is_not(None), *made)
               # read once, first: SQLite, with no statistics, otherwise read every event and looked each one's
               # hand-off up (100,000 leads: 555 -> 172 ms; PostgreSQL 215 -> 205 ms)
               .cte("decided").prefix_with("MATERIALIZED"))
    hits, people = _hits(decided), _people(decided)
    clicked = hits.c.kind == EventKind.CLICK
    rule = case((hits.c.kind == EventKind.EXTERNAL, hits.c.action),
                (clicked & (hits.c.action == "callback"), "callback click"),
                (clicked & hits.c.tag.is_not(None), "click on " + hits.c.tag),
                else_=func.lower(cast(hits.c.kind, String)))
    human_click = (clicked, hits.c.machine.is_(False))

    def seen(feature: str, value: Any, source: Any, *where: Any, of: Any = hits) -> Any:
        return (select(literal(feature).label("feature"), cast(value, String).label("value"),
                       of.c.handoff.label("handoff"), of.c.won.label("won"))
                .select_from(source).where(*where).distinct())

    def segment(name: str) -> Any:  # the segments name leads as the funnel's do
        label, leads = segment_of(dialect, name, leads=people)
        return seen(name, label, leads, of=people)

    items = hits.join(SEND_ITEMS, SEND_ITEMS.c.send_id == hits.c.send_id).join(
        ITEMS, (ITEMS.c.id == SEND_ITEMS.c.item_id) & (ITEMS.c.link == hits.c.url))
    parts = [
        seen("rule", rule, hits, hits.c.counted.is_(True)),
        select(literal("rule"), cast(literal("open"), String), decided.c.id, decided.c.won).where(_opened(decided)),
        seen("link", hits.c.url, hits, *human_click, hits.c.url.is_not(None)),
        seen("tag", hits.c.tag, hits, *human_click, hits.c.tag.is_not(None)),
        seen("feed", ITEMS.c.feed, items, *human_click),
        *(segment(name) for name in SEGMENTS),
    ]
    every = union_all(*parts).subquery("seen")
    return (select(every.c.feature, every.c.value, func.count(), func.sum(every.c.won))
            .group_by(every.c.feature, every.c.value))


def _hits(decided: Any) -> Any:
    """What each decided hand-off's cycle held up to it besides opens, read once for the rules, links, tags and
    feeds: (handoff, won, kind, action, counted, machine, send_id, url, tag); a click keeps its link's address
    and tag (a link without a tag: its action), an erased lead's neither. ix_event_lead_signal holds all it
    reads (the events' rows were 70 ms of SQLite's analysis at 100,000 leads)."""
    before = and_(EVENTS.c.lead_id == decided.c.lead_id, EVENTS.c.cycle == decided.c.cycle,
                  EVENTS.c.occurred_at <= decided.c.created_at)
    tag = case(((EVENTS.c.kind == EventKind.CLICK) & EVENTS.c.url.is_not(None),  # not an erased lead's
                func.coalesce(EVENTS.c.tag, EVENTS.c.action)))
    return (select(decided.c.id.label("handoff"), decided.c.won, EVENTS.c.kind, EVENTS.c.action, EVENTS.c.counted,
                   EVENTS.c.machine, EVENTS.c.send_id, EVENTS.c.url, tag.label("tag"))
            .select_from(decided.join(EVENTS, before)).where(SIGNALS).cte("hits"))


def _opened(decided: Any) -> ColumnElement[bool]:
    """Whether a decided hand-off's cycle held a counted open before it (the rule "open")."""
    return exists().where(EVENTS.c.lead_id == decided.c.lead_id, EVENTS.c.cycle == decided.c.cycle,
                          EVENTS.c.occurred_at <= decided.c.created_at, EVENTS.c.kind == EventKind.OPEN,
                          EVENTS.c.counted.is_(True))


def _people(decided: Any) -> Any:
    """The lead of each decided hand-off, read once for every segment (each joined to every lead: 300 ms at
    100,000 leads, where these are 2,400): its columns that name segments, and (handoff, won)."""
    named = ("id", "industry", "customer", "locale", "country", "interests")
    return (select(*(LEADS.c[name] for name in named), decided.c.id.label("handoff"), decided.c.won)
            .select_from(decided.join(LEADS, LEADS.c.id == decided.c.lead_id)).cte("people"))


@dataclass(frozen=True)
class Threshold:
    """What the thresholds moved by one step (the general one shown; a customer's and an industry's move
    with it) would have done with the decided hand-offs: the won deals still handed off and those missed,
    the others (lost, no result, not a fit) still sent or spared, and the MQLs in nurture now that would go
    too (their outcome unknown). A lead that asked (a form, a call back where that qualifies) goes at any
    threshold."""

    threshold: int
    won_kept: int
    won_missed: int
    others_sent: int
    others_spared: int
    more_now: int
    current: bool = False


def thresholds(connection: Connection, window: Window, rules: Scoring, nurtured: InNurture,
               steps: Iterable[int] = (-6, -4, -2, 0, 2, 4, 8)) -> list[Threshold]:
    """Every threshold moved by each of `steps`, applied to the decided hand-offs of `window` by the score
    each lead had when it went to sales, and to the MQLs in nurture now."""
    actions, callback = scoring.requests(rules)
    request = (EVENTS.c.kind == EventKind.EXTERNAL) & EVENTS.c.action.in_(sorted(actions))
    if callback:
        request = request | ((EVENTS.c.kind == EventKind.CLICK) & (EVENTS.c.action == "callback"))
    asked = exists().where(EVENTS.c.lead_id == HANDOFFS.c.lead_id, EVENTS.c.cycle == HANDOFFS.c.cycle,
                           EVENTS.c.occurred_at <= HANDOFFS.c.created_at, EVENTS.c.counted.is_(True), request,
                           SIGNALS)  # off ix_event_lead_signal: a cycle's few signals, not its every event
    each = (select(HANDOFFS.c.score, HANDOFFS.c.outcome, LEADS.c.customer, LEADS.c.industry,
                   case((asked, 1), else_=0).label("asked"))
            .select_from(HANDOFFS.join(LEADS, LEADS.c.id == HANDOFFS.c.lead_id))
            .where(HANDOFFS.c.outcome.is_not(None), *window.holds(HANDOFFS.c.created_at)).subquery("decided"))
    grouped = select(each.c.score, each.c.outcome, each.c.customer, each.c.industry, each.c.asked, func.count())
    decided = [(int(score) - scoring.threshold(rules, customer, industry), outcome is Outcome.WON, bool(asked),
                int(count))
               for score, outcome, customer, industry, asked, count in connection.execute(grouped.group_by(*each.c))]
    waiting = [(score - scoring.threshold(rules, customer, industry), count)
               for score, customer, industry, count in nurtured.counts]
    return [_moved(step, rules.threshold, decided, waiting) for step in sorted(set(steps))
            if rules.threshold + step > 0]


def _moved(step: int, general: int, decided: Sequence[tuple[int, bool, bool, int]],
           waiting: Sequence[tuple[int, int]]) -> Threshold:
    """`decided`: (score over its own threshold, won, asked, how many); `waiting`: (score over it, how many)."""
    sent = [(won, count) for above, won, asked, count in decided if asked or above >= step]
    spared = [(won, count) for above, won, asked, count in decided if not asked and above < step]
    return Threshold(
        general + step,
        won_kept=sum(count for won, count in sent if won), won_missed=sum(count for won, count in spared if won),
        others_sent=sum(count for won, count in sent if not won),
        others_spared=sum(count for won, count in spared if not won),
        more_now=sum(count for above, count in waiting if above >= step), current=step == 0)
