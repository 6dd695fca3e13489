"""The website's side: the events and leads API and the public subscribe form."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from nurture.engine import Engine
from nurture.models import EventKind, Stage
from nurture.score import rules as scoring
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.store import NewEvent
from tests.conftest import T0, make_lead


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        yield client


def key(engine: Engine) -> dict[str, str]:
    return {"X-API-Key": engine.settings.api_key}


def test_the_api_needs_its_key(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    body = {"email": "ada@example.com", "kind": "web_visit"}
    assert client.post("/api/events", json=body).status_code == 401
    assert client.post("/api/events", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/api/leads", json={"email": "x@example.com"}).status_code == 401
    assert engine.store.events_of(1) == []


def test_events_are_scored_by_the_same_rules(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    for n in range(2):
        response = client.post("/api/events", json={"email": "ada@example.com", "kind": "web_visit",
                                                     "key": f"v{n}", "detail": "/pricing"}, headers=key(engine))
        assert response.status_code == 202
    assert response.json()["score"] == 2
    again = client.post("/api/events", json={"email": "ada@example.com", "kind": "web_visit", "key": "v1"},
                        headers=key(engine))
    assert again.json()["counted"] is False and again.json()["score"] == 2
    events = engine.store.events_of(1)
    assert [(e.kind, e.action, e.detail) for e in events][0] == (EventKind.EXTERNAL, "web_visit", "/pricing")


def test_a_contact_form_event_hands_the_lead_to_sales(client: TestClient, engine: Engine,
                                                     mailer: MemoryMailer) -> None:
    make_lead(engine.store)
    response = client.post("/api/events", json={"email": "ada@example.com", "kind": "contact_form"},
                           headers=key(engine))
    assert response.json()["stage"] == "sql"
    assert [m.recipient for m in mailer.sent] == ["sales@example.com"]


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"email": "ada@example.com", "kind": "phone_call"}, 400, "unknown event kind"),
    ({"email": "nobody@example.com", "kind": "web_visit"}, 404, "no lead"),
    ({"email": "ada@example.com"}, 400, "kind must be"),
    ({"email": "ada@example.com", "kind": "web_visit", "points": 100}, 400, "unknown field"),
    (["not", "an", "object"], 400, "JSON object"),
])
def test_bad_events_are_refused_by_name(client: TestClient, engine: Engine, body: object, status: int,
                                        says: str) -> None:
    make_lead(engine.store)
    response = client.post("/api/events", json=body, headers=key(engine))
    assert response.status_code == status and says in response.text
    assert engine.store.events_of(1) == []


def test_leads_are_created_and_welcomed(client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    response = client.post("/api/leads", json={"email": "Grace@Example.com", "first_name": "Grace",
                                               "interests": ["security"], "industry": "finance"}, headers=key(engine))
    assert response.status_code == 201
    lead = engine.store.lead_by_email("grace@example.com")
    assert (lead.first_name, lead.interests, lead.stage) == ("Grace", ["security"], Stage.MQL)
    assert [m.recipient for m in mailer.sent] == ["grace@example.com"]  # the confirmation went at once
    twice = client.post("/api/leads", json={"email": "grace@example.com"}, headers=key(engine))
    assert twice.status_code == 400 and "already exists" in twice.text
    bad = client.post("/api/leads", json={"email": "x@example.com", "interests": ["knitting"]}, headers=key(engine))
    assert bad.status_code == 400 and "knitting" in bad.text
    assert len(engine.store.leads()) == 1


def test_the_subscribe_form_creates_a_lead(client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    assert 'name="website"' in client.get("/subscribe").text
    response = client.post("/subscribe", data={"email": "kim@example.com", "first_name": "Kim",
                                               "interest": ["cloud"], "industry": ""})
    assert response.status_code == 200 and "Check your inbox" in response.text
    assert engine.store.lead_by_email("kim@example.com").interests == ["cloud"]
    assert [m.recipient for m in mailer.sent] == ["kim@example.com"]
    bad = client.post("/subscribe", data={"email": "not-an-address"})
    assert bad.status_code == 400 and "not a valid email address" in bad.text


def test_the_honeypot_and_the_rate_limit_stop_bots(client: TestClient, engine: Engine) -> None:
    trapped = client.post("/subscribe", data={"email": "bot@example.com", "website": "http://spam.example"})
    assert trapped.status_code == 200
    assert engine.store.leads() == []
    statuses = [client.post("/subscribe", data={"email": f"p{n}@example.com"}).status_code for n in range(6)]
    assert statuses[:4] == [200] * 4 and statuses[-1] == 429  # 5 per address per 10 minutes, the trap included
    assert len(engine.store.leads()) == 4


def test_an_admin_can_override_a_filtered_event(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    recorded = engine.store.record(NewEvent(1, EventKind.CLICK, T0, scoring.Credit(12, "callback:1"),
                                       ignored="scanner user agent (mimecast)"), engine.settings.scoring)
    auth = ("admin", engine.settings.admin_key)
    page = client.get("/admin/leads/1", auth=auth)
    assert "Count it" in page.text and "mimecast" in page.text
    path = f"/admin/leads/1/events/{recorded.event.id}"
    assert client.post(path, data={"counted": "yes"}).status_code == 401
    done = client.post(path, data={"counted": "yes"}, auth=auth, follow_redirects=False)
    assert done.status_code == 303
    assert engine.store.lead(1).stage is Stage.SQL
    assert client.post("/admin/leads/1/events/999", data={"counted": "yes"}, auth=auth).status_code == 404
    forged = client.post(path, data={"counted": "no"}, auth=auth, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and engine.store.lead(1).stage is Stage.SQL
    for headers in ({"Sec-Fetch-Site": "cross-site", "Origin": "null"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "null"}):  # a browser's word for another site, and an opaque origin without it
        forged = client.post(path, data={"counted": "no"}, auth=auth, headers=headers)
        assert forged.status_code == 403, headers
    assert engine.store.lead(1).stage is Stage.SQL


def test_a_browser_posting_the_admins_own_form_is_let_through(client: TestClient, engine: Engine) -> None:
    """Under the pages' `Referrer-Policy: no-referrer` Chromium posts a same-origin form with `Origin: null`."""
    make_lead(engine.store)
    recorded = engine.store.record(NewEvent(1, EventKind.CLICK, T0, scoring.Credit(12, "callback:1"),
                                       ignored="scanner user agent (mimecast)"), engine.settings.scoring)
    done = client.post(f"/admin/leads/1/events/{recorded.event.id}", data={"counted": "yes"},
                       auth=("admin", engine.settings.admin_key), follow_redirects=False,
                       headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303 and engine.store.lead(1).stage is Stage.SQL
