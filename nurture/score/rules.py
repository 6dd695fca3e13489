"""Rules to points, thresholds and stage transitions: pure functions over events and settings."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from nurture.errors import InputError
from nurture.models import EventKind, Stage
from nurture.settings import Scoring

MQL_ONLY = frozenset({EventKind.OPEN, EventKind.CLICK, EventKind.SENT})  # earn nothing once a lead is with sales
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.MQL: frozenset({Stage.SQL}),
    Stage.SQL: frozenset({Stage.WON, Stage.MQL, Stage.DISQUALIFIED}),
    Stage.WON: frozenset(),
    Stage.DISQUALIFIED: frozenset(),
}


@dataclass(frozen=True)
class Credit:
    """What an event is worth and the key that keeps it from being counted twice."""

    points: int
    key: str | None


def move(stage: Stage, to: Stage) -> Stage:
    """Return `to` when the move is legal; raise InputError otherwise."""
    if to not in TRANSITIONS[stage]:
        raise InputError(f"a lead cannot move from {stage.value} to {to.value}")
    return to


def threshold(rules: Scoring, customer: bool, industry: str = "") -> int:
    """The score at which a lead of this segment goes to sales: customers first, then its industry."""
    if customer:
        return rules.customer_threshold
    return rules.industry_thresholds.get(industry, rules.threshold)


def lowest_threshold(rules: Scoring) -> int:
    """The lowest score at which any lead goes to sales."""
    return min(rules.threshold, rules.customer_threshold, *rules.industry_thresholds.values())


def requests(rules: Scoring) -> tuple[frozenset[str], bool]:
    """What counts as a lead asking for sales, which hands it over whatever its score: the external events
    whose rule qualifies (by action), and whether a click on a mail's "Call back" does."""
    return frozenset(name for name, rule in rules.external.items() if rule.qualify), rules.callback_qualifies


def asks(kind: EventKind, action: str | None, rules: Scoring) -> bool:
    """Whether an event is such a request."""
    actions, callback = requests(rules)
    if kind is EventKind.EXTERNAL:
        return (action or "") in actions
    return callback and kind is EventKind.CLICK and action == "callback"


def qualifies(stage: Stage, score: int, rules: Scoring, customer: bool, industry: str = "") -> bool:
    return stage is Stage.MQL and score >= threshold(rules, customer, industry)


def refusal(kind: EventKind, stage: Stage, key: str | None, held: Container[str],
            ignored: str | None = None) -> str | None:
    """Why a new event earns nothing, or None: it counts. `ignored` is a judgment made before (a machine's
    hit); an open, click or send earns nothing once the lead is with sales; a once-only credit that
    another event holds (`held`) is not given twice."""
    if ignored is not None:
        return ignored
    if stage is not Stage.MQL and kind in MQL_ONLY:
        return f"lead is {stage.value}"
    if key and key in held:
        return "already credited"
    return None


@dataclass(frozen=True)
class Scope:
    """Which counted events make a lead's score: those of its current cycle (of every cycle without
    `reset_on_recycle`) that have not expired. The stored score and every history apply this one rule."""

    first_cycle: int
    cutoff: datetime | None  # events before it have expired (None: points never expire)
    expiry_days: float | None

    def excludes(self, cycle: int, occurred_at: datetime) -> str | None:
        """Why a counted event no longer makes the score, or None: it does."""
        if cycle < self.first_cycle:
            return "an earlier cycle"
        if self.cutoff is not None and _utc(occurred_at) < self.cutoff:
            return f"expired after {self.expiry_days:g} days"
        return None


def scope(rules: Scoring, cycle: int, now: datetime) -> Scope:
    """The scope of the score of a lead in `cycle`, at `now`."""
    return Scope(cycle if rules.reset_on_recycle else 0, expiry_cutoff(rules, now), rules.expiry_days)


def expiry_cutoff(rules: Scoring, now: datetime) -> datetime | None:
    """Events before this moment no longer count (None: points never expire)."""
    return now - timedelta(days=rules.expiry_days) if rules.expiry_days else None


def _utc(moment: datetime) -> datetime:
    """Databases hand datetimes back without their zone; nurture stores them all in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def click_points(link: Mapping[str, Any], rules: Scoring) -> int:
    """Points for a click on one tracked link: its own setting, then its action, then its tag."""
    if link.get("points") is not None:
        return int(link["points"])
    if link.get("action") == "callback":
        return rules.points.callback
    tag = link.get("tag")
    if tag and tag in rules.link_tags:
        return rules.link_tags[tag]
    return rules.points.click


def credit_open(send_id: int, rules: Scoring) -> Credit:
    return Credit(rules.points.open, f"open:{send_id}")


def credit_click(send_id: int, index: int, link: Mapping[str, Any], rules: Scoring) -> Credit:
    if link.get("action") == "callback":
        return Credit(click_points(link, rules), f"callback:{send_id}")
    return Credit(click_points(link, rules), f"click:{send_id}:{index}")


def credit_send(digests_before: int, send_id: int, rules: Scoring) -> Credit:
    """Every nurture digest after the first one of a cycle costs points."""
    points = rules.points.extra_nurture_email if digests_before > 0 else 0
    return Credit(points, f"sent:{send_id}")


def credit_external(kind: str, lead_id: int, cycle: int, rules: Scoring, key: str | None = None) -> Credit:
    """An event posted by the website: once per cycle unless the rule is repeatable (then once per `key`)."""
    rule = rules.external.get(kind)
    if rule is None:
        raise InputError(f"unknown event kind: {kind!r} (known: {', '.join(sorted(rules.external))})")
    if not rule.repeatable:
        return Credit(rule.points, f"external:{kind}:{lead_id}:{cycle}")
    return Credit(rule.points, f"external:{kind}:{lead_id}:{key}" if key else None)


def credit_inactivity(lead_id: int, cycle: int, since: datetime, rules: Scoring) -> Credit:
    """The inactivity penalty, once for each quiet stretch (named by when it began)."""
    assert rules.inactivity is not None
    return Credit(rules.inactivity.points, f"inactive:{lead_id}:{cycle}:{since.isoformat()}")


def points_of(kind: EventKind, action: str | None, link: Mapping[str, Any] | None, step: int | None,
              rules: Scoring) -> int:
    """What an event earns under `rules`, from what the event log keeps (for rescoring)."""
    match kind:
        case EventKind.OPEN:
            return rules.points.open
        case EventKind.CLICK:
            return click_points(link or {}, rules)
        case EventKind.SENT:
            return rules.points.extra_nurture_email if (step or 0) > 1 else 0
        case EventKind.EXTERNAL:
            rule = rules.external.get(action or "")
            return rule.points if rule else 0
        case EventKind.INACTIVITY:
            return rules.inactivity.points if rules.inactivity else 0
        case _:
            return credit_suppression(kind, 0, 0, rules).points


def credit_suppression(kind: EventKind, lead_id: int, cycle: int, rules: Scoring) -> Credit:
    points = {
        EventKind.UNSUBSCRIBE: rules.points.unsubscribe,
        EventKind.BOUNCE: rules.points.bounce,
        EventKind.COMPLAINT: rules.points.complaint,
    }[kind]
    return Credit(points, f"{kind.value}:{lead_id}:{cycle}")
