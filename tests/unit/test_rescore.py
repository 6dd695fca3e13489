"""Replaying a lead's history under other rules: when each cycle would have reached sales (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nurture.models import Event, EventKind, Handoff, Lead, Outcome
from nurture.score.rescore import Replayed, crossings
from nurture.settings import Scoring

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEAD = Lead(id=1, email="ada@example.com", cycle_started_at=T0, created_at=T0)


def event(n: int, kind: EventKind, day: float, points: int, cycle: int = 0, counted: bool = True,
          action: str | None = None) -> Event:
    return Event(id=n, lead_id=1, cycle=cycle, kind=kind, occurred_at=T0 + timedelta(days=day), points=points,
                 counted=counted, action=action)


HISTORY = [event(1, EventKind.OPEN, 0, 1), event(2, EventKind.CLICK, 1, 12), event(3, EventKind.OPEN, 2, 1),
           event(4, EventKind.CLICK, 3, 12, counted=False)]  # a machine's click: it never counts


def test_the_score_crosses_when_the_points_add_up() -> None:
    rules = Scoring()
    assert crossings(LEAD, HISTORY, {}, rules) == {0: T0 + timedelta(days=1)}
    # the click worth 4 instead: 1 + 4 + 1 never reaches 12; the machine's click stays out
    assert crossings(LEAD, HISTORY, {2: 4}, rules) == {}
    assert crossings(LEAD, HISTORY, {2: 4}, rules.model_copy(update={"threshold": 6})) == {0: T0 + timedelta(days=2)}


def test_points_expire_and_cycles_start_afresh() -> None:
    spread = [event(1, EventKind.OPEN, 0, 6), event(2, EventKind.OPEN, 40, 6),
              event(3, EventKind.OPEN, 41, 6, cycle=1)]
    assert crossings(LEAD, spread, {}, Scoring(reset_on_recycle=False)) == {  # the score carried into cycle 1
        0: T0 + timedelta(days=40), 1: T0 + timedelta(days=41)}
    assert crossings(LEAD, spread, {}, Scoring(reset_on_recycle=False, expiry_days=30)) == {
        1: T0 + timedelta(days=41)}  # the first six points expired before the second six came
    assert crossings(LEAD, spread, {}, Scoring()) == {0: T0 + timedelta(days=40)}  # the third is alone in cycle 1


def test_a_request_goes_to_sales_whatever_the_score() -> None:
    asked = [event(1, EventKind.EXTERNAL, 5, 0, action="contact_form")]
    assert crossings(LEAD, asked, {}, Scoring()) == {0: T0 + timedelta(days=5)}
    callback = [event(1, EventKind.CLICK, 5, 8, action="callback")]
    assert crossings(LEAD, callback, {}, Scoring()) == {}
    assert crossings(LEAD, callback, {}, Scoring(callback_qualifies=True)) == {0: T0 + timedelta(days=5)}


def test_the_replayed_funnel_sets_the_rules_against_what_sales_decided() -> None:
    funnel = Replayed()
    handoff = Handoff(lead_id=1, cycle=0, score=13, created_at=T0, outcome=Outcome.WON)
    funnel.add({0: T0}, [handoff])  # still sent: a won deal kept
    funnel.add({}, [handoff.model_copy(update={"outcome": Outcome.NO_RESULT})])  # spared
    funnel.add({}, [handoff])  # a won deal missed
    funnel.add({0: T0}, [])  # would have gone; never did
    funnel.add({}, [handoff.model_copy(update={"outcome": None})])  # no outcome yet: neither
    assert (funnel.leads, funnel.sql_then, funnel.sql_now, funnel.new) == (5, 4, 2, 1)
    assert (funnel.won_kept, funnel.won_missed, funnel.others_sent, funnel.others_spared) == (1, 1, 0, 1)
