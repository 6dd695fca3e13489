"""STARTTLS and AUTH against a real aiosmtpd server that requires both."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from nurture.engine import Engine
from nurture.models import SendState
from nurture.send.mailer import SmtpMailer
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import T0, free_port, make_lead


class Keeper:
    def __init__(self) -> None:
        self.received: list[tuple[list[str], bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), session.ssl is not None))
        return "250 OK"


def check_password(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"nurture", b"s3cret")
    return AuthResult(success=good, handled=False)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[int, Keeper]]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    keeper, port = Keeper(), free_port()
    controller = Controller(keeper, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            auth_required=True, auth_require_tls=True, authenticator=check_password)
    controller.start()
    yield port, keeper
    controller.stop()


def engine_for(settings: Settings, store: Store, port: int, password: str) -> Engine:
    mailer = SmtpMailer("127.0.0.1", port, starttls=True, username="nurture", password=password,
                        verify_certificates=False, timeout=5)
    quick = settings.delivery.model_copy(update={"retries": 0})
    return Engine(settings.model_copy(update={"delivery": quick}), store, mailer)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mail_goes_over_starttls_with_auth(settings: Settings, store: Store, relay: tuple[int, Keeper]) -> None:
    port, keeper = relay
    make_lead(store)
    report = asyncio.run(engine_for(settings, store, port, "s3cret").send_due(T0))
    assert len(report.sent) == 1
    assert keeper.received == [(["ada@example.com"], True)]  # over TLS


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refused_credentials_pause_the_run_and_never_bounce_the_lead(settings: Settings, store: Store,
                                                                      relay: tuple[int, Keeper]) -> None:
    port, keeper = relay
    make_lead(store)
    report = asyncio.run(engine_for(settings, store, port, "wrong").send_due(T0))
    assert report.sent == report.deferred == report.bounced == []
    assert report.refused is not None and report.refused.startswith("AUTH refused: 535")
    assert store.sends_of(1)[0].state is SendState.QUEUED
    assert store.lead(1).suppressed is None
    assert keeper.received == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_unverified_self_signed_certificate_is_refused_by_default(settings: Settings, store: Store,
                                                                     relay: tuple[int, Keeper]) -> None:
    port, keeper = relay
    make_lead(store)
    mailer = SmtpMailer("127.0.0.1", port, starttls=True, username="nurture", password="s3cret", timeout=5)
    quick = settings.delivery.model_copy(update={"retries": 0})
    report = asyncio.run(Engine(settings.model_copy(update={"delivery": quick}), store, mailer).send_due(T0))
    assert report.sent == [] and len(report.deferred) == 1
    assert keeper.received == []
