"""The admin in a real browser on a laptop's screen: Debian's chromium driven by Playwright."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from nurture.engine import Engine
from nurture.models import EventKind, Lead, Send, SendState, Stage
from nurture.program import CONFIRMATION
from nurture.score.rules import Credit
from nurture.server import create_app
from nurture.store import NewEvent
from tests.browsers import IN_CHROMIUM, run
from tests.conftest import T0, free_port
from tests.servers import serving

LAPTOP = {"width": 1280, "height": 800}
pytestmark = [
    *IN_CHROMIUM,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def team(engine: Engine) -> Engine:
    """A list a marketer would page through: 120 leads in two industries, a few gone to sales, failed sends."""
    industries = ["finance", "manufacturing"]
    engine.store.add_leads([Lead(email=f"lead{n:03}@example.com", first_name=f"Lead{n}", last_name="Example",
                                 company=f"Company {n % 7}", industry=industries[n % 2],
                                 country="DE" if n % 3 else "US", score=n % 15, created_at=T0 + timedelta(minutes=n),
                                 cycle_started_at=T0, confirmed_at=T0) for n in range(120)], "test")
    for lead_id in (5, 9):
        asked = NewEvent(lead_id, EventKind.EXTERNAL, T0 + timedelta(hours=3), Credit(20, f"form:{lead_id}"),
                         action="contact_form", detail="Please call me about pricing")
        engine.store.record(asked, engine.settings.scoring)
    with engine.store.session() as session:
        for lead_id in (1, 2, 3):
            session.add(Send(lead_id=lead_id, cycle=0, step=0, template=CONFIRMATION, state=SendState.FAILED,
                             subject="Please confirm", attempts=3, error="421 relay busy, try later",
                             created_at=T0 + timedelta(minutes=lead_id)))
    return engine


def laptop(browser, engine: Engine):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport=LAPTOP, http_credentials={"username": "admin",
                                                                     "password": engine.settings.admin_key})
    return context.new_page()


def shot(page, path: Path, full_page: bool = False) -> Path:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000
    return path


def test_a_marketer_filters_pages_and_opens_a_lead(browser, team: Engine, tmp_path: Path) -> None:
    with serving(create_app(team), free_port()) as base:
        page = laptop(browser, team)
        page.goto(base + "/admin")
        assert page.locator("#total strong").inner_text() == "120"
        assert page.locator("#leads tr").count() == 51  # a heading and 50 leads
        page.select_option("select[name=industry]", "finance")
        page.fill("input[name=min_score]", "1")
        page.select_option("select[name=sort]", "score")
        page.get_by_role("button", name="Show").click()
        page.wait_for_load_state()
        asked = parse_qs(urlsplit(page.url).query)
        assert asked["industry"] == ["finance"] and asked["min_score"] == ["1"] and asked["sort"] == ["score"]
        expected = sum(1 for n in range(120) if n % 2 == 0 and n % 15 >= 1)
        assert page.locator("#total strong").inner_text() == str(expected) and expected > 50
        shot(page, tmp_path / "leads.png")
        first_page = page.locator("#leads td a").all_inner_texts()
        page.get_by_role("link", name="Next").click()
        page.wait_for_load_state()
        second_page = page.locator("#leads td a").all_inner_texts()
        assert len(first_page) == 50 and len(second_page) == expected - 50
        assert not set(first_page) & set(second_page)
        assert page.locator("select[name=industry]").input_value() == "finance"  # the filters stay
        page.goto(base + "/admin?stage=sql")
        assert page.locator("#leads td a").all_inner_texts() == ["lead008@example.com", "lead004@example.com"]
        page.get_by_role("link", name="lead004@example.com").click()
        page.wait_for_load_state()
        assert page.locator("#stage").inner_text() == "SQL"
        assert "Please call me about pricing" in page.locator("#asked").inner_text()
        assert page.locator("#handoffs tr").count() == 2
        shot(page, tmp_path / "lead.png", full_page=True)
        page.context.close()


def test_the_outbox_shows_sends_by_state_and_the_failed(browser, team: Engine, tmp_path: Path) -> None:
    with serving(create_app(team), free_port()) as base:
        page = laptop(browser, team)
        page.goto(base + "/admin/outbox")
        assert page.locator("#state-failed strong").inner_text() == "3"
        assert page.locator("#state-sent strong").inner_text() == "0"
        assert page.locator("#failed tr").count() == 4  # a heading and the three, newest first
        assert page.locator("#failed tr").nth(1).inner_text().count("lead002@example.com") == 1
        assert page.get_by_role("button", name="Retry all failed").is_visible()
        shot(page, tmp_path / "outbox.png")
        page.context.close()


# Chromium posts a same-origin form with `Origin: null` under the pages' no-referrer policy: the
# admin check reads Sec-Fetch-Site first (this failed with 403 before)
def test_the_outbox_retries_failed_sends_from_the_browser(browser, team: Engine, tmp_path: Path) -> None:
    with serving(create_app(team), free_port()) as base:
        page = laptop(browser, team)
        page.goto(base + "/admin/outbox")
        page.locator("#failed tr", has_text="lead001@example.com").get_by_role("button", name="Retry").click()
        page.wait_for_load_state()
        assert page.locator("#notice").count() == 1, page.content()[:500]
        assert "1 failed send queued again" in page.locator("#notice").inner_text()
        assert page.locator("#state-failed strong").inner_text() == "2"
        assert page.locator("#state-queued strong").inner_text() == "1"
        [(queued, email)] = team.store.sends_in(SendState.QUEUED)
        assert email == "lead001@example.com" and queued.error is None
        page.get_by_role("button", name="Retry all failed").click()
        page.wait_for_load_state()
        assert "2 failed sends queued again" in page.locator("#notice").inner_text()
        assert team.store.sends_in(SendState.FAILED) == []
        page.context.close()


def test_feed_health_after_a_refresh(browser, team: Engine, tmp_path: Path) -> None:
    run(team.refresh_feeds(T0))
    with serving(create_app(team), free_port()) as base:
        page = laptop(browser, team)
        page.goto(base + "/admin/feeds")
        assert page.locator("#feeds tr").count() == len(team.catalog.feeds) + 1
        for name in team.catalog.feeds:
            assert page.locator(f"#feed-{name} .badge").inner_text() == "ok"
        shot(page, tmp_path / "feeds.png")
        page.get_by_role("link", name="Leads").click()
        page.wait_for_load_state()
        assert page.url.endswith("/admin")
        page.context.close()
    assert team.store.lead(5).stage is Stage.SQL  # nothing on these pages changed a lead
