"""A hand-off sales can act on: what the lead asked for (a contact form's message) and why it qualified
are in the hand-off mail, on the profile page and in `leads show`; and sales, or its CRM, says what came of it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route as Path
from starlette.testclient import TestClient

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import EventKind, Stage
from nurture.score.rules import Credit
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.settings import Route, Settings
from nurture.store import NewEvent, Store
from nurture.track.actions import Tracking
from nurture.track.tokens import Purpose, Signer
from nurture.track.urls import Urls
from tests.conftest import ROOT, T0, environ, free_port, make_lead
from tests.servers import serving

MESSAGE = "Please call me about pricing for 50 seats"


def test_a_contact_forms_message_reaches_sales_in_the_mail_the_profile_and_the_cli(engine: Engine,
                                                                                  mailer: MemoryMailer) -> None:
    make_lead(engine.store, email="ada@example.com", company="Analytical Engines")
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        posted = client.post("/api/events", headers={"X-API-Key": engine.settings.api_key},
                             json={"email": "ada@example.com", "kind": "contact_form", "detail": MESSAGE})
        assert posted.status_code == 202 and posted.json()["stage"] == Stage.SQL.value
        [handoff] = [envelope for envelope in mailer.sent if envelope.recipient == engine.settings.sales.email]
        mail = message_from_bytes(handoff.data, policy=policy.default)
        html = mail.get_body(("html",)).get_content()
        text = mail.get_body(("plain",)).get_content()
        for body in (html, text):
            assert "What they asked for" in body and "contact_form" in body and "Why they qualified" in body
        assert MESSAGE in html and f'"{MESSAGE}"' in text
        assert "asked for sales at once" in html  # a contact form qualifies whatever the score

        profile = re.search(r'href="[^"]*(/sales/[^"]+)"', html)
        assert profile
        page = client.get(profile.group(1)).text
        assert 'id="asked"' in page and MESSAGE in page and "this one qualified them" in page

    shown = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "leads", "show", "ada@example.com"],
                               env=environ(engine.settings.database_url))
    assert shown.exit_code == 0, shown.output
    assert "asked: " in shown.stdout and f"contact_form: {MESSAGE}" in shown.stdout
    assert "qualified by: " in shown.stdout and "external (contact_form)" in shown.stdout
    assert f'"{MESSAGE}"' in shown.stdout  # the history line carries it too


def qualified(engine: Engine, client: TestClient, email: str = "ada@example.com") -> int:
    make_lead(engine.store, email=email)
    client.post("/api/events", headers={"X-API-Key": engine.settings.api_key},
                json={"email": email, "kind": "contact_form", "detail": MESSAGE})
    lead = engine.store.lead_by_email(email)
    return engine.store.handoffs_of(lead.id or 0)[-1].id or 0


@pytest.mark.parametrize(("outcome", "stage", "cycle"), [("won", Stage.WON, 0), ("lost", Stage.MQL, 1),
                                                         ("no_result", Stage.MQL, 1),
                                                         ("not_a_fit", Stage.DISQUALIFIED, 0)])
def test_a_crm_closes_the_loop_through_the_api(engine: Engine, outcome: str, stage: Stage, cycle: int) -> None:
    key = {"X-API-Key": engine.settings.api_key}
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        handoff_id = qualified(engine, client)
        path = f"/api/handoffs/{handoff_id}/outcome"
        assert client.post(path, json={"outcome": outcome}).status_code == 401
        bad = client.post(path, headers=key, json={"outcome": "maybe"})
        assert bad.status_code == 400 and "expected one of won, lost, no_result, not_a_fit" in bad.text
        answer = client.post(path, headers=key, json={"outcome": outcome, "note": "via the CRM"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"lead": 1, "stage": stage.value, "cycle": cycle}
        again = client.post(path, headers=key, json={"outcome": "won"})
        assert again.status_code == 400 and "already decided" in again.text
    [handoff] = engine.store.handoffs_of(1)
    assert (handoff.outcome.value if handoff.outcome else None, handoff.note) == (outcome, "via the CRM")


def test_a_lead_found_not_a_fit_is_never_nurtured_again(engine: Engine, mailer: MemoryMailer) -> None:
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        handoff_id = qualified(engine, client)
        client.post(f"/api/handoffs/{handoff_id}/outcome", headers={"X-API-Key": engine.settings.api_key},
                    json={"outcome": "not_a_fit"})
    before = len(mailer.sent)
    asyncio.run(engine.refresh_feeds(engine.store.clock()))
    report = asyncio.run(engine.send_due(engine.store.clock() + timedelta(days=30)))
    assert report.enqueued == [] and len(mailer.sent) == before


def test_routing_picks_the_owner_who_gets_the_mail_and_shows_on_the_page(settings: Settings, store: Store,
                                                                         mailer: MemoryMailer) -> None:
    routes = [Route(name="Benelux desk", email="benelux@example.com", countries=["NL", "BE"]),
              Route(name="Key accounts", email="keys@example.com", customer=True)]
    routed = settings.model_copy(update={"sales": settings.sales.model_copy(update={"routes": routes})})
    engine = Engine(routed, store, mailer)
    make_lead(store, email="ada@example.nl", country="NL")
    make_lead(store, email="bob@example.com", customer=True)
    make_lead(store, email="cy@example.com")
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        for email in ("ada@example.nl", "bob@example.com", "cy@example.com"):
            client.post("/api/events", headers={"X-API-Key": routed.api_key},
                        json={"email": email, "kind": "contact_form", "detail": MESSAGE})
        owners = {engine.store.lead(handoff.lead_id).email: (handoff.owner_name, handoff.owner_email)
                  for lead_id in (1, 2, 3) for handoff in engine.store.handoffs_of(lead_id)}
        assert owners == {"ada@example.nl": ("Benelux desk", "benelux@example.com"),
                          "bob@example.com": ("Key accounts", "keys@example.com"),
                          "cy@example.com": ("Sales team", "sales@example.com")}
        assert sorted(envelope.recipient for envelope in mailer.sent if "Sales qualified" in
                      envelope.data.decode(errors="replace")) == ["benelux@example.com", "keys@example.com",
                                                                  "sales@example.com"]
        handoff_id = engine.store.handoffs_of(1)[0].id or 0
        page = client.get(Urls("http://testserver", Signer(routed.secret_key)).profile(handoff_id)).text
        assert "Owner: Benelux desk &lt;benelux@example.com&gt;" in page


def test_the_follow_up_clock_reminds_the_owner_then_escalates_each_once(settings: Settings, store: Store,
                                                                       mailer: MemoryMailer) -> None:
    sales = settings.sales.model_copy(update={
        "routes": [Route(name="Benelux desk", email="benelux@example.com", countries=["NL"])],
        "remind_after_hours": 48.0, "escalate_after_hours": 120.0, "escalate_to": "head-of-sales@example.com"})
    engine = Engine(settings.model_copy(update={"sales": sales}), store, mailer)
    make_lead(store, email="ada@example.nl", country="NL")
    make_lead(store, email="bob@example.com")
    for lead_id in (1, 2):
        store.record(NewEvent(lead_id, EventKind.EXTERNAL, T0, Credit(0, f"form:{lead_id}"), action="contact_form",
                              qualify=True, detail=MESSAGE), settings.scoring)
    asyncio.run(engine.deliver_handoffs(T0))
    decided = engine.store.handoffs_of(2)[0]
    Tracking(engine.settings, store, engine.catalog).decide(decided.id or 0, "won", T0 + timedelta(hours=1))

    def follow_ups() -> list[tuple[str, str]]:
        return [(envelope.recipient, message_from_bytes(envelope.data, policy=policy.default)["Subject"].split(":")[0])
                for envelope in mailer.sent if b"no outcome yet" in envelope.data]

    for hours in (47, 49, 50, 119):  # the clock passed in: a tick every so often
        asyncio.run(engine.deliver_handoffs(T0 + timedelta(hours=hours)))
        assert follow_ups() == ([] if hours < 48 else [("benelux@example.com", "Reminder")])
    for hours in (121, 200):
        asyncio.run(engine.deliver_handoffs(T0 + timedelta(hours=hours)))
    assert follow_ups() == [("benelux@example.com", "Reminder"), ("head-of-sales@example.com", "Escalated")]
    [handoff] = engine.store.handoffs_of(1)
    assert (handoff.reminded_at, handoff.escalated_at) == (T0 + timedelta(hours=49), T0 + timedelta(hours=121))
    reminder = next(envelope for envelope in mailer.sent if envelope.recipient == "benelux@example.com"
                    and b"no outcome yet" in envelope.data)
    text = message_from_bytes(reminder.data, policy=policy.default).get_body(("plain",)).get_content()
    assert "Nobody has recorded what came of this lead since it went to Benelux desk" in text


class Receiver:
    """A CRM's webhook endpoint that fails `failures` times, then takes what it is sent."""

    def __init__(self, failures: int):
        self.failures = failures
        self.tries: list[tuple[dict[str, str], bytes]] = []
        self.taken: list[dict[str, object]] = []

    async def crm(self, request: StarletteRequest) -> PlainTextResponse:
        body = await request.body()
        self.tries.append((dict(request.headers), body))
        if len(self.tries) <= self.failures:
            return PlainTextResponse("down", status_code=500)
        self.taken.append(json.loads(body))
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Path("/crm", self.crm, methods=["POST"])])


def test_the_webhook_reaches_its_receiver_once_signed_and_survives_two_failures(settings: Settings, store: Store,
                                                                               mailer: MemoryMailer) -> None:
    receiver = Receiver(failures=2)
    with serving(receiver.app(), free_port()) as base:
        routes = [Route(name="Benelux desk", email="benelux@example.com", countries=["NL"], webhook=f"{base}/crm")]
        routed = settings.model_copy(update={"sales": settings.sales.model_copy(update={"routes": routes}),
                                             "webhook_secret": "whsec-test"})
        engine = Engine(routed, store, mailer)
        make_lead(store, email="ada@example.nl", country="NL")
        make_lead(store, email="bob@example.com")  # the default owner has no webhook
        for lead_id in (1, 2):
            store.record(NewEvent(lead_id, EventKind.EXTERNAL, T0, Credit(0, f"form:{lead_id}"),
                                  action="contact_form", qualify=True, detail=MESSAGE), settings.scoring)
        for minutes in (0, 0.5, 1.5, 3, 7, 60, 600):  # ticks: tries at 0, 1 and 6 minutes (back-off 1, 5)
            asyncio.run(engine.deliver_handoffs(T0 + timedelta(minutes=minutes)))
    assert len(receiver.tries) == 3 and len(receiver.taken) == 1
    ids = {headers["x-nurture-id"] for headers, _ in receiver.tries}
    assert ids == {"handoff-1"}  # the idempotency key, the same on every try
    for headers, body in receiver.tries:
        expected = "v1=" + hmac.new(b"whsec-test", headers["x-nurture-timestamp"].encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-nurture-signature"], expected)
    [taken] = receiver.taken
    assert taken["id"] == "handoff-1" and taken["lead"]["email"] == "ada@example.nl"  # type: ignore[index]
    assert taken["owner"] == {"name": "Benelux desk", "email": "benelux@example.com"}
    assert taken["asked"][0]["detail"] == MESSAGE  # type: ignore[index]
    assert str(taken["profile_url"]).startswith(routed.base_url + "/sales/")
    [delivery] = store.webhooks()
    assert (delivery.state, delivery.attempts, delivery.error) == ("delivered", 3, None)


def test_a_webhook_that_never_answers_is_failed_and_visible(settings: Settings, store: Store,
                                                           mailer: MemoryMailer) -> None:
    dead = f"http://127.0.0.1:{free_port()}/crm"  # nothing listens
    routed = settings.model_copy(update={"sales": settings.sales.model_copy(update={"webhook": dead})})
    engine = Engine(routed, store, mailer)
    make_lead(store, email="bob@example.com")
    store.record(NewEvent(1, EventKind.EXTERNAL, T0, Credit(0, "form:1"), action="contact_form", qualify=True),
                 settings.scoring)
    for hours in range(0, 48, 1):
        asyncio.run(engine.deliver_handoffs(T0 + timedelta(hours=hours)))
    [delivery] = store.webhooks(state="failed")
    assert delivery.attempts == 8 and delivery.error and "ConnectError" in delivery.error
    shown = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "handoffs", "webhooks", "--failed"],
                               env=environ(settings.database_url))
    assert shown.exit_code == 0, shown.output
    assert "failed" in shown.stdout and dead in shown.stdout and "ConnectError" in shown.stdout


@pytest.mark.parametrize("kind", ["contact_form", "callback_form", "order"])
def test_an_explicit_request_hands_the_lead_to_sales_at_once_by_default(engine: Engine, kind: str) -> None:
    make_lead(engine.store, email="ada@example.com")
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        answer = client.post("/api/events", headers={"X-API-Key": engine.settings.api_key},
                             json={"email": "ada@example.com", "kind": kind, "detail": "from the website"})
    assert answer.json()["stage"] == Stage.SQL.value and answer.json()["score"] == 0
    [handoff] = engine.store.handoffs_of(1)
    assert handoff.score == 0


@pytest.mark.parametrize("qualifies", [True, False])
def test_a_mails_call_back_hands_the_lead_over_at_once_when_so_configured(settings: Settings, store: Store,
                                                                          mailer: MemoryMailer,
                                                                          qualifies: bool) -> None:
    scoring = settings.scoring.model_copy(update={"callback_qualifies": qualifies})
    engine = Engine(settings.model_copy(update={"scoring": scoring}), store, mailer)
    make_lead(store, email="ada@example.com")
    asyncio.run(engine.send_due(T0))
    html = message_from_bytes(mailer.sent[0].data, policy=policy.default).get_body(("html",)).get_content()
    links = store.sends_of(1)[0].links
    callback = next(index for index, link in enumerate(links) if link["action"] == "callback")
    path = next(url for url in re.findall(r'href="([^"]+)"', html)
                if "/c/" in url and Signer(settings.secret_key).verify(url.rsplit("/", 1)[1], Purpose.CLICK).link
                == callback).removeprefix(settings.base_url)
    person = {"User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"}
    with TestClient(create_app(engine), base_url="http://testserver", headers=person) as client:
        assert client.get(path, follow_redirects=False).status_code == 302
    lead = store.lead(1)
    assert lead.score == settings.scoring.points.callback  # 8: below the threshold of 12
    assert lead.stage is (Stage.SQL if qualifies else Stage.MQL)
    assert len(store.handoffs_of(1)) == (1 if qualifies else 0)


def test_a_call_back_settled_later_qualifies_through_the_ledger_too(settings: Settings, store: Store) -> None:
    rules = settings.scoring.model_copy(update={"callback_qualifies": True})
    make_lead(store)
    store.record(NewEvent(1, EventKind.CLICK, T0, Credit(8, "callback:1"), action="callback"),
                 settings.scoring)  # judged under rules that do not qualify at once: a score of 8 stays an MQL
    assert store.lead(1).stage is Stage.MQL
    store.rescore(1, rules, T0)  # what the judge's settling does, under rules that do
    assert store.lead(1).stage is Stage.SQL and len(store.handoffs_of(1)) == 1
