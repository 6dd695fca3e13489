"""Previews of a template for a real lead: as a file (`nurture preview`) and in the browser (the admin)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import Lead
from nurture.preview import preview
from nurture.server import create_app
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import ROOT, SECRET, T0, free_port, make_lead
from tests.servers import serving

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def lead(engine: Engine) -> Lead:
    asyncio.run(engine.refresh_feeds(T0))
    return make_lead(engine.store, interests=["cloud", "security"], industry="finance")


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        yield client


def counts(store: Store, lead: Lead) -> tuple[int, int]:
    assert lead.id is not None
    return len(store.sends_of(lead.id)), len(store.events_of(lead.id))


def cli(settings: Settings, *args: str) -> object:
    env = {"NURTURE_DATABASE_URL": settings.database_url, "NURTURE_SECRET_KEY": SECRET}
    return CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), *args], env=env)


# what a preview is


def test_a_preview_is_the_digest_the_lead_would_get_next(settings: Settings, store: Store, lead: Lead) -> None:
    shown = preview(settings, store, "digest", lead.email)
    cards = re.findall(r'<a class="card-title" href="([^"]+)"', shown.rendered.html)
    assert len(cards) == settings.program.items_per_digest
    assert shown.note is None
    titles = {item.link: item.title for item in store.items(limit=1000)}
    assert shown.rendered.subject in titles.values()
    assert {titles[link] for link in cards} <= set(titles.values())


def test_a_preview_records_nothing_and_its_links_act_on_nothing(settings: Settings, store: Store,
                                                                 lead: Lead) -> None:
    shown = preview(settings, store, "digest", lead.email)
    html, base = shown.rendered.html, settings.base_url
    assert counts(store, lead) == (0, 0)
    assert shown.rendered.links == ()
    assert "/o/" not in html and "/c/" not in html  # no pixel, no click token
    assert f'href="{base}/u/preview"' in html and f'href="{base}/p/preview"' in html
    assert 'href="https://example.com/pricing"' in html  # straight to the target


def test_a_preview_mixes_the_lead_s_feeds(settings: Settings, store: Store, lead: Lead) -> None:
    shown = preview(settings, store, "digest", lead.email)
    links = re.findall(r'<a class="card-title" href="([^"]+)"', shown.rendered.html)
    feeds = {item.link: item.feed for item in store.items(limit=1000)}
    assert {feeds[link] for link in links} == {"cloud", "security", "finance"}


def test_a_preview_says_when_the_digest_would_be_skipped(settings: Settings, store: Store) -> None:
    quiet = make_lead(store, "quiet@example.com", interests=[], industry="")
    shown = preview(settings, store, "digest", quiet.email)
    assert shown.note == ("the lead has 0 new matching items, fewer than program.min_new_items (1): "
                          "its digest would be skipped")
    assert shown.rendered.subject == "What is new at Acme Software"


def test_a_preview_uses_the_lead_s_locale(settings: Settings, store: Store, lead: Lead) -> None:
    dutch = make_lead(store, "joost@example.nl", first_name="Joost", locale="nl", interests=["cloud"])
    assert "Beste Joost" in preview(settings, store, "digest", dutch.email).rendered.html


# the command


def test_preview_command_writes_the_html_and_the_text(settings: Settings, store: Store, lead: Lead,
                                                      tmp_path: Path) -> None:
    shown = preview(settings, store, "digest", lead.email)
    result = cli(settings, "preview", "digest", "--lead", lead.email, "-o", str(tmp_path / "d.html"))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert (tmp_path / "d.html").read_text(encoding="utf-8") == shown.rendered.html
    text = cli(settings, "preview", "digest", "--lead", lead.email, "--text")
    assert text.stdout == shown.rendered.text + "\n"  # type: ignore[attr-defined]
    assert counts(store, lead) == (0, 0)


def test_preview_command_names_an_unknown_lead_or_template(settings: Settings, lead: Lead) -> None:
    unknown = cli(settings, "preview", "digest", "--lead", "nobody@example.com")
    assert unknown.exit_code == 2 and "nobody@example.com" in unknown.stderr  # type: ignore[attr-defined]
    missing = cli(settings, "preview", "newsletter", "--lead", lead.email)
    assert missing.exit_code == 2 and "template 'newsletter' not found" in missing.stderr  # type: ignore[attr-defined]


# in the browser


def admin(settings: Settings) -> tuple[str, str]:
    return ("marketer", settings.admin_key)


def test_the_admin_preview_needs_the_admin_key(client: TestClient, settings: Settings, lead: Lead) -> None:
    path = f"/admin/preview/digest?lead={lead.email}"
    assert client.get(path).status_code == 401
    assert client.get(path, auth=("marketer", "wrong")).status_code == 401
    assert client.get(path, auth=admin(settings)).status_code == 200


def test_the_admin_preview_shows_what_the_command_writes(client: TestClient, settings: Settings, store: Store,
                                                         lead: Lead) -> None:
    shown = preview(settings, store, "digest", lead.email)
    page = client.get(f"/admin/preview/digest?lead={lead.email}", auth=admin(settings))
    assert page.text == shown.rendered.html
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"].startswith("sandbox; default-src 'none'")
    text = client.get(f"/admin/preview/digest?lead={lead.email}&text=1", auth=admin(settings))
    assert text.text == shown.rendered.text and text.headers["content-type"].startswith("text/plain")
    assert counts(store, lead) == (0, 0)


def test_the_admin_preview_passes_on_the_note(client: TestClient, settings: Settings, store: Store) -> None:
    quiet = make_lead(store, "quiet@example.com", interests=[], industry="")
    page = client.get(f"/admin/preview/digest?lead={quiet.email}", auth=admin(settings))
    assert "would be skipped" in page.headers["x-nurture-note"]


@pytest.mark.parametrize(("path", "status", "says"), [
    ("/admin/preview/digest", 400, "?lead=EMAIL"),
    ("/admin/preview/digest?lead=nobody@example.com", 404, "nobody@example.com"),
    ("/admin/preview/newsletter?lead=ada@example.com", 422, "template 'newsletter' not found"),
    ("/admin/preview/..%2Fsecrets?lead=ada@example.com", 404, "Not Found"),
    ("/admin/preview/digest.html?lead=ada@example.com", 400, "not a template name"),
])
def test_the_admin_preview_names_what_is_wrong(client: TestClient, settings: Settings, lead: Lead, path: str,
                                               status: int, says: str) -> None:
    page = client.get(path, auth=admin(settings))
    assert page.status_code == status
    assert says in page.text


# in a real browser


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_the_admin_preview_lays_out_in_chromium(engine: Engine, lead: Lead, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with serving(create_app(engine), free_port()) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--no-sandbox", "--disable-background-networking"])
        try:
            page = browser.new_page(http_credentials={"username": "marketer", "password": engine.settings.admin_key},
                                    viewport={"width": 800, "height": 1200})
            response = page.goto(f"{base}/admin/preview/digest?lead={lead.email}")
            assert response is not None and response.status == 200
            cards = page.locator("div.card")
            assert cards.count() == engine.settings.program.items_per_digest
            assert all((box := cards.nth(n).bounding_box()) and box["width"] > 300 for n in range(cards.count()))
            assert page.locator("a.button").is_visible()
            page.screenshot(path=str(tmp_path / "preview.png"), full_page=True)
            assert (tmp_path / "preview.png").stat().st_size > 10_000
        finally:
            browser.close()
