"""`nurture send-test`: one real message over SMTP to a real aiosmtpd sink; nothing recorded for the lead."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from click.testing import CliRunner, Result

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import Lead
from nurture.preview import preview
from nurture.send.sink import start_sink
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import ROOT, SECRET, T0, free_port, make_lead

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def port(store: Store) -> Iterator[int]:
    """A real SMTP sink on a free port; what it receives lands in the store's sink table."""
    number = free_port()
    controller = start_sink(store, "127.0.0.1", number)
    yield number
    controller.stop()


@pytest.fixture
def lead(engine: Engine) -> Lead:
    asyncio.run(engine.refresh_feeds(T0))
    return make_lead(engine.store, interests=["security"], industry="")


def send_test(settings: Settings, port: int, *args: str) -> Result:
    env = {"NURTURE_DATABASE_URL": settings.database_url, "NURTURE_SECRET_KEY": SECRET,
           "NURTURE_SMTP_HOST": "127.0.0.1", "NURTURE_SMTP_PORT": str(port), "NURTURE_SMTP_SINK": "false"}
    return CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "send-test", *args], env=env)


def received(store: Store) -> list[EmailMessage]:
    messages = []
    for sunk in store.sink_messages(10):
        parsed = message_from_bytes(sunk.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


def recorded(store: Store, lead: Lead) -> tuple[object, ...]:
    """Everything the program and the score know of a lead."""
    assert lead.id is not None
    fresh = store.lead(lead.id)
    return (len(store.sends_of(lead.id)), len(store.events_of(lead.id)), fresh.score, fresh.stage, fresh.cycle,
            fresh.skipped_at)


def test_send_test_mails_the_preview_and_records_nothing(settings: Settings, store: Store, port: int,
                                                         lead: Lead) -> None:
    before = recorded(store, lead)
    result = send_test(settings, port, "digest", "--to", "marketer@example.com", "--lead", lead.email)
    assert result.exit_code == 0, result.output
    [message] = received(store)
    shown = preview(settings, store, "digest", lead.email)
    assert result.stdout == f"sent digest for {lead.email} to marketer@example.com: {shown.rendered.subject}\n"
    assert message["To"] == "marketer@example.com" and message["Subject"] == shown.rendered.subject
    assert message["X-Nurture-Test"] == f"preview for lead {lead.id}"
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    assert html.get_content() == shown.rendered.html
    assert text.get_content() == shown.rendered.text
    assert recorded(store, lead) == before
    assert store.sends_of(lead.id or 0) == [] and store.events_of(lead.id or 0) == []


def test_send_test_of_the_confirmation_in_the_lead_s_locale(settings: Settings, store: Store, port: int) -> None:
    dutch = make_lead(store, "joost@example.nl", first_name="Joost", locale="nl")
    assert send_test(settings, port, "confirmation", "--to", "me@example.com", "--lead", dutch.email).exit_code == 0
    [message] = received(store)
    assert message["Subject"] == "Welkom bij Acme Software, Joost"


@pytest.mark.parametrize(("args", "says"), [
    (["digest", "--to", "not an address", "--lead", "ada@example.com"], "not an email address"),
    (["digest", "--to", "me@example.com", "--lead", "nobody@example.com"], "nobody@example.com"),
    (["newsletter", "--to", "me@example.com", "--lead", "ada@example.com"], "template 'newsletter' not found"),
])
def test_send_test_names_what_is_wrong_and_sends_nothing(settings: Settings, store: Store, port: int, lead: Lead,
                                                         args: list[str], says: str) -> None:
    result = send_test(settings, port, *args)
    assert result.exit_code == 2
    assert says in result.stderr
    assert received(store) == []


def test_send_test_says_when_no_smtp_server_listens(settings: Settings, store: Store, lead: Lead) -> None:
    result = send_test(settings, free_port(), "digest", "--to", "me@example.com", "--lead", lead.email)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert recorded(store, lead)[:2] == (0, 0)
