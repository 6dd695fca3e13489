"""The tracking server in-process: tokens, redirects, machine hits, unsubscribe, preferences, admin."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from nurture.engine import Engine
from nurture.models import EventKind, Stage, Suppression
from nurture.program import Due
from nurture.score.rules import Credit
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.server.http import ADMIN_TRIES, Throttle
from nurture.store import NewEvent, Store
from nurture.track.tokens import Purpose, Signer
from tests.conftest import SECRET, T0, make_lead

BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver", headers=BROWSER) as client:
        yield client


def confirmation_links(engine: Engine, mailer: MemoryMailer) -> dict[str, str]:
    """Send the confirmation to a new lead and return its URLs by kind, as paths."""
    make_lead(engine.store)
    asyncio.run(engine.send_due(T0))
    html = base64.b64decode(mailer.sent[-1].data.split(b"\r\n\r\n")[-1].split(b"\r\n--")[0]).decode()
    base = engine.settings.base_url
    urls = re.findall(r'(?:href|src)="([^"]+)"', html)
    links = engine.store.sends_of(1)[-1].links
    callback = next(index for index, link in enumerate(links) if link["action"] == "callback")
    return {
        "pixel": next(url for url in urls if "/o/" in url).removeprefix(base),
        "callback": next(url for url in urls if "/c/" in url and link_of(url) == callback).removeprefix(base),
        "honeypot": next(url for url in urls if "/c/" in url and link_of(url) == 0).removeprefix(base),
        "unsubscribe": next(url for url in urls if "/u/" in url).removeprefix(base),
        "preferences": next(url for url in urls if "/p/" in url).removeprefix(base),
    }


def link_of(url: str) -> int:
    return Signer(SECRET).verify(url.rsplit("/", 1)[1], Purpose.CLICK).link


def test_health(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok"


def test_pixel_counts_an_open_once_and_is_never_cached(client: TestClient, engine: Engine,
                                                       mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    for _ in range(3):
        response = client.get(links["pixel"])
        assert response.status_code == 200 and response.content.startswith(b"GIF89a")
        assert "no-store" in response.headers["cache-control"]
    events = [e for e in engine.store.events_of(1) if e.kind is EventKind.OPEN]
    assert [(e.points, e.counted) for e in events] == [(1, True), (1, False), (1, False)]
    assert events[1].reason == "already credited"
    assert engine.store.lead(1).score == 1


@pytest.mark.parametrize("token", ["", "x", "A" * 31, "A" * 200, "YwAAAAAAAAAqAAO-b_zale7uTGgaVcI"])
def test_a_bad_pixel_token_still_gets_the_image_and_changes_nothing(client: TestClient, engine: Engine,
                                                                   token: str) -> None:
    make_lead(engine.store)
    response = client.get(f"/o/{token}.gif")
    assert response.status_code in (200, 404)
    if response.status_code == 200:
        assert response.content.startswith(b"GIF89a")
    assert engine.store.events_of(1) == []


def test_forged_and_misused_tokens_are_404_and_record_nothing(client: TestClient, engine: Engine,
                                                               mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    callback = links["callback"]
    forged = callback[:-2] + ("AA" if not callback.endswith("AA") else "BB")
    assert client.get(forged, follow_redirects=False).status_code == 404
    assert client.get(callback[:-6], follow_redirects=False).status_code == 404
    other_key = Signer("another-secret").sign(Purpose.CLICK, 1, 0)
    assert client.get(f"/c/{other_key}", follow_redirects=False).status_code == 404
    open_token = links["pixel"].removeprefix("/o/").removesuffix(".gif")
    assert client.get(f"/c/{open_token}", follow_redirects=False).status_code == 404  # wrong purpose
    assert client.post(f"/u/{open_token}").status_code == 404
    assert client.get(f"/sales/{open_token}").status_code == 404
    no_link = Signer(SECRET).sign(Purpose.CLICK, 1, 99)
    assert client.get(f"/c/{no_link}", follow_redirects=False).status_code == 404
    no_send = Signer(SECRET).sign(Purpose.CLICK, 999, 0)
    assert client.get(f"/c/{no_send}", follow_redirects=False).status_code == 404
    assert engine.store.events_of(1) == []
    assert engine.store.lead(1).suppressed is None


def test_redirect_target_comes_from_the_database_not_the_query(client: TestClient, engine: Engine,
                                                               mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    response = client.get(links["callback"] + "?url=https://evil.example/&next=https://evil.example/",
                          follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://example.com/thanks-we-will-call"


def test_machine_hits_are_recorded_with_a_reason_but_not_scored(client: TestClient, engine: Engine,
                                                                mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    assert client.head(links["callback"], follow_redirects=False).status_code == 302
    client.get(links["callback"], headers={"User-Agent": "Mozilla/5.0 (compatible; Barracuda Sentinel)"},
               follow_redirects=False)
    events = engine.store.events_of(1)
    assert [(e.kind, e.counted) for e in events] == [(EventKind.CLICK, False), (EventKind.CLICK, False)]
    assert "HEAD" in (events[0].reason or "") and "barracuda" in (events[1].reason or "")
    assert engine.store.lead(1).score == 0
    client.get(links["callback"], follow_redirects=False)
    assert engine.store.lead(1).score == 8


def test_one_click_unsubscribe_needs_no_cookie_or_page(client: TestClient, engine: Engine,
                                                       mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    page = client.get(links["unsubscribe"])
    assert page.status_code == 200 and "<form" in page.text
    assert engine.store.lead(1).suppressed is None  # a GET changes nothing
    response = client.post(links["unsubscribe"], content=b"List-Unsubscribe=One-Click",
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    lead = engine.store.lead(1)
    assert lead.suppressed is Suppression.UNSUBSCRIBED and lead.score == -25
    client.post(links["unsubscribe"])  # twice: still one unsubscribe event
    assert [e.kind for e in engine.store.events_of(1)].count(EventKind.UNSUBSCRIBE) == 1
    [unsubscribed] = [e for e in engine.store.events_of(1) if e.kind is EventKind.UNSUBSCRIBE]
    assert unsubscribed.send_id == engine.store.sends_of(1)[-1].id  # the mail it came in: reports count it there
    sent_before = len(mailer.sent)
    asyncio.run(engine.send_due(T0.replace(year=2027)))
    assert len(mailer.sent) == sent_before


def test_preferences_change_interests_and_reject_unknown_ones(client: TestClient, engine: Engine,
                                                             mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    page = client.get(links["preferences"])
    assert page.status_code == 200 and 'value="security"' in page.text
    saved = client.post(links["preferences"], data={"interest": ["security", "devops"], "industry": "manufacturing"})
    assert saved.status_code == 200 and "Saved" in saved.text
    lead = engine.store.lead(1)
    assert (lead.interests, lead.industry) == (["security", "devops"], "manufacturing")
    rejected = client.post(links["preferences"], data={"interest": ["gardening"], "industry": ""})
    assert rejected.status_code == 400 and "gardening" in rejected.text
    assert engine.store.lead(1).interests == ["security", "devops"]


def test_admin_pages_need_the_admin_key(client: TestClient, engine: Engine) -> None:
    make_lead(engine.store)
    assert client.get("/admin").status_code == 401
    assert client.get("/admin", auth=("admin", "wrong")).status_code == 401
    key = engine.settings.admin_key
    page = client.get("/admin", auth=("admin", key))
    assert page.status_code == 200 and "ada@example.com" in page.text
    assert client.get("/admin/leads/1", auth=("admin", key)).status_code == 200
    assert client.get("/admin/sink", auth=("admin", key)).status_code == 200
    assert client.get("/admin/leads/1").status_code == 401


def test_admin_records_the_outcome_of_an_open_hand_off(client: TestClient, engine: Engine,
                                                        mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    client.get(links["pixel"])
    client.get(links["callback"], follow_redirects=False)
    assert engine.store.lead(1).stage is Stage.MQL  # 9 points
    engine.store.record(NewEvent(1, EventKind.EXTERNAL, T0, Credit(3, "form:1")), engine.settings.scoring)
    assert engine.store.lead(1).stage is Stage.SQL
    key = engine.settings.admin_key
    done = client.post("/admin/leads/1", data={"outcome": "won"}, auth=("admin", key), follow_redirects=False)
    assert done.status_code == 303
    assert engine.store.lead(1).stage is Stage.WON
    assert client.post("/admin/leads/1", data={"outcome": "won"}, auth=("admin", key)).status_code == 404


def test_unknown_routes_and_methods_answer_cleanly(client: TestClient) -> None:
    assert client.get("/nope").status_code == 404
    assert client.delete("/healthz").status_code == 405
    assert client.put("/c/abc").status_code == 405


def settling(engine: Engine, seconds: float) -> Engine:
    rules = engine.settings.scoring.model_copy(update={"settle_seconds": seconds})
    engine.settings = engine.settings.model_copy(update={"scoring": rules})
    return engine


def digest_links(engine: Engine, mailer: MemoryMailer) -> list[str]:
    asyncio.run(engine.refresh_feeds(T0))
    make_lead(engine.store, cycle_started_at=T0)
    asyncio.run(engine.send_due(T0))
    asyncio.run(engine.send_due(T0 + timedelta(days=7)))
    html = base64.b64decode(mailer.sent[-1].data.split(b"\r\n\r\n")[-1].split(b"\r\n--")[0]).decode()
    base = engine.settings.base_url
    return [url.removeprefix(base) for url in re.findall(r'href="([^"]+)"', html) if "/c/" in url]


def test_a_qualifying_click_waits_for_the_score_to_settle(engine: Engine, mailer: MemoryMailer) -> None:
    links = digest_links(settling(engine, 0.4), mailer)
    with TestClient(create_app(engine), headers=BROWSER) as client:
        sent_links = engine.store.sends_of(1)[-1].links
        pricing = next(path for path in links if sent_links[link_of(path)]["tag"] == "high-intent")
        client.get(pricing, follow_redirects=False)
        assert engine.store.lead(1).score == 12 and engine.store.lead(1).stage is Stage.MQL
        time.sleep(0.8)
    assert engine.store.lead(1).stage is Stage.SQL
    assert [m.recipient for m in mailer.sent][-1] == "sales@example.com"


def test_a_scanner_burst_never_reaches_sales(engine: Engine, mailer: MemoryMailer) -> None:
    links = digest_links(settling(engine, 0.4), mailer)
    with TestClient(create_app(engine), headers=BROWSER) as client:
        for path in links[1:6]:  # every link of the message within a second, pricing among them
            client.get(path, follow_redirects=False)
        time.sleep(0.8)
    lead = engine.store.lead(1)
    assert lead.stage is Stage.MQL and lead.score <= 0
    reasons = {e.reason for e in engine.store.events_of(1) if e.kind is EventKind.CLICK}
    assert any(reason and "burst" in reason for reason in reasons)
    assert "sales@example.com" not in [m.recipient for m in mailer.sent]


def test_a_hit_on_the_hidden_honeypot_link_marks_its_neighbours(client: TestClient, engine: Engine,
                                                               mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    client.get(links["callback"], follow_redirects=False)
    assert engine.store.lead(1).score == 8
    assert client.get(links["honeypot"], follow_redirects=False).status_code == 302  # answered like any link
    events = engine.store.events_of(1)
    assert [(e.counted, e.reason) for e in events] == [(False, "honeypot link"), (False, "honeypot link")]
    assert engine.store.lead(1).score == 0


def test_health_pings_the_database_without_reading_leads(client: TestClient, engine: Engine,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def every_lead(*args: object) -> None:
        raise AssertionError("a health probe read every lead")

    monkeypatch.setattr(Store, "due_pages", every_lead)
    assert (client.get("/healthz").status_code, client.get("/healthz").text) == (200, "ok")


def test_ready_says_why_not_when_the_schema_is_not_this_releases(client: TestClient, engine: Engine) -> None:
    assert (client.get("/readyz").status_code, client.get("/readyz").text) == (200, "ready")
    with engine.store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.text.startswith("schema: the database's schema is at revision f00d")


def test_every_page_carries_the_security_headers(client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    key = engine.settings.admin_key
    for answer in (client.get(links["unsubscribe"]), client.get("/admin", auth=("admin", key)), client.get("/healthz"),
                   client.get("/nowhere")):
        assert answer.headers["x-frame-options"] == "SAMEORIGIN"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]
    redirect = client.get(links["callback"], follow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["referrer-policy"] == "no-referrer"


def test_failed_admin_logins_from_one_address_are_throttled(client: TestClient, engine: Engine) -> None:
    for _ in range(ADMIN_TRIES):
        assert client.get("/admin", auth=("admin", "guess")).status_code == 401
    assert client.get("/admin", auth=("admin", engine.settings.admin_key)).status_code == 429
    assert client.get("/admin").status_code == 429


def test_a_throttled_address_may_log_in_again_once_its_failures_age_out() -> None:
    clock = [0.0]
    logins = Throttle(2, 60.0, clock=lambda: clock[0])
    logins.failed("192.0.2.7")
    clock[0] = 30.0
    logins.failed("192.0.2.7")
    assert logins.blocked("192.0.2.7") and not logins.blocked("192.0.2.8")
    clock[0] = 61.0  # the first failure aged out
    assert not logins.blocked("192.0.2.7")


def test_links_mailed_before_a_key_rotation_keep_working(engine: Engine, mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)  # signed with the key of the settings fixture
    rotated = engine.settings.model_copy(update={"secret_key": "a-newer-key",
                                                 "old_secret_keys": (engine.settings.secret_key,)})
    with TestClient(create_app(Engine(rotated, engine.store, mailer)), headers=BROWSER) as after:
        assert after.get(links["callback"], follow_redirects=False).status_code == 302
    retired = rotated.model_copy(update={"old_secret_keys": ()})
    with TestClient(create_app(Engine(retired, engine.store, mailer)), headers=BROWSER) as later:
        assert later.get(links["callback"], follow_redirects=False).status_code == 404


def test_metrics_are_scraped_from_the_database(client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)  # one lead, its confirmation sent
    make_lead(engine.store, email="bob@example.com")
    engine.outbox.enqueue(Due(2, 0, 0, "confirmation", None), T0)
    client.get(links["pixel"])
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = dict(line.rsplit(" ", 1) for line in scraped.text.splitlines() if line and not line.startswith("#"))
    assert values['nurture_sends{state="queued"}'] == "1.0" and values['nurture_sends{state="failed"}'] == "0.0"
    assert 'nurture_sends{state="sent"}' not in values  # the history: a scrape does not read every mail sent
    assert float(values["nurture_outbox_oldest_due_seconds"]) > 0  # bob's, recorded at T0
    assert values["nurture_hits_pending"] == "0.0"  # judged inline before the pixel answered
    assert values["nurture_handoffs_pending"] == "0.0" and values["nurture_feeds_failing"] == "0.0"


def test_the_sink_viewer_shows_a_mail_without_its_pixel_and_with_links_where_they_lead(
        client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    from nurture.models import SinkMessage

    make_lead(engine.store)
    asyncio.run(engine.send_due(T0))
    [envelope] = mailer.sent
    engine.store.add_sink_message(SinkMessage(mail_from=envelope.sender, recipients=[envelope.recipient],
                                              subject="Welcome", received_at=T0, data=envelope.data))
    shown = client.get("/admin/sink/1/html", auth=("admin", engine.settings.admin_key))
    assert shown.status_code == 200
    assert "img-src data:;" in shown.headers["content-security-policy"]
    base = engine.settings.base_url
    assert f"{base}/o/" not in shown.text and f"{base}/c/" not in shown.text
    assert 'href="https://example.com/thanks-we-will-call"' in shown.text  # the call-back link, untracked
    assert engine.store.events_of(1) == []


def test_a_mails_unsubscribe_link_dies_with_an_erased_lead_and_a_forged_one_with_nothing(
        client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    links = confirmation_links(engine, mailer)
    token = links["unsubscribe"].rsplit("/", 1)[1]
    assert Signer(SECRET).verify(token, Purpose.UNSUBSCRIBE_MAIL).subject == engine.store.sends_of(1)[-1].id
    forged = Signer(SECRET).sign(Purpose.UNSUBSCRIBE_MAIL, 999)  # genuine, for a mail there never was
    assert client.post(f"/u/{forged}").status_code == 404
    engine.store.erase(1, T0)
    assert client.get(links["unsubscribe"]).status_code == 404


def test_a_recipients_page_wears_the_layouts_stylesheet_which_cannot_close_its_element(
        engine: Engine, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(engine.settings.templates_dir, templates)
    layout = templates / "en" / "layout.html"
    layout.write_text(layout.read_text(encoding="utf-8").replace(
        "<style>", "<style>/* </style ><script>alert(1)</script> */ .header { color: #123456; }"), encoding="utf-8")
    branded = Engine(engine.settings.model_copy(update={"templates_dir": templates}), engine.store, MemoryMailer())
    make_lead(branded.store)
    token = Signer(SECRET).sign(Purpose.PREFERENCES, 1)
    with TestClient(create_app(branded), base_url="http://testserver", headers=BROWSER) as client:
        page = client.get(f"/p/{token}").text
        admin = client.get("/admin", auth=("admin", branded.settings.admin_key or "")).text
    assert ".header { color: #123456; }" in page and '<div class="header">Acme Software</div>' in page
    assert "</style ><script>" not in page and "<\\/style ><script>" in page  # an end tag, as browsers read it
    assert "#123456" not in admin  # the team's pages keep their own look
