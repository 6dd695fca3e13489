"""The dashboard in-process: behind the admin key, the report's figures as charts with their numbers, and
downloads that are the report's own tables, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from starlette.testclient import TestClient

from nurture.engine import Engine
from nurture.models import EventKind, Outcome, Stage
from nurture.report import Window, build
from nurture.report.tables import as_csv, as_json, tables
from nurture.server import create_app
from nurture.server.headers import POLICY
from nurture.store import Store
from tests.integration.test_report import History

HOSTILE = "<retail & co>"


@pytest.fixture
def history(store: Store) -> Store:
    """Three leads: one won after a person clicked, one only machines touched, one never confirmed."""
    h = History(store)
    ada = h.lead("ada@example.com", 0, industry="finance", stage=Stage.WON)
    send = h.send(ada, 1)
    h.event(ada, send, EventKind.OPEN, 2, points=1)
    h.event(ada, send, EventKind.OPEN, 1.001, machine=True)
    h.event(ada, send, EventKind.CLICK, 2, link=0, points=12)
    h.handoff(ada, 10, 14, Outcome.WON)
    bob = h.lead("bob@example.com", 0, industry=HOSTILE, score=9)
    send = h.send(bob, 1)
    h.event(bob, send, EventKind.OPEN, 1.0001, machine=True)
    h.lead("dan@example.com", 40, confirmed=False, how="api")
    h.tally()
    return store


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        yield client


def admin(engine: Engine) -> tuple[str, str]:
    return ("admin", engine.settings.admin_key or "")


def test_the_dashboard_and_its_downloads_need_the_admin_key(client: TestClient, engine: Engine) -> None:
    for path in ("/admin/dashboard", "/admin/report.csv", "/admin/report.json"):
        assert client.get(path).status_code == 401
        assert client.get(path, auth=("admin", "wrong")).status_code == 401
        assert client.get(path, auth=admin(engine)).status_code == 200


def test_the_page_draws_each_chart_with_its_numbers_one_click_away(history: Store, client: TestClient,
                                                                   engine: Engine) -> None:
    answer = client.get("/admin/dashboard", auth=admin(engine))
    assert answer.status_code == 200
    page = answer.text
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img"') == 6
    assert page.count("<summary>Numbers</summary>") == 6
    # the funnel: 3 leads, 2 confirmed, 2 nurtured, 1 engaged (a person, not the machines), 1 sql, 1 won
    assert "2 \u00b7 66.7% of leads" in page and "1 \u00b7 50.0% of mql" in page and "1 \u00b7 100.0% of sql" in page
    funnel = re.search(r'<table class="numbers" id="table-funnel">(.*?)</table>', page, re.S)
    assert funnel and re.sub(r"\s+", "", funnel.group(1)).count('<tdclass="number">') == 8
    assert '<td>engaged</td><td class="number">1</td>' in funnel.group(1)
    assert "machine share" in page and "66.7%" in page  # 2 of 3 opens were machines'
    assert 'id="table-predictors"' in page and 'id="table-thresholds"' in page
    assert "fewer than 10 hand-offs, read with care" in page  # the predictors' note
    assert "script-src" not in answer.headers["content-security-policy"]
    assert answer.headers["content-security-policy"] == POLICY


def test_a_segment_shows_its_table_and_every_label_is_escaped(history: Store, client: TestClient,
                                                              engine: Engine) -> None:
    page = client.get("/admin/dashboard?segment=industry&period=week", auth=admin(engine)).text
    assert 'id="table-segments"' in page
    assert page.count('class="chart" role="img"') == 7 and "MQL to SQL by industry" in page
    assert HOSTILE not in page and "&lt;retail &amp; co&gt;" in page
    assert 'href="/admin/report.csv?period=week&amp;segment=industry"' in page
    assert '<option value="week" selected>' in page and '<option value="industry" selected>' in page


def test_the_downloads_are_the_reports_own_tables(history: Store, client: TestClient, engine: Engine) -> None:
    query = "?since=2026-01-01&until=2026-03-01&period=week&segment=industry"
    with history.reader.connect() as connection:
        expected = tables(build(connection, engine.settings.scoring,
                                Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
                                "week", "industry"))
    found = client.get("/admin/report.json" + query, auth=admin(engine))
    assert found.json() == as_json(expected)
    assert found.json()["funnel"]["rows"][0] == {"stage": "leads", "people": 3}
    found = client.get("/admin/report.csv" + query, auth=admin(engine))
    assert found.headers["content-type"].startswith("text/csv")
    assert "attachment" in found.headers["content-disposition"]
    assert found.text == as_csv(expected)
    assert list(csv.reader(io.StringIO(found.text)))[1] == ["funnel", "leads", "3"]


def test_a_window_keeps_only_the_leads_created_in_it(history: Store, client: TestClient, engine: Engine) -> None:
    found = client.get("/admin/report.json?since=2026-02-01", auth=admin(engine)).json()
    assert found["funnel"]["rows"][0] == {"stage": "leads", "people": 1}  # dan, 40 days after the others


@pytest.mark.parametrize(("query", "named"), [
    ("period=year", "period"), ("segment=shoe+size", "segment"), ("since=January", "since"),
    ("until=2026-13-01", "until"), ("since=2026-02-01&until=2026-01-01", "until"),
])
def test_a_bad_filter_is_a_400_naming_it(client: TestClient, engine: Engine, query: str, named: str) -> None:
    for path in ("/admin/dashboard", "/admin/report.csv", "/admin/report.json"):
        answer = client.get(f"{path}?{query}", auth=admin(engine))
        assert answer.status_code == 400
        assert answer.text.startswith(f"Bad request: {named}:")


def test_an_empty_database_draws_charts_of_nothing(client: TestClient, engine: Engine) -> None:
    page = client.get("/admin/dashboard", auth=admin(engine)).text
    assert "No leads in this window yet" in page and "No hand-off in this window yet" in page
    assert page.count("Nothing yet.") >= 3
