"""Privacy as the SPEC promises: tracking switched off globally or per lead; everything about a lead
exported; a lead erased, after which no link ever sent to it works and its id goes to nobody else;
sign-ups never confirmed are erased in time."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import EventKind
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.settings import Settings
from tests.conftest import ROOT, T0, environ, make_lead

BROWSER = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"}


def nurture(settings: Settings, *arguments: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), *arguments],
                              env=environ(settings.database_url))


def html_of(mailer: MemoryMailer, index: int = -1) -> str:
    body = mailer.sent[index].data.split(b"\r\n\r\n")[-1].split(b"\r\n--")[0]
    return base64.b64decode(body).decode()


def paths(engine: Engine, html: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        path = url.removeprefix(engine.settings.base_url)
        found.setdefault(path.split("/")[1] if path.startswith("/") else "elsewhere", []).append(path)
    return found


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver", headers=BROWSER) as client:
        yield client


def test_a_lead_that_is_not_tracked_gets_no_pixel_and_plain_links(engine: Engine, mailer: MemoryMailer) -> None:
    make_lead(engine.store, email="ada@example.com")
    make_lead(engine.store, email="bob@example.com")
    assert nurture(engine.settings, "leads", "tracking", "bob@example.com", "off").stdout == \
        "bob@example.com: tracking off\n"
    asyncio.run(engine.send_due(T0))
    mails = {envelope.recipient: index for index, envelope in enumerate(mailer.sent)}
    tracked, plain = paths(engine, html_of(mailer, mails["ada@example.com"])), paths(engine, html_of(
        mailer, mails["bob@example.com"]))
    assert "o" in tracked and "c" in tracked
    assert "o" not in plain and "c" not in plain and "u" in plain  # unsubscribing works all the same
    bob = engine.store.lead_by_email("bob@example.com")
    assert engine.store.sends_of(bob.id or 0)[0].links == []


def test_tracking_can_be_switched_off_for_every_mail(settings: Settings, engine: Engine, mailer: MemoryMailer) -> None:
    untracked = settings.model_copy(update={"mail": settings.mail.model_copy(update={"tracking": False})})
    engine = Engine(untracked, engine.store, mailer)
    make_lead(engine.store)
    asyncio.run(engine.send_due(T0))
    found = paths(engine, html_of(mailer))
    assert "o" not in found and "c" not in found


def test_a_recipient_switches_tracking_off_on_the_preferences_page(client: TestClient, engine: Engine,
                                                                   mailer: MemoryMailer) -> None:
    make_lead(engine.store)
    asyncio.run(engine.send_due(T0))
    preferences = paths(engine, html_of(mailer))["p"][0]
    assert 'name="no_tracking"' in client.get(preferences).text
    client.post(preferences, data={"interest": ["cloud"], "no_tracking": "1"})
    assert engine.store.lead(1).tracking is False
    assert ' name="no_tracking" value="1" checked' in client.get(preferences).text
    client.post(preferences, data={"interest": ["cloud"]})
    assert engine.store.lead(1).tracking is True


def test_an_export_holds_everything_stored_about_the_lead(client: TestClient, engine: Engine,
                                                          mailer: MemoryMailer) -> None:
    make_lead(engine.store, email="ada@example.com")
    asyncio.run(engine.send_due(T0))
    assert client.get(paths(engine, html_of(mailer))["o"][0]).status_code == 200
    result = nurture(engine.settings, "leads", "export", "ada@example.com")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["lead"]["email"] == "ada@example.com"
    assert [consent["how"] for consent in data["consents"]] == ["test"]
    assert [send["template"] for send in data["sends"]] == ["confirmation"]
    [opened] = [event for event in data["events"] if event["kind"] == EventKind.OPEN.value]
    assert opened["user_agent"] == BROWSER["User-Agent"] and opened["client"] == "testclient"


def test_an_erased_lead_keeps_no_personal_data_and_no_link_sent_to_it_works(engine: Engine,
                                                                            mailer: MemoryMailer) -> None:
    make_lead(engine.store, email="ada@example.com", first_name="Ada", company="Analytical Engines")
    asyncio.run(engine.send_due(T0))
    links = paths(engine, html_of(mailer))
    with TestClient(create_app(engine), base_url="http://testserver", headers=BROWSER) as client:
        assert client.get(links["o"][0]).status_code == 200  # an open before: an event with agent and address
    result = nurture(engine.settings, "leads", "erase", "ada@example.com", "--yes")
    assert result.exit_code == 0 and result.stdout == "erased lead 1: its personal data is gone\n"
    assert nurture(engine.settings, "leads", "export", "ada@example.com").exit_code == 2

    newcomer = make_lead(engine.store, email="bob@example.com")  # on SQLite too: the erased id is not reused
    assert newcomer.id == 2
    with TestClient(create_app(engine), base_url="http://testserver", headers=BROWSER) as client:
        for kind in ("u", "p", "c"):
            for path in links[kind]:
                assert client.get(path, follow_redirects=False).status_code == 404, path
        assert client.post(links["u"][0]).status_code == 404
        assert client.get(links["o"][0]).status_code == 200  # the pixel answers every client alike...
    stored = json.dumps(engine.store.everything_about(1))
    for personal in ("ada@example.com", "Ada", "Analytical", BROWSER["User-Agent"], "testclient"):
        assert personal not in stored  # ...and nothing more is kept of an erased lead
    assert [event.kind for event in engine.store.events_of(1)] == [EventKind.OPEN]  # the anonymous count stays
    assert engine.store.lead(2).suppressed is None and engine.store.lead(2).email == "bob@example.com"
    report = asyncio.run(engine.send_due(T0 + timedelta(days=8)))
    assert all("erased" not in line for line in report.sent + report.enqueued)


def test_a_sign_up_never_confirmed_is_erased_after_unconfirmed_days(engine: Engine) -> None:
    make_lead(engine.store, email="never@example.com", confirmed_at=None)
    make_lead(engine.store, email="confirmed@example.com")
    days = engine.settings.program.unconfirmed_days
    engine.apply_rules(T0 + timedelta(days=days - 1))
    assert engine.store.lead(1).erased_at is None
    engine.apply_rules(T0 + timedelta(days=days + 1))
    assert engine.store.lead(1).erased_at is not None and engine.store.lead(1).email == "erased-1@erased.invalid"
    assert engine.store.lead(2).erased_at is None
