"""Double opt-in and consent: a lead from the public form or the API gets its confirmation only until it
confirms; every consent is kept; the form answers alike for a known address; a mailbox gets few
confirmations, whatever its +tags."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import Suppression
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.server.api import CONFIRMATIONS_PER_MAILBOX
from nurture.track.tokens import Purpose, Signer
from nurture.track.urls import Urls
from tests.conftest import ROOT, SECRET, environ

URLS = Urls("http://testserver", Signer(SECRET))


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        yield client


def digests_due(engine: Engine, days: int) -> list[str]:
    asyncio.run(engine.refresh_feeds(engine.store.clock()))
    report = asyncio.run(engine.send_due(engine.store.clock() + timedelta(days=days)))
    return [line.split(":")[0] for line in report.sent if " digest " in line]


def test_a_form_lead_gets_its_digests_only_once_it_confirms(client: TestClient, engine: Engine,
                                                            mailer: MemoryMailer) -> None:
    assert client.post("/subscribe", data={"email": "ada@example.org", "interest": ["cloud"]}).status_code == 200
    lead = engine.store.lead_by_email("ada@example.org")
    assert lead.id is not None and lead.confirmed_at is None
    assert [envelope.recipient for envelope in mailer.sent] == ["ada@example.org"]  # the confirmation
    assert digests_due(engine, 8) == []

    token = URLS.confirm(lead.id).rsplit("/", 1)[1]
    assert client.get(f"/confirm/{token}").status_code == 200  # a look (or a link scanner) confirms nothing
    assert engine.store.lead(lead.id).confirmed_at is None
    assert "is confirmed" in client.post(f"/confirm/{token}").text
    assert client.post(f"/confirm/{token}").status_code == 200  # again: nothing changes
    assert [consent.how for consent in engine.store.consents_of(lead.id)] == ["form", "confirmed by link"]
    assert digests_due(engine, 8) == ["ada@example.org"]


def test_saving_topics_confirms_the_address_too(client: TestClient, engine: Engine) -> None:
    client.post("/subscribe", data={"email": "ada@example.org"})
    lead_id = engine.store.lead_by_email("ada@example.org").id
    assert lead_id is not None
    token = URLS.preferences(lead_id).rsplit("/", 1)[1]
    assert client.post(f"/p/{token}", data={"interest": ["security"]}).status_code == 200
    assert engine.store.lead(lead_id).confirmed_at is not None
    assert [consent.how for consent in engine.store.consents_of(lead_id)] == ["form", "topics saved"]


def test_a_confirm_token_is_no_other_token(client: TestClient, engine: Engine) -> None:
    client.post("/subscribe", data={"email": "ada@example.org"})
    lead_id = engine.store.lead_by_email("ada@example.org").id or 0
    unsubscribe = Signer(SECRET).sign(Purpose.UNSUBSCRIBE, lead_id)
    assert client.post(f"/confirm/{unsubscribe}").status_code == 404
    assert client.post("/confirm/forged").status_code == 404
    assert engine.store.lead(lead_id).confirmed_at is None


def test_the_api_confirms_at_once_only_when_the_caller_collected_consent(client: TestClient, engine: Engine) -> None:
    key = {"X-API-Key": engine.settings.api_key}
    assert client.post("/api/leads", json={"email": "ada@example.org"}, headers=key).status_code == 201
    assert client.post("/api/leads", json={"email": "bob@example.org", "consent": True}, headers=key).status_code == 201
    bad = client.post("/api/leads", json={"email": "cy@example.org", "consent": "yes"}, headers=key)
    assert (bad.status_code, bad.text) == (400, "Bad request: consent must be true or false")
    ada, bob = engine.store.lead_by_email("ada@example.org"), engine.store.lead_by_email("bob@example.org")
    assert ada.confirmed_at is None and bob.confirmed_at is not None
    assert [(c.how, c.client) for c in engine.store.consents_of(bob.id or 0)] == [
        ("api (consent collected by the caller)", "testclient")]


def test_the_form_answers_alike_for_a_known_address_and_mails_it_nothing(client: TestClient, engine: Engine,
                                                                        mailer: MemoryMailer) -> None:
    first = client.post("/subscribe", data={"email": "ada@example.org"})
    again = client.post("/subscribe", data={"email": "ADA@example.org", "first_name": "Someone else"})
    assert (again.status_code, again.text) == (first.status_code, first.text)
    assert len(mailer.sent) == 1 and len(engine.store.leads()) == 1


def test_a_mailbox_gets_few_confirmations_whatever_its_tags(client: TestClient, engine: Engine,
                                                            mailer: MemoryMailer) -> None:
    answers = []
    for n in range(CONFIRMATIONS_PER_MAILBOX + 2):
        client.headers["X-Forwarded-For"] = f"198.51.100.{n}"  # not that it matters: the mailbox is counted
        answers.append(client.post("/subscribe", data={"email": f"victim+{n}@example.org"}).text)
    assert len(set(answers)) == 1  # the same answer every time
    assert len(engine.store.leads()) == CONFIRMATIONS_PER_MAILBOX == len(mailer.sent)
    key = {"X-API-Key": engine.settings.api_key}
    assert client.post("/api/leads", json={"email": "victim+api@example.org"}, headers=key).status_code == 429
    assert client.post("/api/leads", json={"email": "victim+ok@example.org", "consent": True},
                       headers=key).status_code == 201  # consent collected elsewhere: no confirmation to limit


def test_leads_added_or_imported_by_the_marketer_are_confirmed_with_their_consent(engine: Engine,
                                                                                  tmp_path: Path) -> None:
    csv = tmp_path / "fair.csv"
    csv.write_text("email,interests\nada@example.org,cloud\n", encoding="utf-8")
    env = environ(engine.settings.database_url)
    base = ["--config", str(ROOT / "nurture.yaml"), "leads"]
    assert CliRunner().invoke(main, [*base, "import", str(csv)], env=env).exit_code == 0
    assert CliRunner().invoke(main, [*base, "add", "bob@example.org"], env=env).exit_code == 0
    ada, bob = engine.store.lead_by_email("ada@example.org"), engine.store.lead_by_email("bob@example.org")
    assert ada.confirmed_at is not None and bob.confirmed_at is not None
    assert [c.how for c in engine.store.consents_of(ada.id or 0)] == ["import fair.csv"]
    assert [c.how for c in engine.store.consents_of(bob.id or 0)][0].startswith("cli (")


def test_an_unsubscribed_lead_that_signs_up_anew_is_mailed_again_once_it_confirms(
        client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    client.post("/subscribe", data={"email": "ada@example.org", "interest": ["cloud"]})
    lead_id = engine.store.lead_by_email("ada@example.org").id or 0
    confirm = URLS.confirm(lead_id).rsplit("/", 1)[1]
    client.post(f"/confirm/{confirm}")
    client.post(f"/u/{URLS.unsubscribe(lead_id).rsplit('/', 1)[1]}")
    assert engine.store.lead(lead_id).suppressed is Suppression.UNSUBSCRIBED
    assert digests_due(engine, 8) == []

    answer = client.post("/subscribe", data={"email": "ada@example.org", "first_name": "Spam here"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    asking = mailer.sent[-1]
    assert asking.recipient == "ada@example.org" and b"Spam here" not in asking.data
    assert b"Subject: Please confirm your address for Acme Software" in asking.data
    assert engine.store.lead(lead_id).suppressed is Suppression.UNSUBSCRIBED  # asking is no consent
    assert "Yes, confirm my address" in client.get(f"/confirm/{confirm}").text
    client.post(f"/confirm/{confirm}")
    lead = engine.store.lead(lead_id)
    assert lead.suppressed is None and lead.score == 0  # the unsubscribe's points no longer count
    assert [c.how for c in engine.store.consents_of(lead_id)] == ["form", "confirmed by link",
                                                                   "re-subscribed: confirmed by link"]
    assert digests_due(engine, 8) == ["ada@example.org"]


def test_a_bounced_address_is_not_asked_again(client: TestClient, engine: Engine, mailer: MemoryMailer) -> None:
    client.post("/subscribe", data={"email": "ada@example.org"})
    lead_id = engine.store.lead_by_email("ada@example.org").id or 0
    engine.store.suppress(lead_id, Suppression.BOUNCED, engine.store.clock(), engine.settings.scoring)
    sent = len(mailer.sent)
    assert "Check your inbox" in client.post("/subscribe", data={"email": "ada@example.org"}).text
    assert len(mailer.sent) == sent
