"""A claim reads the open sends, not the history: with thousands of mails sent and a few queued, the
database's own plan for the claim uses the partial index ix_send_open (on SQLite and PostgreSQL), and
fails this test the day a change makes it walk every send ever made. So does the search for unsettled
results that every run makes as it starts (ix_send_unsettled), the report's search for the leads whose
first digest went out (ix_send_first_digest), its count of people's clicks by link and tag (read off
ix_event_person_click alone) and its outcome analysis (the events of the decided hand-offs alone)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, event, text

from nurture.report.engagement import clicks
from nurture.report.funnel import Distribution, in_nurture, live_stages
from nurture.report.outcomes import outcomes
from nurture.report.sql import ALL_TIME
from nurture.send.outbox import Outbox, claimable
from nurture.send.results import UNSETTLED_SENDS
from nurture.store import Store
from nurture.store.figures import cohorts as cohorts_kept
from nurture.store.figures import steps as steps_kept
from tests.conftest import T0, make_lead

SENT = 20_000
T = TypeVar("T")


def history(store: Store) -> None:
    """One lead with SENT sent mails (steps 1..SENT) and five queued ones after them, then ANALYZE."""
    make_lead(store)
    with store.engine.begin() as connection:
        if store.is_sqlite:
            series = ("WITH RECURSIVE n(step) AS (SELECT 1 UNION ALL SELECT step + 1 FROM n WHERE step < :sent) "
                      "SELECT step FROM n")
        else:
            series = "SELECT generate_series(1, :sent) AS step"
        connection.execute(text(
            "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
            f"created_at) SELECT 1, 0, step, 'digest', 'SENT', '', '', '[]', 1, :at FROM ({series}) AS steps"),
            {"sent": SENT, "at": T0})
        connection.execute(text(
            "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
            "created_at) SELECT 1, 0, step + :sent, 'digest', 'QUEUED', '', '', '[]', 0, :at FROM "
            f"({series.replace(':sent', '5')}) AS steps"), {"sent": SENT, "at": T0})
        connection.execute(text("ANALYZE"))


def planned(store: Store, report: Callable[[Connection], T], marker: str) -> tuple[T, str]:
    """What `report` returns, and the database's plan of the one statement it ran that holds `marker`."""
    statements: list[tuple[str, Any]] = []
    with store.engine.connect() as connection:
        event.listen(connection, "before_cursor_execute",
                     lambda _c, _cursor, statement, parameters, *_: statements.append((statement, parameters)))
        found = report(connection)
        (statement, parameters), = [(s, p) for s, p in statements if marker in s]
        explain = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN "
        return found, str(connection.exec_driver_sql(explain + statement, parameters).all())


def test_a_claim_reads_the_open_sends_through_their_partial_index(store: Store) -> None:
    history(store)
    query = claimable(200, T0, T0 - timedelta(minutes=5), store.is_sqlite)
    with store.engine.connect() as connection:
        if store.is_sqlite:
            plan = " ".join(str(row[-1]) for row in connection.execute(
                text(f"EXPLAIN QUERY PLAN {query.text}"), {"now": T0.isoformat(" "), "expired": T0.isoformat(" "),
                                                           "limit": 200}))
        else:
            compiled = query.compile(store.engine, compile_kwargs={"literal_binds": True})
            plan = str(connection.execute(text(f"EXPLAIN {compiled}")).all())
    assert "ix_send_open" in plan, plan  # SQLite: SCAN send USING INDEX ix_send_open, the open sends alone
    assert "Seq Scan" not in plan and "USE TEMP B-TREE" not in plan and plan.count("SCAN send") <= 1, plan
    claimed = Outbox(store, "worker-1").claim(200, T0, 300)
    assert [send.step for send in claimed] == [SENT + n for n in range(1, 6)]


def test_the_search_for_unsettled_results_reads_their_partial_index(store: Store) -> None:
    history(store)
    with store.engine.connect() as connection:
        compiled = UNSETTLED_SENDS.compile(store.engine, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN QUERY PLAN" if store.is_sqlite else "EXPLAIN"
        plan = " ".join(str(row[-1]) for row in connection.execute(text(f"{explain} {compiled}"), {"limit": 1000}))
    assert "ix_send_unsettled" in plan, plan
    assert "Seq Scan" not in plan and "USE TEMP B-TREE" not in plan, plan


def test_the_reports_nurtured_leads_read_their_partial_index(store: Store) -> None:
    """The funnel finds the leads whose first digest went out through ix_send_first_digest, not by reading
    every mail ever sent (each row with its links)."""
    history(store)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE send SET sent_at = created_at WHERE state = 'SENT'"))
        connection.execute(text("ANALYZE"))
    cohorts, plan = planned(store, lambda connection: live_stages(connection, ALL_TIME, "cohort"), "nurtured")
    assert "ix_send_first_digest" in plan, plan
    assert [(row.leads, row.mql) for row in cohorts] == [(1, 1)]


def test_the_reports_clicks_read_their_partial_index_alone(store: Store) -> None:
    """People's clicks by link and tag are counted off ix_event_person_click, which holds all the query reads:
    neither the events' rows nor their mails' (each with its links) are looked up."""
    history(store)
    kind = "CASE WHEN id % 10 = 0 THEN 'CLICK' ELSE 'OPEN' END"
    with store.engine.begin() as connection:  # an open of every mail; a person's click on every tenth
        connection.execute(text(
            "INSERT INTO event (lead_id, cycle, send_id, kind, link, url, tag, action, points, counted, machine, "
            f"occurred_at) SELECT lead_id, 0, id, {kind if store.is_sqlite else f'CAST({kind} AS eventkind)'}, "
            "CASE WHEN id % 10 = 0 THEN 0 END, CASE WHEN id % 10 = 0 THEN 'https://example.com/pricing' END, "
            "CASE WHEN id % 20 = 0 THEN 'high-intent' END, NULL, 1, true, false, created_at FROM send"))
    if not store.is_sqlite:  # as autovacuum leaves a live database; nothing analyzes SQLite's events
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE event"))
    (links, tags), plan = planned(store, lambda connection: clicks(connection, ALL_TIME), "count(DISTINCT")
    assert ("USING COVERING INDEX ix_event_person_click" if store.is_sqlite
            else "Index Only Scan using ix_event_person_click") in plan, plan
    assert "send" not in plan and "Seq Scan" not in plan, plan
    assert [(c.name, c.clicks, c.people) for c in links] == [("https://example.com/pricing", SENT // 10, 1)]
    assert [(c.name, c.clicks) for c in tags] == [("(none)", SENT // 20), ("high-intent", SENT // 20)]


def test_the_outcome_analysis_reads_the_events_of_the_decided_handoffs_alone(store: Store) -> None:
    """2,000 leads with 20 events each (a click, then opens), one of them handed off with an
    outcome: the analysis reads that lead's events by index. SQLite, which has no statistics (nothing runs
    ANALYZE on it), read every event and looked each one's hand-off up; it reads the clicks off the partial
    index of a lead's signals, which holds all it reads of them, and asks of the opens only whether there was
    one."""
    series = ("WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < :count) SELECT k FROM n"
              if store.is_sqlite else "SELECT generate_series(1, :count) AS k")
    kind = "CASE WHEN k <= 2000 THEN 'CLICK' ELSE 'OPEN' END"  # each lead's first
    with store.engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
            "customer, stage, cycle, cycle_started_at, score, created_at, tracking) SELECT k, 'lead' || k || "
            "'@example.com', '', '', '', '', '[]', 'en', '', false, 'MQL', 0, :at, 0, :at, true "
            f"FROM ({series}) AS s"), {"count": 2_000, "at": T0})
        connection.execute(text(
            "INSERT INTO event (lead_id, cycle, kind, url, points, counted, machine, occurred_at) "
            f"SELECT (k - 1) % 2000 + 1, 0, {kind if store.is_sqlite else f'CAST({kind} AS eventkind)'}, "
            "CASE WHEN k <= 2000 THEN 'https://example.com/pricing' END, 1, true, false, :at "
            f"FROM ({series}) AS s"), {"count": 40_000, "at": T0})
        connection.execute(text(
            "INSERT INTO handoff (lead_id, cycle, score, state, outcome, message_id, created_at, owner_name, "
            "owner_email) VALUES (7, 0, 12, 'SENT', 'WON', '', :later, '', '')"), {"later": T0 + timedelta(days=1)})
    if not store.is_sqlite:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    found, plan = planned(store, lambda connection: outcomes(connection, ALL_TIME), "hits")
    if store.is_sqlite:
        assert "SEARCH event USING COVERING INDEX ix_event_lead_signal" in plan, plan
        assert "SEARCH event USING INDEX ix_event_lead_cycle" in plan, plan  # was there an open
    else:
        assert "ix_event_lead_cycle" in plan or "ix_event_lead_signal" in plan, plan
    assert "SCAN event" not in plan and "Seq Scan on event" not in plan, plan
    assert (found.decided, found.won) == (1, 1)
    assert {("rule", "open"), ("rule", "click"), ("link", "https://example.com/pricing")} <= {
        (p.feature, p.value) for p in found.predictors if (p.handoffs, p.won) == (1, 1)}


def test_the_scores_of_the_leads_in_nurture_are_read_off_their_partial_index_alone(store: Store) -> None:
    """The report's scores of the leads in nurture (and the thresholds' MQLs now) are counted off
    ix_lead_nurtured, which holds all the query reads: no lead's row is read. SQLite, with no statistics,
    took ix_lead_stage and read every MQL's row."""
    series = ("WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < :count) SELECT k FROM n"
              if store.is_sqlite else "SELECT generate_series(1, :count) AS k")
    with store.engine.begin() as connection:  # every third unconfirmed, every fifth a customer
        connection.execute(text(
            "INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
            "customer, stage, cycle, cycle_started_at, score, created_at, confirmed_at, tracking) SELECT k, "
            "'lead' || k || '@example.com', '', '', '', 'finance', '[]', 'en', '', k % 5 = 0, 'MQL', 0, :at, k % 4, "
            f":at, CASE WHEN k % 3 <> 0 THEN :at END, true FROM ({series}) AS s"), {"count": 3_000, "at": T0})
    if not store.is_sqlite:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE lead"))
    found, plan = planned(store, in_nurture, "count(*)")
    if store.is_sqlite:
        assert "SCAN lead USING COVERING INDEX ix_lead_nurtured" in plan, plan
    else:
        assert "Seq Scan" not in plan, plan
    assert sum(count for *_, count in found.counts) == 2_000
    assert found.scores == Distribution(((0, 500), (1, 500), (2, 500), (3, 500)))
    assert sum(count for _, customer, _, count in found.counts if customer) == 400


def test_what_the_figures_look_up_of_a_mail_or_a_lead_they_read_by_index(tmp_path: Path) -> None:
    """The triggers that keep SQLite's figures (nurture.store.figures; PostgreSQL keeps none) look up a mail's
    notices, a lead's first digests and its hand-offs by index, never by reading every event or mail."""
    store = Store(f"sqlite:///{tmp_path / 'nurture.db'}")
    store.create()
    history(store)
    with store.engine.connect() as connection:
        rows = [str(row[-1]) for statement in (*steps_kept.count_again(), *cohorts_kept.count_again())[1::2]
                for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}")]
    store.close()
    plan = " ".join(rows)
    looked_up = [after for before, after in zip(rows, rows[1:], strict=False) if before.startswith("CORRELATED")]
    assert len(looked_up) >= 8 and all(row.startswith("SEARCH") for row in looked_up), plan  # never a SCAN
    for index in ("ix_event_send_notice", "ix_handoff_lead_id"):
        assert index in plan, plan
