"""The report's figures on a small history built by hand, where each right answer is known: machine hits
that must not count, a recycled lead, a bounce, an unconfirmed lead, a hand-off after 120 days."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from nurture.cli import main
from nurture.models import (
    Event,
    EventKind,
    FeedItem,
    Handoff,
    HandoffState,
    Lead,
    Outcome,
    Send,
    SendItem,
    SendState,
    Stage,
    Suppression,
)
from nurture.report import Report, Window, _side_by_side, build
from nurture.report.tables import Table, as_csv, tables
from nurture.settings import Settings
from nurture.store import Store, engagement
from tests.conftest import ROOT, SECRET

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday
SCANNER = "Barracuda Sentinel"
HIGH_INTENT = {"url": "https://example.com/pricing", "tag": "high-intent", "action": None, "points": None}
CALLBACK = {"url": "https://example.com/call", "tag": None, "action": "callback", "points": None}
LINKS = [HIGH_INTENT, CALLBACK]  # every mail's


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


class History:
    """Rows written straight into the tables, as nurture's stages would have left them."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def lead(self, email: str, created: float, confirmed: bool = True, how: str = "form", **fields: Any) -> int:
        lead = self.store.add_lead(Lead(email=email, created_at=day(created), cycle_started_at=day(created),
                                        confirmed_at=day(created) if confirmed else None, **fields), how)
        assert lead.id is not None
        return lead.id

    def send(self, lead_id: int, at: float, state: SendState = SendState.SENT, step: int = 1, cycle: int = 0) -> int:
        with self.store.session() as session:
            send = Send(lead_id=lead_id, cycle=cycle, step=step, template="digest", state=state,
                        links=LINKS, created_at=day(at),
                        sent_at=day(at) if state is SendState.SENT else None)
            session.add(send)
            session.flush()
            assert send.id is not None
            return send.id

    def event(self, lead_id: int, send_id: int | None, kind: EventKind, at: float, machine: bool = False,
              counted: bool | None = None, link: int | None = None, points: int = 0, cycle: int = 0,
              action: str | None = None) -> None:
        counted = not machine if counted is None else counted
        clicked = LINKS[link] if kind is EventKind.CLICK and link is not None else {}  # as the judge keeps it
        with self.store.session() as session:
            session.add(Event(lead_id=lead_id, cycle=cycle, send_id=send_id, kind=kind, occurred_at=day(at), link=link,
                              url=clicked.get("url"), tag=clicked.get("tag"), action=action or clicked.get("action"),
                              machine=machine, counted=counted, points=points,
                              reason=None if counted else ("scanner user agent" if machine else "already credited"),
                              user_agent=SCANNER if machine else "Mozilla/5.0"))

    def tally(self) -> None:
        """What the judge keeps of the hits on each mail and lead, counted from the events written."""
        with self.store.engine.begin() as connection:
            sends = [id_ for (id_,) in connection.execute(select(Send.id))]  # type: ignore[call-overload]
            leads = [id_ for (id_,) in connection.execute(select(Lead.id))]  # type: ignore[call-overload]
            engagement.recount(connection, sends, leads)

    def handoff(self, lead_id: int, at: float, score: int, outcome: Outcome | None, cycle: int = 0,
                decided_after: float = 3, owner: tuple[str, str] = ("", "")) -> None:
        with self.store.session() as session:
            session.add(Handoff(lead_id=lead_id, cycle=cycle, score=score, state=HandoffState.SENT, outcome=outcome,
                                created_at=day(at), sent_at=day(at), owner_name=owner[0], owner_email=owner[1],
                                decided_at=day(at + decided_after) if outcome else None))


@pytest.fixture
def history(store: Store) -> Store:
    h = History(store)
    # won: a person opened, a scanner opened too, the person clicked the pricing link twice
    ada = h.lead("ada@example.com", 0, industry="finance", interests=["cloud", "security"], stage=Stage.WON)
    send = h.send(ada, 1)
    h.event(ada, send, EventKind.OPEN, 2, points=1)
    h.event(ada, send, EventKind.OPEN, 1.001, machine=True, points=1)
    h.event(ada, send, EventKind.CLICK, 2, link=0, points=12)
    h.event(ada, send, EventKind.CLICK, 3, link=0, counted=False)  # a person's, already credited
    h.handoff(ada, 10, 14, Outcome.WON, decided_after=2.5, owner=("Bea", "bea@example.com"))
    with store.session() as session:
        item = FeedItem(feed="cloud-news", guid="1", title="Pricing", link=HIGH_INTENT["url"], published=day(0),
                        fetched_at=day(0))
        session.add(item)
        session.flush()
        assert item.id is not None
        session.add(SendItem(send_id=send, lead_id=ada, item_id=item.id))
    # only machines touched this one's mail: nurtured, never engaged; still in nurture with 9 points
    bob = h.lead("bob@example.com", 0, industry="finance", score=9)
    send = h.send(bob, 1)
    h.event(bob, send, EventKind.OPEN, 1.0001, machine=True)
    h.event(bob, send, EventKind.CLICK, 1.0002, machine=True, link=1)
    # a customer, recycled: no result in its first cycle, with sales again in its second (no outcome yet)
    cleo = h.lead("cleo@example.com", 40, how="import leads.csv", industry="retail", customer=True,
                  stage=Stage.SQL, cycle=1)
    send = h.send(cleo, 41)
    h.event(cleo, send, EventKind.OPEN, 45, points=1)
    h.handoff(cleo, 50, 12, Outcome.NO_RESULT)
    h.handoff(cleo, 200, 13, None, cycle=1)
    # signed up and never confirmed: nothing was sent
    h.lead("dan@example.com", 40, confirmed=False, how="api")
    # its first digest bounced
    eve = h.lead("eve@example.com", 41, suppressed=Suppression.BOUNCED)
    h.send(eve, 42, state=SendState.BOUNCED)
    # went to sales after 130 days, not a fit
    fay = h.lead("fay@example.com", 0, stage=Stage.DISQUALIFIED)
    h.send(fay, 1)
    h.handoff(fay, 130, 12, Outcome.NOT_A_FIT, decided_after=20)
    h.tally()
    return store


def report(store: Store, settings: Settings, **options: Any) -> Report:
    """The report as `nurture report` and the dashboard build it: its parts read side by side."""
    with store.snapshot(2) as readers:
        return build(readers, settings.scoring, **options)


def test_a_part_that_fails_ends_the_report_and_no_lane_reads_another(store: Store) -> None:
    read: list[object] = []

    def broken(connection: Any) -> None:
        raise RuntimeError("a part that fails")

    def slow(connection: Any) -> None:
        time.sleep(0.2)
        read.append("slow")

    parts = {"broken": broken, "slow": slow, **{f"later {n}": (lambda connection, n=n: read.append(n))
                                                for n in range(5)}}
    with store.snapshot(2) as readers, pytest.raises(RuntimeError, match="a part that fails"):
        _side_by_side(readers, parts)
    assert read in ([], ["slow"])  # the part another lane was reading, and none after it


@pytest.mark.parametrize("segment", [None, "interest"])
def test_the_report_read_side_by_side_is_the_report_read_through_one_connection(
        history: Store, settings: Settings, segment: str | None) -> None:
    with history.reader.connect() as connection:
        alone = build(connection, settings.scoring, segment=segment)
    assert report(history, settings, segment=segment) == alone
    assert alone.funnel.leads and alone.links and alone.outcomes.predictors and (alone.segments or not segment)


def test_the_readers_of_a_snapshot_read_one_moment_while_a_writer_commits(store: Store) -> None:
    """A writer adds a lead a transaction while the report's readers begin, again and again: each time
    every reader counts the same leads (SQLite: the readers begin under the write lock; PostgreSQL: they
    share the first one's snapshot), and none sees what was committed after they began."""
    insert = text("INSERT INTO lead (email, first_name, last_name, company, industry, interests, locale, country, "
                  "customer, stage, cycle, cycle_started_at, score, created_at, tracking) VALUES (:email, '', '', "
                  "'', '', '[]', 'en', '', false, 'MQL', 0, :at, 0, :at, true)")
    count = text("SELECT count(*) FROM lead")
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            with store.engine.begin() as connection:
                connection.execute(insert, {"email": f"lead{n}@example.com", "at": T0})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        seen = []
        for _ in range(150):
            with store.snapshot(3) as readers:
                counts = {reader.execute(count).scalar_one() for reader in readers}
                time.sleep(0.002)  # the writer commits meanwhile
                assert {reader.execute(count).scalar_one() for reader in readers} == counts
            assert len(counts) == 1, counts
            seen.extend(counts)
    finally:
        stop.set()
        writer.join()
    assert len(set(seen)) > 10  # the writer did commit between the snapshots


def test_the_funnel_counts_people_at_each_stage(history: Store, settings: Settings) -> None:
    funnel = report(history, settings).funnel
    assert (funnel.leads, funnel.confirmed, funnel.mql, funnel.engaged, funnel.sql, funnel.sql_within, funnel.won,
            funnel.no_deal, funnel.not_a_fit) == (6, 5, 4, 2, 3, 2, 1, 1, 1)
    assert funnel.mql_to_sql == 3 / 4 and funnel.sql_to_won == 1 / 3
    h = History(history)  # one who asked for sales before any digest went: an SQL that was never an MQL
    h.handoff(h.lead("gus@example.com", 0), 2, 0, None)
    funnel = report(history, settings).funnel
    assert (funnel.mql, funnel.sql, funnel.sql_of_mql, funnel.mql_to_sql) == (4, 4, 3, 3 / 4)


def test_cohorts_and_the_window_follow_when_leads_were_created(history: Store, settings: Settings) -> None:
    found = report(history, settings)
    assert [(row.label, row.leads, row.sql, row.sql_within, row.won) for row in found.cohorts] == [
        ("2026-01-01", 3, 2, 1, 1), ("2026-02-01", 3, 1, 1, 0)]
    weeks = report(history, settings, period="week").cohorts
    assert [(row.label, row.leads) for row in weeks] == [("2026-01-05", 3), ("2026-02-09", 3)]
    february = report(history, settings, window=Window(since=day(31), until=day(59))).funnel
    assert (february.leads, february.confirmed, february.sql) == (3, 2, 1)


@pytest.mark.parametrize(("segment", "expected"), [
    ("industry", [("(none)", 3, 1), ("finance", 2, 1), ("retail", 1, 1)]),
    ("customer", [("customer", 1, 1), ("prospect", 5, 2)]),
    ("source", [("api", 1, 0), ("form", 4, 2), ("import", 1, 1)]),
    ("interest", [("cloud", 1, 1), ("security", 1, 1)]),
])
def test_the_funnel_per_segment(history: Store, settings: Settings, segment: str,
                                expected: list[tuple[str, int, int]]) -> None:
    rows = report(history, settings, segment=segment).segments
    assert [(row.label, row.leads, row.sql) for row in rows] == expected


def test_days_to_sql_and_the_scores_of_mqls(history: Store, settings: Settings) -> None:
    found = report(history, settings)
    assert found.days_to_sql.counts == ((10, 2), (130, 1))
    assert found.days_to_sql.median == 10
    assert found.days_to_sql.buckets((0, 7, 14, 120)) == [("0-6", 0), ("7-13", 2), ("14-119", 0), ("120+", 1)]
    assert found.mql_scores.counts == ((9, 1),)  # bob; eve is suppressed, dan unconfirmed, the rest with sales


def test_engagement_per_email_counts_people_and_the_share_of_machines(history: Store, settings: Settings) -> None:
    [step] = report(history, settings).steps
    assert (step.step, step.sent, step.bounced, step.delivered, step.opened, step.clicked, step.clicks) == (
        1, 5, 1, 4, 2, 1, 2, )
    assert (step.machine_hits, step.hits, step.machine_share) == (3, 7, 3 / 7)  # ada 4, bob 2, cleo 1
    assert step.open_rate == 2 / 4


def test_links_and_tags_count_peoples_clicks_only(history: Store, settings: Settings) -> None:
    found = report(history, settings)
    assert [(c.name, c.clicks, c.people) for c in found.links] == [(HIGH_INTENT["url"], 2, 1)]
    assert [(c.name, c.clicks, c.people) for c in found.tags] == [("high-intent", 2, 1)]


def test_outcomes_and_what_predicts_a_won_deal(history: Store, settings: Settings) -> None:
    outcomes = report(history, settings).outcomes
    assert outcomes.counts == (("won", 1), ("no_result", 1), ("not_a_fit", 1), ("awaiting", 1))
    assert (outcomes.decided, outcomes.won) == (3, 1)
    assert outcomes.days_to_outcome.counts == ((2, 1), (3, 1), (20, 1))  # the one awaiting is not counted
    assert outcomes.days_to_outcome.median == 3
    assert [(o.name, o.handoffs, o.won, o.awaiting, o.days_to_outcome.counts) for o in outcomes.owners] == [
        ("(the sales address)", 3, 0, 1, ((3, 1), (20, 1))), ("Bea", 1, 1, 0, ((2, 1),))]
    found = {(p.feature, p.value): (p.handoffs, p.won, p.lift, p.small) for p in outcomes.predictors}
    assert found[("rule", "open")] == (2, 1, pytest.approx(1.5), True)  # ada's and cleo's counted opens
    assert found[("rule", "click on high-intent")] == (1, 1, pytest.approx(3.0), True)
    assert found[("link", HIGH_INTENT["url"])] == (1, 1, pytest.approx(3.0), True)
    assert found[("feed", "cloud-news")] == (1, 1, pytest.approx(3.0), True)
    assert found[("industry", "retail")] == (1, 0, 0.0, True)
    assert found[("source", "form")] == (2, 1, pytest.approx(1.5), True)  # ada and fay signed up by form
    assert found[("interest", "security")] == (1, 1, pytest.approx(3.0), True)
    assert ("link", CALLBACK["url"]) not in found  # only a machine clicked it


def test_other_thresholds_on_the_decided_handoffs(history: Store, settings: Settings) -> None:
    """Each threshold moves with the general one: cleo, a customer (8), went at 12, four over hers."""
    def moved() -> dict[int, tuple[int, ...]]:
        return {t.threshold: (t.won_kept, t.won_missed, t.others_sent, t.others_spared, t.more_now)
                for t in report(history, settings).thresholds}

    found = moved()
    assert found[12] == (1, 0, 2, 0, 0)  # today's rules sent all three
    assert found[14] == (1, 0, 1, 1, 0)  # fay (12) spared; cleo still over hers
    assert found[16] == (0, 1, 1, 1, 0)  # ada's won deal (14) missed
    assert found[8] == (1, 0, 2, 0, 1)  # bob's 9 points would send him too
    fay = history.lead_by_email("fay@example.com").id
    History(history).event(fay or 0, None, EventKind.EXTERNAL, 100, action="contact_form")
    assert moved()[16] == (0, 1, 2, 0, 0)  # she asked: she goes at any threshold


def test_every_table_has_rows_of_its_columns(history: Store, settings: Settings) -> None:
    for table in tables(report(history, settings, segment="industry")):
        assert all(len(row) == len(table.columns) for row in table.rows), table.name


def test_an_empty_database_reports_zeros(store: Store, settings: Settings) -> None:
    found = report(store, settings)
    assert found.funnel.leads == 0 and found.funnel.mql_to_sql is None
    assert found.cohorts == [] and found.steps == [] and found.days_to_sql.median is None


def cli(store: Store, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "report", *args],
                                env={"NURTURE_DATABASE_URL": store.url, "NURTURE_SECRET_KEY": SECRET})
    return result.exit_code, result.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_nurture_report_as_json_csv_and_text(history: Store) -> None:
    code, output = cli(history, "--json", "--since", "2026-01-01", "--segment", "customer")
    assert code == 0, output
    found = json.loads(output)
    assert found["funnel"]["rows"][0] == {"stage": "leads", "people": 6}
    assert [row["customer"] for row in found["segments"]["rows"]] == ["customer", "prospect"]
    code, output = cli(history, "--csv", "--since", "2026-02-01")
    rows = list(csv.reader(io.StringIO(output)))
    assert rows[0] == ["table", "stage", "people"] and rows[1] == ["funnel", "leads", "3"]
    code, output = cli(history)
    assert code == 0 and "Funnel" in output and "What goes with a won deal" in output
    code, output = cli(history, "--since", "January")
    assert code == 2 and "not an ISO time: 'January'" in output


def test_cohorts_are_utc_days_whatever_the_sessions_zone(store: Store, settings: Settings) -> None:
    History(store).lead("late@example.com", 26.6)  # 2026-01-31 23:24 UTC: after midnight in Berlin
    with store.reader.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TIME ZONE 'Europe/Berlin'")
        cohorts = build(connection, settings.scoring).cohorts
    assert [row.label for row in cohorts] == ["2026-01-01"]


def test_an_erased_leads_clicks_name_no_link(history: Store, settings: Settings) -> None:
    history.erase(history.lead_by_email("ada@example.com").id or 0, day(300))
    found = report(history, settings)
    assert [c.name for c in found.links] == ["(forgotten: its lead was erased)"]
    assert [c.name for c in found.tags] == ["(forgotten: its lead was erased)"]
    assert not [p for p in found.outcomes.predictors if p.feature in ("link", "tag")]


def test_the_csv_quotes_text_a_spreadsheet_would_run() -> None:
    table = Table("links", "Links", ("link", "clicks"), (("=HYPERLINK('http://x')", 3), ("-1 day", 2), (None, 1)))
    rows = list(csv.reader(io.StringIO(as_csv([table]))))
    assert rows[1:] == [["links", "'=HYPERLINK('http://x')", "3"], ["links", "'-1 day", "2"], ["links", "", "1"]]


def test_the_terminal_shows_brackets_in_a_link_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    from nurture import console

    console.tables_text([Table("links", "Links", ("link", "clicks"),
                               (("https://shop.example/list?filter[color]=red&x=[/b]", 3),))])
    assert "https://shop.example/list?filter[color]=red&x=[/b]" in capsys.readouterr().out
