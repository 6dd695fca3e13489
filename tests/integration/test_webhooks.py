"""Bounces and complaints reported over HTTP by Amazon SES (through SNS) and Mailgun: acted on only when
the provider's signature verifies; a forged, replayed or stale report is refused and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from nurture.engine import Engine
from nurture.models import EventKind, Suppression
from nurture.render.message import Envelope
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import T0, make_lead

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-bounces"
CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
MAILGUN_KEY = "key-mailgun-signing"


def certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


KEY, PEM = certificate()


def sns(kind: str, fields: dict[str, str], version: str = "2", key: rsa.RSAPrivateKey = KEY) -> dict[str, str]:
    """An SNS message signed as SNS signs it."""
    message = {"Type": kind, "MessageId": "5f9c-0001", "TopicArn": TOPIC, "Timestamp": "2026-12-02T09:00:00.000Z",
               "SignatureVersion": version, "SigningCertURL": CERT_URL, **fields}
    order = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
             "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                                          "Type")}[kind]
    signed = "".join(f"{name}\n{message[name]}\n" for name in order if name in message).encode()
    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    message["Signature"] = base64.b64encode(key.sign(signed, padding.PKCS1v15(), algorithm)).decode()
    return message


def ses_report(kind: str, envelope: Envelope, **details: object) -> str:
    mail = {"source": envelope.sender, "destination": [envelope.recipient],
            "headers": [{"name": "Message-ID", "value": envelope.message_id}]}
    return json.dumps({"notificationType": kind, "mail": mail, **details})


@pytest.fixture
def verp(settings: Settings) -> Settings:
    bounces = settings.bounces.model_copy(update={"domain": "bounces.example.com", "ses_topics": [TOPIC]})
    return settings.model_copy(update={"bounces": bounces, "mailgun_signing_key": MAILGUN_KEY})


@pytest.fixture
def sent(verp: Settings, store: Store) -> dict[str, Envelope]:
    mailer = MemoryMailer()
    make_lead(store, email="ada@example.com")
    make_lead(store, email="bob@example.com")
    asyncio.run(Engine(verp, store, mailer).send_due(T0))
    return {envelope.recipient: envelope for envelope in mailer.sent}


@pytest.fixture
def client(verp: Settings, store: Store) -> Iterator[TestClient]:
    app = create_app(Engine(verp, store, MemoryMailer()))
    app.state.sns_certificate = lambda url: PEM if url == CERT_URL else b""
    app.state.confirmed = []

    async def confirm(url: str) -> None:
        app.state.confirmed.append(url)

    app.state.sns_confirm = confirm
    with TestClient(app, base_url="http://testserver") as client:
        yield client


@pytest.mark.parametrize("version", ["1", "2"])
def test_an_ses_bounce_suppresses_the_lead_it_names(client: TestClient, store: Store, sent: dict[str, Envelope],
                                                    version: str) -> None:
    bounce = {"bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [
        {"emailAddress": "ada@example.com", "status": "5.1.1", "action": "failed",
         "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}
    message = sns("Notification", {"Message": ses_report("Bounce", sent["ada@example.com"], bounce=bounce)}, version)
    answer = client.post("/webhooks/ses", content=json.dumps(message))
    assert answer.status_code == 200, answer.text
    ada = store.lead_by_email("ada@example.com")
    assert ada.suppressed is Suppression.BOUNCED and store.lead_by_email("bob@example.com").suppressed is None
    [taken] = store.inbound()
    assert (taken.via, taken.recognized, taken.send_id) == ("ses", True, store.sends_of(ada.id or 0)[0].id)
    [event] = [e for e in store.events_of(ada.id or 0) if e.kind is EventKind.BOUNCE]
    assert event.detail == "5.1.1 550 5.1.1 user unknown"


def test_an_ses_complaint_and_a_transient_bounce(client: TestClient, store: Store, sent: dict[str, Envelope]) -> None:
    complaint = {"complainedRecipients": [{"emailAddress": "ada@example.com"}], "complaintFeedbackType": "abuse"}
    transient = {"bounceType": "Transient", "bounceSubType": "MailboxFull", "bouncedRecipients": [
        {"emailAddress": "bob@example.com", "status": "5.2.2", "diagnosticCode": "smtp; 552 5.2.2 mailbox full"}]}
    for report in (ses_report("Complaint", sent["ada@example.com"], complaint=complaint),
                   ses_report("Bounce", sent["bob@example.com"], bounce=transient)):
        assert client.post("/webhooks/ses", content=json.dumps(sns("Notification", {"Message": report}))).status_code \
            == 200
    assert store.lead_by_email("ada@example.com").suppressed is Suppression.COMPLAINED
    bob = store.lead_by_email("bob@example.com")
    assert bob.suppressed is None
    assert [e.action for e in store.events_of(bob.id or 0) if e.kind is EventKind.BOUNCE] == ["soft"]


def test_the_subscription_is_confirmed_at_amazons_address_only(client: TestClient, store: Store) -> None:
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=abc"
    answer = client.post("/webhooks/ses", content=json.dumps(sns("SubscriptionConfirmation", {
        "Message": "You have chosen to subscribe", "SubscribeURL": url, "Token": "abc"})))
    assert answer.status_code == 200 and client.app.state.confirmed == [url]  # type: ignore[attr-defined]
    elsewhere = client.post("/webhooks/ses", content=json.dumps(sns("SubscriptionConfirmation", {
        "Message": "x", "SubscribeURL": "https://evil.example/confirm", "Token": "abc"})))
    assert elsewhere.status_code == 403 and client.app.state.confirmed == [url]  # type: ignore[attr-defined]


@pytest.mark.parametrize("tamper", ["signature", "message", "topic", "certificate", "key"])
def test_a_forged_ses_report_is_refused_and_changes_nothing(client: TestClient, store: Store,
                                                            sent: dict[str, Envelope], tamper: str) -> None:
    bounce = {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "ada@example.com",
                                                               "status": "5.1.1"}]}
    message = sns("Notification", {"Message": ses_report("Bounce", sent["ada@example.com"], bounce=bounce)},
                  key=certificate()[0] if tamper == "key" else KEY)
    if tamper == "signature":
        message["Signature"] = base64.b64encode(b"\0" * 256).decode()
    elif tamper == "message":
        message["Message"] = message["Message"].replace("ada@", "bob@")
    elif tamper == "topic":
        message["TopicArn"] = "arn:aws:sns:eu-west-1:999999999999:someone-elses"
    elif tamper == "certificate":
        message["SigningCertURL"] = "https://evil.example/cert.pem"
    answer = client.post("/webhooks/ses", content=json.dumps(message))
    assert answer.status_code == 403, answer.text
    assert store.lead_by_email("ada@example.com").suppressed is None and store.inbound() == []


def mailgun(event: dict[str, object], key: str = MAILGUN_KEY, at: float | None = None,
            token: str = "a1b2c3d4e5f60718293a4b5c6d7e8f9012") -> dict[str, object]:
    timestamp = str(int(time.time() if at is None else at))
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event}


def failed(envelope: Envelope, severity: str, code: int, message: str) -> dict[str, object]:
    return {"event": "failed", "severity": severity, "recipient": envelope.recipient,
            "delivery-status": {"code": code, "message": message},
            "message": {"headers": {"message-id": envelope.message_id.strip("<>")}}}


def test_a_mailgun_failure_suppresses_the_lead_and_a_temporary_one_is_soft(client: TestClient, store: Store,
                                                                           sent: dict[str, Envelope]) -> None:
    hard = mailgun(failed(sent["ada@example.com"], "permanent", 550, "5.1.1 The email account does not exist"))
    soft = mailgun(failed(sent["bob@example.com"], "temporary", 452, "4.2.2 The email account is over quota"),
                   token="another-token-0000000000000000000")
    assert client.post("/webhooks/mailgun", json=hard).status_code == 200
    assert client.post("/webhooks/mailgun", json=soft).status_code == 200
    ada, bob = store.lead_by_email("ada@example.com"), store.lead_by_email("bob@example.com")
    assert ada.suppressed is Suppression.BOUNCED and bob.suppressed is None
    assert {taken.via for taken in store.inbound()} == {"mailgun"}
    assert [taken.send_id for taken in store.inbound()] == [store.sends_of(bob.id or 0)[0].id,
                                                           store.sends_of(ada.id or 0)[0].id]


@pytest.mark.parametrize("problem", ["wrong key", "stale", "replayed"])
def test_a_forged_stale_or_replayed_mailgun_report_is_refused(client: TestClient, store: Store,
                                                              sent: dict[str, Envelope], problem: str) -> None:
    event = {"event": "complained", "recipient": "ada@example.com"}
    report = mailgun(event, key="not-the-key" if problem == "wrong key" else MAILGUN_KEY,
                     at=time.time() - 3600 if problem == "stale" else None)
    if problem == "replayed":
        assert client.post("/webhooks/mailgun", json=report).status_code == 200
        settings = client.app.state.engine.settings  # type: ignore[attr-defined]
        store.lift_suppression(1, "test", settings.scoring, datetime.now(UTC), settings.program)
    answer = client.post("/webhooks/mailgun", json=report)
    assert answer.status_code == 403, answer.text
    assert store.lead_by_email("ada@example.com").suppressed is None
