"""Who is due, answered by the database: the leads `Store.due_pages` reads through its two partial
indexes, a page at a time, are, once `program.due` has judged them, exactly those the full scan of every
lead's sends found (kept here as the oracle), each once, at every moment of a varied life; the database's
own plans for both queries read an index, never the lead table, and a page starts where the last ended
without reading or sorting what came before; and `Store.restore_due` gives a due time to a cycle that
ended before `max_digests_per_cycle` was raised."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, text
from sqlmodel import col, select

from nurture import program
from nurture.engine import Engine
from nurture.models import EventKind, Lead, Outcome, Send, Stage, Suppression
from nurture.program import History
from nurture.score.rules import Credit
from nurture.store import NewEvent, Store
from nurture.store.leads import FIRST
from nurture.track.actions import Tracking
from nurture.track.tokens import Purpose, Signer
from tests.conftest import SECRET, T0, make_lead

DAY = timedelta(days=1)


def every_history(store: Store) -> list[History]:
    """The oracle: the send history of every lead the program may still mail, read from its sends (the
    query every tick ran before the lead kept what `due` reads)."""
    query = (
        select(  # type: ignore[call-overload]
            Lead.id, Lead.stage, Lead.cycle, Lead.cycle_started_at, func.max(Send.step), func.max(Send.created_at),
            Lead.confirmed_at,
        )
        .join(Send, (col(Send.lead_id) == col(Lead.id)) & (col(Send.cycle) == col(Lead.cycle)), isouter=True)
        .where(Lead.stage == Stage.MQL, col(Lead.suppressed).is_(None), col(Lead.erased_at).is_(None))
        .group_by(col(Lead.id))
        .order_by(col(Lead.id))
    )
    with store.session() as session:
        rows = session.exec(query).all()
    return [History(lead_id, stage, False, cycle, started, step, last, confirmed is not None)
            for lead_id, stage, cycle, started, step, last, confirmed in rows]


def by_lead(steps: list[program.Due]) -> list[program.Due]:
    return sorted(steps, key=lambda step: step.lead_id)


def assert_same_leads_due(engine: Engine, now: datetime) -> list[program.Due]:
    rules = engine.settings.program
    read = [history for page in engine.store.due_pages(now, 2) for history in page]  # many pages of each kind
    assert len(read) == len({history.lead_id for history in read}), now  # no lead twice
    found = by_lead(program.due_all(read, now, rules))
    assert found == program.due_all(every_history(engine.store), now, rules), now
    assert by_lead(engine.plan(now)) == found
    return found


def tick(engine: Engine, now: datetime) -> None:
    for moment in (now - DAY / 2, now, now + 3 * DAY, now + 7 * DAY, now + 40 * DAY):
        assert_same_leads_due(engine, moment)
    asyncio.run(engine.send_due(now))
    assert_same_leads_due(engine, now)


def test_the_due_leads_are_those_the_full_scan_finds(engine: Engine) -> None:
    short = engine.settings.program.model_copy(update={"max_digests_per_cycle": 3})
    engine.settings = engine.settings.model_copy(update={"program": short})
    store, rules = engine.store, engine.settings.scoring
    tracking = Tracking(engine.settings, store, engine.catalog)
    assert {status for _, status, _ in asyncio.run(engine.refresh_feeds(T0))} == {"ok"}
    interests = [["security"], ["cloud"], ["nothing-matches"], ["cloud", "security"]]
    for n in range(12):  # confirmed (imported with consent) and not (signed up on a form)
        make_lead(store, email=f"lead{n}@example.com", interests=interests[n % 4],
                  confirmed_at=T0 if n % 3 else None)
    tick(engine, T0)
    store.confirm(4, "topics saved", None, T0 + 2 * DAY, engine.settings.program)
    confirm = Signer(SECRET).sign(Purpose.CONFIRM, 7)
    tracking.confirm(confirm, None, T0 + 9 * DAY)  # a week after its confirmation: its first digest is due at once
    tick(engine, T0 + 7 * DAY)
    handoff = store.record(NewEvent(2, EventKind.EXTERNAL, T0 + 8 * DAY, Credit(12, "form:2")), rules).handoff_id
    store.suppress(5, Suppression.UNSUBSCRIBED, T0 + 8 * DAY, rules)
    store.suppress(6, Suppression.BOUNCED, T0 + 8 * DAY, rules)
    store.erase(9, T0 + 8 * DAY)
    make_lead(store, email="late@example.com", created_at=T0 + 8 * DAY, cycle_started_at=T0 + 8 * DAY)
    assert handoff is not None
    tick(engine, T0 + 10 * DAY)
    store.decide(handoff, Outcome.NO_RESULT, T0 + 11 * DAY, rules, engine.settings.program)  # a new cycle
    store.lift_suppression(5, "test", rules, T0 + 12 * DAY, engine.settings.program)
    for day in (14, 15.5, 21, 28, 35, 42, 49, 63):
        tick(engine, T0 + day * DAY)
    lead2, lead5 = store.lead(2), store.lead(5)
    assert lead2.cycle == 1 and lead2.last_step and lead5.last_step == 3  # mailed in its new cycle; lifted
    assert store.lead(10).erased_at is not None  # never confirmed: erased by the rules after 30 days
    now = T0 + 63 * DAY
    due = [(lead.id, (lead.last_step or 0) + 1) for lead in store.leads() if lead.due_at and lead.due_at <= now]
    assert due and [(step.lead_id, step.step) for step in assert_same_leads_due(engine, now)] == due  # skipped


LEADS = 20_000
DATETIME = Lead.__table__.c.due_at.type  # type: ignore[attr-defined]


def none_due(store: Store) -> None:
    """LEADS leads, none due: half wait for their next digest, half have had all of this cycle's; then ANALYZE."""
    if store.is_sqlite:
        series = (f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {LEADS}) "
                  "SELECT i FROM n")
    else:
        series = f"SELECT generate_series(1, {LEADS}) AS i"
    with store.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO lead (email, first_name, last_name, company, industry, interests, locale, country, customer, "
            "stage, cycle, cycle_started_at, score, created_at, tracking, confirmed_at, last_step, last_mailed_at, "
            "due_at) SELECT 'lead' || i || '@example.com', '', '', '', '', '[]', 'en', '', false, 'MQL', 0, :t, 0, "
            ":t, true, :t, CASE WHEN i % 2 = 0 THEN 12 ELSE 1 END, :t, CASE WHEN i % 2 = 0 THEN NULL ELSE :later END "
            f"FROM ({series}) AS leads").bindparams(  # times written as nurture writes them (on SQLite, text)
                bindparam("t", type_=DATETIME), bindparam("later", type_=DATETIME)), {"t": T0, "later": T0 + 7 * DAY})
        connection.execute(text("ANALYZE"))


def plans(store: Store, now: datetime) -> list[str]:
    """The database's plan for each query of `due_pages`: the first page of new leads, the first page of
    leads with a due time, and one that starts amid the leads sharing a due time, T0 + 7 days."""
    found = []
    middle = T0 + 7 * DAY, LEADS // 2
    queries = store._new_leads(0, 100), store._due_leads(now, FIRST, 0, 100), store._due_leads(now, *middle, 100)
    with store.engine.connect() as connection:
        for query in queries:
            if store.is_sqlite:
                params = {name: value.isoformat(" ") if isinstance(value, datetime) else value
                          for name, value in query.compile().params.items()}
                found.append(" ".join(str(row[-1]) for row in connection.execute(
                    text(f"EXPLAIN QUERY PLAN {query}"), params)))
            else:
                literal = query.compile(store.engine, compile_kwargs={"literal_binds": True})
                found.append(str(connection.execute(text(f"EXPLAIN {literal}")).all()))
    return found


def test_both_due_queries_read_their_partial_index_not_the_leads(engine: Engine) -> None:
    none_due(engine.store)
    now = T0 + DAY
    new, due, middle = plans(engine.store, now)
    assert "ix_lead_new" in new and "ix_lead_due" in due and "ix_lead_due" in middle, (new, due, middle)
    for plan in (new, due, middle):  # SQLite: SEARCH/SCAN lead USING INDEX ...; PostgreSQL: Index Scan using ...
        assert "Seq Scan" not in plan and "SCAN lead" not in plan.replace("SCAN lead USING INDEX", ""), plan
        assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan  # read in the index's order: no page sorted
    assert engine.plan(now) == []
    assert engine.plan(T0 + 8 * DAY) == program.due_all(  # everybody with a due time, a page past the first
        [history for page in engine.store.due_pages(T0 + 8 * DAY, 1_000) for history in page], T0 + 8 * DAY,
        engine.settings.program)


def test_restore_due_gives_a_due_time_to_a_cycle_that_ended_before_more_digests_were_allowed(
        engine: Engine) -> None:
    store = engine.store
    make_lead(store)
    with store.engine.begin() as connection:  # as a database upgraded to 0013 has it: its cycle over, no due time
        connection.execute(text("UPDATE lead SET last_step = 12, last_mailed_at = :t"), {"t": T0})
    assert store.restore_due(engine.settings.program) == 0 and store.lead(1).due_at is None
    more = engine.settings.program.model_copy(update={"max_digests_per_cycle": 13})
    engine.settings = engine.settings.model_copy(update={"program": more})
    assert engine.plan(T0 + 8 * DAY) == []
    assert store.restore_due(more) == 1 and store.lead(1).due_at == T0 + 7 * DAY
    assert [(d.lead_id, d.step) for d in engine.plan(T0 + 8 * DAY)] == [(1, 13)]
    assert store.restore_due(more) == 0  # once given, a due time stays
    fewer = more.model_copy(update={"max_digests_per_cycle": 12})
    store.restore_due(fewer)
    assert store.lead(1).due_at is None  # lowered again: its cycle is over after all
