"""The admin a marketing team lives in: leads searched, filtered, sorted and paged by the database; a lead's
mails and hand-offs; feed health; the outbox and its retries. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import pytest
from starlette.testclient import TestClient

from nurture.engine import Engine
from nurture.models import EventKind, FeedState, Lead, Outcome, Send, SendState, Stage, Suppression
from nurture.program import CONFIRMATION
from nurture.score.rules import Credit
from nurture.server import create_app
from nurture.store import NewEvent, Store
from nurture.store.browse import LeadOrder, LeadSearch
from nurture.track.tokens import Signer
from nurture.track.urls import Urls
from tests.conftest import T0, make_lead

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver", headers=BROWSER) as client:
        client.auth = ("admin", engine.settings.admin_key)
        yield client


def emails(html: str) -> list[str]:
    """The addresses of the leads listed, in the order shown."""
    return [unescape(email) for email in re.findall(r'<a href="/admin/leads/\d+">([^<]+)</a>', html)]


def total(html: str) -> int:
    found = re.search(r'<p id="total"><strong>(\d+)</strong>', html)
    assert found
    return int(found.group(1))


def crowd(store: Store) -> None:
    """Leads of several segments, stages and scores, each a minute younger than the one before."""
    people = [
        ("ada@example.com", dict(first_name="Ada", company="Analytical Engines", industry="finance", country="GB",
                                 score=5)),
        ("grace@navy.example", dict(first_name="Grace", last_name="Hopper", company="US Navy", industry="manufacturing",
                                    country="US", customer=True, score=11, stage=Stage.SQL)),
        ("linus@kernel.example", dict(first_name="Linus", last_name="T", company="Kernel Org", industry="finance",
                                      locale="fi", country="FI", score=0, suppressed=Suppression.UNSUBSCRIBED)),
        ("margaret@apollo.example", dict(first_name="Margaret", last_name="Hamilton", company="Apollo Guidance",
                                         industry="manufacturing", country="US", score=20, stage=Stage.WON)),
        ("evil<script>@x.example", dict(first_name="<b>Mallory</b>", company="100% Evil_Corp", industry="", score=3,
                                        suppressed=Suppression.BOUNCED)),
    ]
    for minute, (email, fields) in enumerate(people):
        at = T0 + timedelta(minutes=minute)
        make_lead(store, email, created_at=at, cycle_started_at=at, **fields)


def listed(client: TestClient, query: str = "") -> str:
    response = client.get(f"/admin?{query}")
    assert response.status_code == 200, response.text
    return response.text


def test_the_list_searches_email_name_and_company_in_any_case(client: TestClient, engine: Engine) -> None:
    crowd(engine.store)
    assert emails(listed(client, "q=HOPPER")) == ["grace@navy.example"]  # last name
    assert emails(listed(client, "q=grace+hop")) == ["grace@navy.example"]  # first and last name together
    assert emails(listed(client, "q=apollo")) == ["margaret@apollo.example"]  # company
    assert emails(listed(client, "q=KERNEL.EX")) == ["linus@kernel.example"]  # email
    assert emails(listed(client, "q=100%25")) == ["evil<script>@x.example"]  # % is a character, not a wildcard
    assert emails(listed(client, "q=_")) == ["evil<script>@x.example"]  # and so is _
    assert total(listed(client, "q=nobody")) == 0


@pytest.mark.parametrize(("query", "expected"), [
    ("stage=sql", ["grace@navy.example"]),
    ("industry=finance", ["linus@kernel.example", "ada@example.com"]),
    ("customer=yes", ["grace@navy.example"]),
    ("customer=no&industry=manufacturing", ["margaret@apollo.example"]),
    ("locale=fi", ["linus@kernel.example"]),
    ("country=us", ["margaret@apollo.example", "grace@navy.example"]),
    ("min_score=5&max_score=11", ["grace@navy.example", "ada@example.com"]),
    ("min_score=12", ["margaret@apollo.example"]),
    ("suppressed=yes", ["evil<script>@x.example", "linus@kernel.example"]),
    ("suppressed=no&max_score=10", ["ada@example.com"]),
    ("suppressed=bounced", ["evil<script>@x.example"]),
])
def test_filters_exclude_the_leads_they_should(client: TestClient, engine: Engine, query: str,
                                               expected: list[str]) -> None:
    crowd(engine.store)
    page = listed(client, query)
    assert emails(page) == expected
    assert total(page) == len(expected)


@pytest.mark.parametrize(("query", "expected"), [
    ("", ["evil", "margaret", "linus", "grace", "ada"]),  # newest first
    ("sort=created&order=asc", ["ada", "grace", "linus", "margaret", "evil"]),
    ("sort=score&order=desc", ["margaret", "grace", "ada", "evil", "linus"]),
    ("sort=email&order=asc", ["ada", "evil", "grace", "linus", "margaret"]),
    ("sort=stage&order=asc", ["ada", "linus", "evil", "grace", "margaret"]),  # mql, sql, won; ties by id
])
def test_the_list_sorts(client: TestClient, engine: Engine, query: str, expected: list[str]) -> None:
    crowd(engine.store)
    assert [email.split("@")[0].removesuffix("<script>") for email in emails(listed(client, query))] == expected


def test_the_list_pages_fifty_at_a_time_keeping_its_filters(client: TestClient, engine: Engine) -> None:
    leads = [Lead(email=f"lead{n:03}@example.com", industry="finance" if n % 2 else "retail", score=n,
                  created_at=T0 + timedelta(seconds=n), cycle_started_at=T0) for n in range(130)]
    engine.store.add_leads(leads, "test")
    first = listed(client, "industry=finance&sort=score&order=asc")
    assert total(first) == 65 and len(emails(first)) == 50
    assert emails(first)[0] == "lead001@example.com" and emails(first)[-1] == "lead099@example.com"
    assert 'rel="prev"' not in first
    following = re.search(r'<a href="([^"]+)" rel="next">', first)
    assert following and "industry=finance" in following.group(1) and "page=2" in following.group(1)
    second = listed(client, unescape(following.group(1)).removeprefix("/admin?"))
    assert emails(second) == [f"lead{n:03}@example.com" for n in range(101, 130, 2)]
    assert 'rel="next"' not in second and 'rel="prev"' in second
    assert emails(listed(client, "industry=finance&page=9")) == []  # past the end: an empty page, not an error


def test_the_store_counts_and_pages_without_the_server(store: Store) -> None:
    crowd(store)
    count, page = store.find_leads(LeadSearch(order=LeadOrder.SCORE, descending=False), limit=2, offset=1)
    assert count == 5 and [lead.email for lead in page] == ["evil<script>@x.example", "ada@example.com"]


@pytest.mark.parametrize(("query", "named"), [
    ("stage=lukewarm", "stage"), ("min_score=lots", "min_score"), ("max_score=1.5", "max_score"),
    ("page=0", "page"), ("page=-3", "page"), ("page=two", "page"), ("customer=maybe", "customer"),
    ("suppressed=perhaps", "suppressed"), ("sort=shoe_size", "sort"), ("order=sideways", "order"),
    ("min_score=9&max_score=3", "min_score"),
])
def test_a_bad_parameter_gets_a_400_naming_it(client: TestClient, engine: Engine, query: str, named: str) -> None:
    response = client.get(f"/admin?{query}")
    assert response.status_code == 400
    assert response.text.startswith(f"Bad request: {named}:")


def test_values_are_escaped(client: TestClient, engine: Engine) -> None:
    crowd(engine.store)
    response = client.get("/admin", params={"q": "<script>alert(1)</script>"})
    assert response.status_code == 200
    assert "<script>alert" not in response.text and "&lt;script&gt;alert(1)" in response.text
    page = client.get("/admin?q=evil").text
    assert "<b>Mallory</b>" not in page and "&lt;b&gt;Mallory&lt;/b&gt;" in page
    assert "evil&lt;script&gt;@x.example" in page


def test_a_lead_page_shows_its_mails_history_and_hand_offs(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    asyncio.run(engine.send_due(T0))  # the confirmation
    rules = engine.settings.scoring
    engine.store.record(NewEvent(1, EventKind.EXTERNAL, T0, Credit(20, "form:1"), action="contact_form"), rules)
    [handoff] = engine.store.handoffs_of(1)
    engine.store.decide(handoff.id or 0, Outcome.NO_RESULT, T0 + timedelta(days=1), rules,
                        engine.settings.program, "call again in May")
    page = client.get("/admin/leads/1")
    assert page.status_code == 200
    mails = section(page.text, "mails")
    assert "confirmation" in mails and "sent" in mails and engine.store.sends_of(1)[0].subject in unescape(mails)
    handoffs = section(page.text, "handoffs")
    assert "no result" in handoffs and "call again in May" in handoffs
    assert '<nav class="admin">' in page.text  # the admin's bar of places
    history = section(page.text, "Score history")
    assert "contact_form" in history


def test_the_sales_page_stays_without_the_admin_s_tables(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    engine.store.record(NewEvent(1, EventKind.EXTERNAL, T0, Credit(20, "form:1"), action="contact_form"),
                        engine.settings.scoring)
    [handoff] = engine.store.handoffs_of(1)
    profile = Urls("http://testserver", Signer(engine.settings.secret_key)).profile(handoff.id or 0)
    client.auth = None
    page = client.get(profile)
    assert page.status_code == 200 and 'id="stage"' in page.text and "Won" in page.text
    assert 'id="mails"' not in page.text and '<nav class="admin">' not in page.text


def section(html: str, start: str) -> str:
    """The page from `start` (an id, or a heading's text) to the next heading."""
    at = html.find(f'id="{start}"') if not start[0].isupper() else html.find(f"<h2>{start}</h2>")
    assert at >= 0, start
    end = html.find("<h2>", at + 5)
    return html[at:end if end > 0 else None]


def failed_send(store: Store, lead_id: int, error: str, step: int = 0) -> int:
    with store.session() as session:
        send = Send(lead_id=lead_id, cycle=0, step=step, template=CONFIRMATION, state=SendState.FAILED,
                    subject="Confirm", attempts=3, error=error, created_at=T0 + timedelta(minutes=step))
        session.add(send)
        session.flush()
        assert send.id is not None
        return send.id


def test_the_outbox_counts_sends_by_state_and_lists_the_failed(client: TestClient, engine: Engine) -> None:
    for n in range(3):
        make_lead(engine.store, f"lead{n}@example.com")
    failed_send(engine.store, 1, "550 <no such user>")
    failed_send(engine.store, 2, "template: undefined nickname")
    with engine.store.session() as session:
        session.add(Send(lead_id=3, cycle=0, step=0, template=CONFIRMATION, state=SendState.DEFERRED,
                         created_at=T0, retry_at=T0 + timedelta(hours=2)))
    page = client.get("/admin/outbox")
    assert page.status_code == 200
    counts = dict(re.findall(r'id="state-(\w+)"><strong>(\d+)</strong>', page.text))
    assert counts == {"queued": "0", "sending": "0", "sent": "0", "deferred": "1", "failed": "2", "bounced": "0"}
    assert (T0 + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M") in page.text
    failed = section(page.text, "failed")
    assert failed.index("lead1@example.com") < failed.index("lead0@example.com")  # newest first
    assert "&lt;no such user&gt;" in failed and "undefined nickname" in failed


def test_retry_queues_one_failed_send_again(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    make_lead(engine.store, "bob@example.com")
    first, second = failed_send(engine.store, 1, "relay down"), failed_send(engine.store, 2, "relay down")
    done = client.post(f"/admin/outbox/{first}/retry", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/admin/outbox?queued=1&refused=0"
    queued = engine.store.send(first)
    assert queued and (queued.state, queued.attempts, queued.error) == (SendState.QUEUED, 0, None)
    still = engine.store.send(second)
    assert still and still.state is SendState.FAILED
    assert "1 failed send queued again" in client.get(done.headers["location"]).text
    again = client.post(f"/admin/outbox/{first}/retry", follow_redirects=False)  # no longer failed: left alone
    assert again.headers["location"] == "/admin/outbox?queued=0&refused=0"


def test_retry_all_queues_every_failed_send_and_the_next_run_delivers(client: TestClient, engine: Engine) -> None:
    for n in range(3):
        make_lead(engine.store, f"lead{n}@example.com")
        failed_send(engine.store, n + 1, "relay down")
    done = client.post("/admin/outbox/retry", follow_redirects=False)
    assert done.status_code == 303 and "queued=3" in done.headers["location"]
    assert engine.store.sends_in(SendState.FAILED) == []
    assert len(engine.store.sends_in(SendState.QUEUED)) == 3
    report = asyncio.run(engine.send_due(T0 + timedelta(hours=1)))
    assert len(report.sent) == 3


def test_admin_posts_and_pages_need_the_admin_key(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    send_id = failed_send(engine.store, 1, "relay down")
    client.auth = None
    for path in ("/admin/outbox", "/admin/feeds", "/admin?q=ada"):
        assert client.get(path).status_code == 401
    assert client.post("/admin/outbox/retry").status_code == 401
    assert client.post(f"/admin/outbox/{send_id}/retry", auth=("admin", "guess")).status_code == 401
    cross_site = client.post("/admin/outbox/retry", auth=("admin", engine.settings.admin_key),
                             headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    failed = engine.store.send(send_id)
    assert failed and failed.state is SendState.FAILED


def test_feed_health_shows_each_feed_its_state_and_items(client: TestClient, engine: Engine) -> None:
    results = asyncio.run(engine.refresh_feeds(T0))
    assert {status for _, status, _ in results} == {"ok"}
    engine.store.save_feed(FeedState(feed="security", status="failed", reason="HTTP 503 <busy>",
                                     checked_at=T0 + timedelta(hours=1)), [])
    page = client.get("/admin/feeds")
    assert page.status_code == 200
    counts = engine.store.feed_counts()
    for name in engine.catalog.feeds:
        row = section(page.text, f"feed-{name}")
        row = row[:row.index("</tr>")]
        assert f'<td class="number">{counts[name].items}</td>' in row and counts[name].items > 0
        assert (counts[name].newest or T0).strftime("%Y-%m-%d") in row
    security = section(page.text, "feed-security")
    assert "failed" in security and "HTTP 503 &lt;busy&gt;" in security
    assert (T0 + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M") in security
