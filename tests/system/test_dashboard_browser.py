"""The dashboard in a real browser on a laptop's screen: Debian's chromium driven by Playwright, over a real
uvicorn server, logged in with HTTP Basic credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.engine import Engine
from nurture.models import EventKind, Outcome, SendState, Stage
from nurture.report.svg import FONT, WIDTH
from nurture.server import create_app
from tests.browsers import IN_CHROMIUM
from tests.conftest import free_port
from tests.integration.test_report import History
from tests.servers import serving

LAPTOP = {"width": 1280, "height": 800}
pytestmark = [
    *IN_CHROMIUM,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]


@pytest.fixture
def program(engine: Engine) -> Engine:
    """Four months of a program: 40 leads, mails opened by people and by machines, some gone to sales."""
    h = History(engine.store)
    outcomes = [Outcome.WON, Outcome.NO_RESULT, Outcome.LOST, None, Outcome.WON, Outcome.NOT_A_FIT]
    for n in range(40):
        created = n * 3
        lead = h.lead(f"lead{n:02}@example.com", created, confirmed=n % 8 != 0,
                      industry=("finance", "retail", "<health & care>")[n % 3])
        if n % 8 == 0:
            continue
        for step in (1, 2):
            send = h.send(lead, created + step * 7, step=step,
                          state=SendState.BOUNCED if n % 13 == 0 and step == 1 else SendState.SENT)
            h.event(lead, send, EventKind.OPEN, created + step * 7 + 0.0001, machine=True)
            if n % 2:
                h.event(lead, send, EventKind.OPEN, created + step * 7 + 1, points=1)
            if n % 4 == 1:
                h.event(lead, send, EventKind.CLICK, created + step * 7 + 1, link=0, points=12)
        if n % 4 == 1:
            h.handoff(lead, created + 8 + n % 5 * 9, 13, outcomes[n // 4 % len(outcomes)])
            with engine.store.session() as session:
                session.get_one(type(engine.store.lead(lead)), lead).stage = Stage.SQL
    h.tally()
    return engine


def test_the_dashboard_reads_well_on_a_laptop(browser, program: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with serving(create_app(program), free_port()) as base:
        context = browser.new_context(viewport=LAPTOP, http_credentials={
            "username": "admin", "password": program.settings.admin_key or ""})
        page = context.new_page()
        answer = page.goto(base + "/admin/dashboard")
        assert answer is not None and answer.status == 200
        charts = page.locator("svg.chart")
        assert charts.count() == 6
        for index in range(charts.count()):
            box = charts.nth(index).bounding_box()
            assert box and box["width"] >= WIDTH * 12 / FONT and box["height"] > 100, index  # labels >= 12 px
            assert box["x"] >= 0 and box["x"] + box["width"] <= LAPTOP["width"]
        first, second = (charts.nth(index).bounding_box() for index in (0, 1))
        assert first and second and first["y"] == second["y"]  # side by side on a laptop's screen
        funnel = page.locator("#funnel")
        assert not funnel.locator("table").is_visible()
        funnel.get_by_text("Numbers").click()
        leads = funnel.locator("table tr", has_text="leads").first
        assert leads.is_visible() and leads.locator("td").nth(1).inner_text() == "40"
        assert page.locator("#funnel svg title").first.text_content() == "leads: 40 people"
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        page.select_option("select[name=period]", "week")
        page.select_option("select[name=segment]", "industry")
        page.get_by_role("button", name="Show").click()
        page.wait_for_load_state()
        assert "period=week" in page.url and page.locator("svg.chart").count() == 7
        page.locator("#segments").get_by_text("Numbers").click()
        assert page.locator("#table-segments").get_by_text("<health & care>").is_visible()
        page.screenshot(path=str(tmp_path / "by-industry.png"), full_page=False)
        download = page.locator("a#json").get_attribute("href")
        assert download == "/admin/report.json?period=week&segment=industry"
        context.close()
