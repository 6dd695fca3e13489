"""Pages in a real browser: Debian's chromium driven by Playwright."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from nurture.engine import Engine
from nurture.models import Stage
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.track.tokens import Signer
from nurture.track.urls import Urls
from tests.browsers import IN_CHROMIUM, run
from tests.conftest import free_port, make_lead
from tests.servers import serving

PERSON = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
pytestmark = [
    *IN_CHROMIUM,
]


def html_parts(mailer: MemoryMailer) -> list[str]:
    parts = []
    for envelope in mailer.sent:
        message = message_from_bytes(envelope.data, policy=policy.default)
        parts.append(message.get_body(("html",)).get_content())
    return parts


@pytest.fixture
def mailed(engine: Engine, mailer: MemoryMailer) -> Engine:
    run(engine.refresh_feeds(datetime.now(UTC)))
    make_lead(engine.store, interests=["cloud", "security"])
    start = datetime.now(UTC) - timedelta(days=10)
    run(engine.send_due(start))
    run(engine.send_due(start + timedelta(days=7)))
    assert len(mailer.sent) == 2
    return engine


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_digest_lays_out_with_visible_cards_and_buttons(browser, mailed: Engine, mailer: MemoryMailer,
                                                           tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 800, "height": 1200})
    page.set_content(html_parts(mailer)[1], wait_until="domcontentloaded")
    cards = page.locator("div.card")
    assert cards.count() == 5
    for index in range(cards.count()):
        box = cards.nth(index).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 40
    button = page.locator("a.button")
    assert button.is_visible() and button.inner_text() == "Call me back"
    assert page.locator(".preheader").is_hidden()
    shot = tmp_path / "digest.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sales_records_no_result_on_the_profile_page(browser, mailed: Engine, mailer: MemoryMailer) -> None:
    engine = mailed
    digest = html_parts(mailer)[1]
    pricing = re.search(r'href="([^"]+)"[^>]*>see pricing', digest)
    assert pricing
    with serving(create_app(engine), free_port()) as base:
        page = browser.new_page(user_agent=PERSON)
        click = page.request.get(base + pricing.group(1).removeprefix(engine.settings.base_url), max_redirects=0)
        assert click.status == 302 and click.headers["location"] == "https://example.com/pricing"  # +12
        assert engine.store.lead(1).stage is Stage.SQL
        handoff = engine.store.handoffs_of(1)[0]
        profile = Urls(base, Signer(engine.settings.secret_key)).profile(handoff.id or 0)
        page.goto(profile)
        assert page.locator("#stage").inner_text() == "SQL"
        assert "pricing" in page.content()
        for outcome in ("Won", "Lost", "No result", "Not a fit"):
            assert page.get_by_role("button", name=outcome).is_visible()
        page.fill("textarea#note", "Budget is frozen until Q3; call again in summer")
        page.get_by_role("button", name="No result").click()
        page.wait_for_load_state()
        assert page.locator("#stage").inner_text() == "MQL"
        assert page.get_by_role("button", name="No result").count() == 0
        assert "Budget is frozen until Q3" in page.locator("#earlier").inner_text()  # how cycle 0 ended
        page.close()
    lead = engine.store.lead(1)
    assert (lead.stage, lead.cycle, lead.score) == (Stage.MQL, 1, 0)
    assert engine.store.handoffs_of(1)[0].note == "Budget is frozen until Q3; call again in summer"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_double_opt_in_from_the_form_to_the_confirmed_address(browser, engine: Engine, mailer: MemoryMailer,
                                                              tmp_path: Path) -> None:
    with serving(create_app(engine), free_port()) as base:
        page = browser.new_page(user_agent=PERSON)
        page.goto(base + "/subscribe")
        page.fill("input[name=email]", "grace@example.org")
        page.fill("input[name=first_name]", "Buy cheap pills")
        page.locator("button[type=submit]").click()
        assert "Check your inbox" in page.locator("main").inner_text()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while not mailer.sent and datetime.now(UTC) < deadline:  # the confirmation goes after the answer
            page.wait_for_timeout(50)
        [confirmation] = html_parts(mailer)
        assert "pills" not in confirmation  # nothing the visitor typed but the address
        lead = engine.store.lead_by_email("grace@example.org")
        assert lead.confirmed_at is None

        link = re.search(r'href="([^"]+/confirm/[^"]+)"', confirmation)
        assert link
        page.goto(base + link.group(1).removeprefix(engine.settings.base_url))
        assert engine.store.lead(lead.id or 0).confirmed_at is None  # opening the link (a scanner does) is no consent
        page.screenshot(path=str(tmp_path / "confirm.png"), full_page=True)
        page.get_by_role("button", name="Yes, confirm my address").click()
        assert "is confirmed" in page.locator("main").inner_text()
        page.close()
    confirmed = engine.store.lead(lead.id or 0)
    assert confirmed.confirmed_at is not None
    assert [(consent.how, consent.client) for consent in engine.store.consents_of(lead.id or 0)] == [
        ("form", "127.0.0.1"), ("confirmed by link", "127.0.0.1")]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_leads_pages_speak_its_language_and_fall_back_to_the_default(browser, engine: Engine) -> None:
    make_lead(engine.store, email="joost@example.nl", locale="nl")
    make_lead(engine.store, email="hans@example.de", locale="de")  # no German pages: the default's
    urls = Urls("", Signer(engine.settings.secret_key))
    with serving(create_app(engine), free_port()) as base:
        page = browser.new_page(user_agent=PERSON)
        page.goto(base + urls.preferences(1))
        assert page.locator("h1").inner_text() == "Uw onderwerpen"
        assert page.locator("html").get_attribute("lang") == "nl"
        page.get_by_role("button", name="Opslaan").click()
        assert "Opgeslagen" in page.locator("main").inner_text()
        page.goto(base + urls.unsubscribe(1))
        page.get_by_role("button", name="Afmelden").click()
        assert page.locator("h1").inner_text() == "U bent afgemeld"
        page.goto(base + urls.unsubscribe(2))
        assert page.locator("h1").inner_text() == "Unsubscribe"
        page.close()
    assert engine.store.lead(1).suppressed is not None and engine.store.lead(2).suppressed is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reading_a_mail_in_the_sink_viewer_credits_nobody(browser, engine: Engine, mailer: MemoryMailer) -> None:
    from nurture.models import SinkMessage

    port = free_port()  # the mail's URLs point at the server that shows it, as they would in use
    server = engine.settings.server.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    served = Engine(engine.settings.model_copy(update={"server": server}), engine.store, mailer)
    make_lead(served.store)
    run(served.send_due(datetime.now(UTC) - timedelta(minutes=10)))
    [envelope] = mailer.sent
    served.store.add_sink_message(SinkMessage(mail_from=envelope.sender, recipients=[envelope.recipient],
                                              subject="Welcome", received_at=datetime.now(UTC), data=envelope.data))
    with serving(create_app(served), port) as base:
        page = browser.new_page(user_agent=PERSON, http_credentials={"username": "admin",
                                                                    "password": served.settings.admin_key})
        loaded: list[str] = []
        page.on("request", lambda request: loaded.append(request.url))
        page.goto(base + "/admin/sink/1")
        page.wait_for_timeout(1500)  # time for any image to load, and for the judge to record it
        page.close()
    assert not any("/o/" in url or "/c/" in url for url in loaded), loaded
    assert [event.kind for event in served.store.events_of(1)] == []  # no open, no click


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_recipients_pages_follow_the_mail_layouts_branding(browser, engine: Engine, tmp_path: Path) -> None:
    """The marketer's layout gives the mail its colours and header; the pages a recipient opens from it
    wear the same, in every locale (Dutch has no layout of its own: the default's)."""
    templates = tmp_path / "templates"
    shutil.copytree(engine.settings.templates_dir, templates)
    layout = templates / "en" / "layout.html"
    layout.write_text(layout.read_text(encoding="utf-8").replace("background: #0f766e", "background: #7c3aed")
                      .replace("background: #f59e0b", "background: #be123c"), encoding="utf-8")
    branded = Engine(engine.settings.model_copy(update={"templates_dir": templates}), engine.store, MemoryMailer())
    make_lead(branded.store, email="joost@example.nl", locale="nl")
    make_lead(branded.store, email="ada@example.com")
    urls = Urls("", Signer(branded.settings.secret_key))
    with serving(create_app(branded), free_port()) as base:
        page = browser.new_page(user_agent=PERSON, viewport={"width": 800, "height": 900})
        for lead_id, button in ((1, "Opslaan"), (2, "Save")):
            page.goto(base + urls.preferences(lead_id))
            header = page.locator("main .header")
            assert header.inner_text() == branded.settings.mail.company
            assert header.evaluate("node => getComputedStyle(node).backgroundColor") == "rgb(124, 58, 237)"
            save = page.get_by_role("button", name=button)
            assert save.evaluate("node => getComputedStyle(node).backgroundColor") == "rgb(190, 18, 60)"
        page.screenshot(path=str(tmp_path / "preferences.png"), full_page=True)
        assert (tmp_path / "preferences.png").stat().st_size > 0
        page.close()
