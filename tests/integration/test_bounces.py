"""Bounces and complaints that come back after delivery: sent with a return path of their own (VERP),
taken by the receiver over real SMTP, acted on in the database; and `nurture bounces` on the command line."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import main
from nurture.engine import Engine
from nurture.inbound.feedback import Feedback
from nurture.inbound.receiver import start_receiver
from nurture.models import EventKind, Stage, Suppression
from nurture.render.message import Envelope
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import ROOT, T0, environ, free_port, make_lead
from tests.unit.test_notices import CORPUS, RECOGNIZED, UNRECOGNIZED

DOMAIN = "bounces.example.com"


@pytest.fixture
def verp(settings: Settings) -> Settings:
    """Settings whose mail goes out with a return path of its own, and a receiver port of the test's."""
    bounces = settings.bounces.model_copy(update={"domain": DOMAIN, "port": free_port()})
    return settings.model_copy(update={"bounces": bounces})


@pytest.fixture
def receiver(verp: Settings, store: Store) -> Iterator[int]:
    controller = start_receiver(Feedback(verp, store))
    try:
        yield verp.bounces.port
    finally:
        controller.stop()


def sent(verp: Settings, store: Store, *emails: str) -> dict[str, Envelope]:
    """Confirmations to new leads, by address: what went out."""
    mailer = MemoryMailer()
    for email in emails:
        make_lead(store, email=email)
    asyncio.run(Engine(verp, store, mailer).send_due(T0))
    return {envelope.recipient: envelope for envelope in mailer.sent}


def notice(name: str, envelope: Envelope) -> bytes:
    text = (CORPUS / name).read_bytes()
    for placeholder, value in ((b"{RETURN_PATH}", envelope.sender), (b"{RECIPIENT}", envelope.recipient),
                               (b"{MESSAGE_ID}", envelope.message_id)):
        text = text.replace(placeholder, value.encode())
    return text


def deliver(port: int, to: str, data: bytes) -> None:
    """What a remote mail server does with a bounce: SMTP to the return path, from the null sender."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("", [to], data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))  # lines as on the wire


def test_each_mail_goes_out_with_a_return_path_of_its_own(verp: Settings, store: Store) -> None:
    envelopes = sent(verp, store, "ada@example.com", "bob@example.com")
    senders = {envelope.sender for envelope in envelopes.values()}
    assert len(senders) == 2 and all(sender.startswith("bounces+") and sender.endswith("@" + DOMAIN)
                                     for sender in senders)
    assert all(b"From: Acme Software <marketing@example.com>" in envelope.data for envelope in envelopes.values())


def test_a_hard_bounce_suppresses_the_lead_and_scores_it(verp: Settings, store: Store, receiver: int) -> None:
    envelope = sent(verp, store, "ada@example.com", "bob@example.com")["ada@example.com"]
    deliver(receiver, envelope.sender, notice("postfix-user-unknown.eml", envelope))
    ada, bob = store.lead_by_email("ada@example.com"), store.lead_by_email("bob@example.com")
    assert (ada.suppressed, ada.score) == (Suppression.BOUNCED, verp.scoring.points.bounce)
    assert (bob.suppressed, bob.score) == (None, 0)
    assert ada.id is not None
    [bounce] = [event for event in store.events_of(ada.id) if event.kind is EventKind.BOUNCE]
    send = store.sends_of(ada.id)[0]
    assert (bounce.send_id, bounce.action) == (send.id, "hard")
    assert bounce.detail and bounce.detail.startswith("5.1.1") and "User unknown" in bounce.detail
    [taken] = store.inbound()
    assert (taken.recognized, taken.lead_id, taken.send_id, taken.via) == (True, ada.id, send.id, "smtp")
    assert "lead 1 suppressed" in taken.outcome


def test_a_complaint_suppresses_the_lead_and_scores_the_complaint_rule(verp: Settings, store: Store,
                                                                        receiver: int) -> None:
    envelope = sent(verp, store, "ada@example.com")["ada@example.com"]
    deliver(receiver, envelope.sender, notice("arf-abuse.eml", envelope))
    lead = store.lead_by_email("ada@example.com")
    assert (lead.suppressed, lead.score) == (Suppression.COMPLAINED, verp.scoring.points.complaint)
    assert lead.id is not None
    [complaint] = [event for event in store.events_of(lead.id) if event.kind is EventKind.COMPLAINT]
    assert complaint.detail == "abuse report from SomeGenerator/1.0"


def test_soft_bounces_suppress_a_lead_only_when_they_repeat_within_the_window(verp: Settings, store: Store) -> None:
    envelope = sent(verp, store, "ada@example.com")["ada@example.com"]
    feedback = Feedback(verp, store)
    full = notice("gmail-mailbox-full.eml", envelope)
    limit, days = verp.scoring.soft_bounces, verp.scoring.soft_bounce_days
    feedback.take(full, "", [envelope.sender], "smtp", T0)
    feedback.take(full, "", [envelope.sender], "smtp", T0 + timedelta(days=days + 1))  # the first has aged out
    for n in range(limit - 2):
        feedback.take(full, "", [envelope.sender], "smtp", T0 + timedelta(days=days + 2 + n))
    assert store.lead_by_email("ada@example.com").suppressed is None
    taken = feedback.take(full, "", [envelope.sender], "smtp", T0 + timedelta(days=days + 3))
    lead = store.lead_by_email("ada@example.com")
    assert lead.suppressed is Suppression.BOUNCED and lead.score == verp.scoring.points.bounce
    assert f"soft bounce {limit} in {days:g} days, lead 1 suppressed" in taken.outcome
    assert lead.id is not None
    soft = [event for event in store.events_of(lead.id) if event.kind is EventKind.BOUNCE]
    bounce = verp.scoring.points.bounce
    assert [(event.action, event.points) for event in soft] == [("soft", 0)] * (limit + 1) + [("soft", bounce)]
    assert soft[-1].detail and soft[-1].detail.startswith(f"{limit} soft bounces in {days:g} days (the last: 5.2.2")


def test_a_block_by_the_receiving_server_is_noted_and_blames_nobody(verp: Settings, store: Store,
                                                                     receiver: int) -> None:
    envelope = sent(verp, store, "ada@example.com")["ada@example.com"]
    deliver(receiver, envelope.sender, notice("ses-policy-block.eml", envelope))
    lead = store.lead_by_email("ada@example.com")
    assert (lead.suppressed, lead.score, lead.stage) == (None, 0, Stage.MQL)
    assert lead.id is not None
    [blocked] = [event for event in store.events_of(lead.id) if event.kind is EventKind.BOUNCE]
    assert (blocked.action, blocked.points) == ("blocked", 0)
    assert "nobody was suppressed" in store.inbound()[0].outcome


@pytest.mark.parametrize("name", sorted([*RECOGNIZED, *UNRECOGNIZED]))
def test_every_message_of_the_corpus_names_its_send_or_is_kept_as_unrecognized(
        verp: Settings, store: Store, receiver: int, name: str) -> None:
    envelope = sent(verp, store, "ada@example.com")["ada@example.com"]
    deliver(receiver, envelope.sender, notice(name, envelope))
    [taken] = store.inbound()
    send = store.sends_of(1)[0]
    if name in RECOGNIZED:
        assert (taken.recognized, taken.send_id, taken.lead_id) == (True, send.id, 1), taken.outcome
    else:
        assert (taken.recognized, taken.send_id) == (False, None)
        assert taken.outcome.startswith("unrecognized: ") and UNRECOGNIZED[name] in taken.outcome
        assert store.lead(1).suppressed is None


def test_a_bounce_that_names_no_send_is_matched_by_its_recipient(verp: Settings, store: Store, receiver: int) -> None:
    envelope = sent(verp, store, "ada@example.com")["ada@example.com"]  # qmail quotes no Message-ID
    deliver(receiver, f"bounces@{DOMAIN}", notice("qmail-classic.eml", envelope))
    [taken] = store.inbound()
    assert (taken.recognized, taken.lead_id, taken.send_id) == (True, 1, None)
    assert store.lead(1).suppressed is Suppression.BOUNCED


def test_the_receiver_takes_mail_for_the_bounce_address_only(verp: Settings, store: Store, receiver: int) -> None:
    with smtplib.SMTP("127.0.0.1", receiver, timeout=10) as client:
        client.ehlo()
        client.mail("")
        code, reply = client.rcpt("someone@elsewhere.example")
        assert code == 550 and b"takes bounces for bounces@" + DOMAIN.encode() in reply
        assert client.rcpt(f"postmaster@{DOMAIN}")[0] == 550
        assert client.rcpt(f"Bounces+anything@{DOMAIN.upper()}")[0] == 250
    assert store.inbound() == []


def test_the_receiver_asks_for_a_retry_when_it_cannot_store(verp: Settings, store: Store,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("database is down")

    feedback = Feedback(verp, store)
    monkeypatch.setattr(feedback, "take", broken)
    controller = start_receiver(feedback)
    try:
        with smtplib.SMTP("127.0.0.1", verp.bounces.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("", [f"bounces@{DOMAIN}"], b"Subject: x\r\n\r\nhello\r\n")
    finally:
        controller.stop()
    assert refused.value.smtp_code == 451


def test_bounces_take_and_list_on_the_command_line(verp: Settings, store: Store, tmp_path: Path) -> None:
    envelope = sent(verp, store, "ada@example.com")["ada@example.com"]
    bounce, other = tmp_path / "bounce.eml", tmp_path / "other.eml"
    bounce.write_bytes(notice("exim-classic.eml", envelope))
    other.write_bytes(notice("out-of-office.eml", envelope))
    env = environ(verp.database_url)
    base = ["--config", str(ROOT / "nurture.yaml"), "bounces"]
    result = CliRunner().invoke(main, [*base, "take", str(bounce), str(other)], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{bounce}: bounce (flufl.bounce): hard bounce, lead 1 suppressed",
        f"{other}: unrecognized: no delivery report, complaint or known bounce format",
    ]
    listed = CliRunner().invoke(main, [*base, "list", "--unrecognized"], env=env)
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 1
    assert "unrecognized: no delivery report" in listed.stdout
    assert store.lead(1).suppressed is Suppression.BOUNCED
