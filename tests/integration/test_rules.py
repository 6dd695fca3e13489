"""Scoring rules over a real database: segments, expiry, inactivity, external events, overrides, rescoring."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture.engine import Engine
from nurture.errors import InputError
from nurture.models import EventKind, Stage
from nurture.score import rules as scoring
from nurture.score.rescore import Replayed, rescore
from nurture.settings import Inactivity, Scoring, Settings
from nurture.store import NewEvent, Store
from tests.conftest import T0, make_lead


def with_rules(engine: Engine, **changes: object) -> Scoring:
    rules = engine.settings.scoring.model_copy(update=changes)
    engine.settings = engine.settings.model_copy(update={"scoring": rules})
    return rules


def external(store: Store, rules: Scoring, kind: str, at=T0, key: str | None = None, lead_id: int = 1):  # type: ignore[no-untyped-def]
    lead = store.lead(lead_id)
    credit = scoring.credit_external(kind, lead_id, lead.cycle, rules, key)
    qualify = rules.external[kind].qualify
    return store.record(NewEvent(lead_id, EventKind.EXTERNAL, at, credit, action=kind, qualify=qualify), rules)


def test_an_industry_segment_has_its_own_threshold(engine: Engine) -> None:
    rules = with_rules(engine, industry_thresholds={"finance": 15})
    make_lead(engine.store, industry="finance")
    make_lead(engine.store, email="bob@example.com", industry="manufacturing")
    for lead_id in (1, 2):
        engine.store.record(NewEvent(lead_id, EventKind.CLICK, T0, scoring.Credit(12, f"x:{lead_id}")), rules)
    assert engine.store.lead(1).stage is Stage.MQL
    assert engine.store.lead(2).stage is Stage.SQL
    engine.store.record(NewEvent(1, EventKind.CLICK, T0, scoring.Credit(3, "y:1")), rules)
    assert engine.store.lead(1).stage is Stage.SQL


def test_points_expire_after_the_window(engine: Engine) -> None:
    rules = with_rules(engine, expiry_days=30.0)
    make_lead(engine.store)
    engine.store.record(NewEvent(1, EventKind.CLICK, T0, scoring.Credit(8, "a")), rules)
    engine.store.record(NewEvent(1, EventKind.OPEN, T0 + timedelta(days=20), scoring.Credit(1, "b")), rules)
    assert engine.store.lead(1).score == 9
    engine.apply_rules(T0 + timedelta(days=31))
    assert engine.store.lead(1).score == 1  # the click is older than 30 days
    engine.store.record(NewEvent(1, EventKind.CLICK, T0 + timedelta(days=32), scoring.Credit(8, "c")), rules)
    assert engine.store.lead(1).score == 9 and engine.store.lead(1).stage is Stage.MQL


def test_inactivity_costs_points_once_per_quiet_stretch(engine: Engine) -> None:
    rules = with_rules(engine, inactivity=Inactivity(days=30, points=-5))
    make_lead(engine.store)
    engine.apply_rules(T0 + timedelta(days=29))
    assert engine.store.lead(1).score == 0
    engine.apply_rules(T0 + timedelta(days=30))
    engine.apply_rules(T0 + timedelta(days=45))
    assert engine.store.lead(1).score == -5
    engine.store.record(NewEvent(1, EventKind.OPEN, T0 + timedelta(days=46), scoring.Credit(1, "o:1")), rules)
    engine.apply_rules(T0 + timedelta(days=70))
    assert engine.store.lead(1).score == -4  # quiet again, but only for 24 days
    engine.apply_rules(T0 + timedelta(days=77))
    assert engine.store.lead(1).score == -9
    kinds = [e.kind for e in engine.store.events_of(1)]
    assert kinds.count(EventKind.INACTIVITY) == 2


def test_external_events_follow_their_rules(engine: Engine) -> None:
    rules = engine.settings.scoring
    make_lead(engine.store)
    for n in range(3):
        external(engine.store, rules, "web_visit", key=f"visit-{n}")
    external(engine.store, rules, "web_visit", key="visit-2")  # the same visit posted twice
    external(engine.store, rules, "download")
    external(engine.store, rules, "download")  # once per cycle
    assert engine.store.lead(1).score == 3 + 4
    with pytest.raises(InputError, match="unknown event kind"):
        scoring.credit_external("phone_call", 1, 0, rules)


def test_a_contact_form_qualifies_at_once(engine: Engine) -> None:
    make_lead(engine.store)
    recorded = external(engine.store, engine.settings.scoring, "contact_form")
    assert recorded.handoff_id is not None
    lead = engine.store.lead(1)
    assert lead.stage is Stage.SQL and lead.score == 0


def test_a_person_can_override_what_was_filtered(engine: Engine) -> None:
    rules = engine.settings.scoring
    make_lead(engine.store)
    machine = engine.store.record(NewEvent(1, EventKind.CLICK, T0, scoring.Credit(12, "callback:9"),
                                      ignored="scanner user agent (mimecast)"), rules)
    assert engine.store.lead(1).score == 0
    score, handoff_id = engine.store.override(machine.event.id or 0, True, "admin", rules, T0)
    assert score == 12 and handoff_id is not None
    assert engine.store.lead(1).stage is Stage.SQL
    duplicate = engine.store.record(NewEvent(1, EventKind.CLICK, T0, scoring.Credit(12, "callback:9")), rules)
    assert not duplicate.event.counted
    with pytest.raises(InputError, match="already credited"):
        engine.store.override(duplicate.event.id or 0, True, "admin", rules, T0)
    engine.store.override(machine.event.id or 0, False, "admin", rules, T0)
    assert engine.store.lead(1).score == 0


def test_rescore_reports_and_then_applies_new_rules(engine: Engine, settings: Settings) -> None:
    rules = settings.scoring
    make_lead(engine.store)
    make_lead(engine.store, email="bob@example.com")
    for n in range(5):
        engine.store.record(NewEvent(1, EventKind.OPEN, T0, scoring.Credit(1, f"open:{n}")), rules)
    generous = rules.model_copy(update={"points": rules.points.model_copy(update={"open": 3})})
    funnel = Replayed()
    changes = rescore(engine.store, generous, T0, dry_run=True, replayed=funnel)
    assert [(c.email, c.old_score, c.new_score, c.would_qualify) for c in changes] == [
        ("ada@example.com", 5, 15, True)]
    assert (funnel.leads, funnel.sql_then, funnel.sql_now, funnel.new) == (2, 0, 1, 1)
    assert engine.store.lead(1).score == 5 and engine.store.lead(1).stage is Stage.MQL
    rescore(engine.store, generous, T0, dry_run=False)
    lead = engine.store.lead(1)
    assert (lead.score, lead.stage) == (15, Stage.SQL)
    assert len(engine.store.handoffs_of(1)) == 1
    assert sum(e.points for e in engine.store.events_of(1) if e.counted) == lead.score
