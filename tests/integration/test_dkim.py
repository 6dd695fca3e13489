"""DKIM: with a selector and a key configured every mail is signed, and the signature verifies against the
public key a DNS record would publish; a half configuration is refused with what is missing."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nurture.engine import Engine
from nurture.errors import ConfigError
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings, load_settings
from nurture.store import Store
from tests.conftest import ROOT, T0, environ, make_lead

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
PUBLIC = base64.b64encode(KEY.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def dns(name: bytes, timeout: int = 5) -> bytes | None:
    """The TXT record a domain would publish at nurture._domainkey.example.com."""
    return b"v=DKIM1; k=rsa; p=" + PUBLIC if name == b"nurture._domainkey.example.com." else None


def test_every_mail_is_signed_and_the_signature_verifies(settings: Settings, store: Store) -> None:
    signing = settings.model_copy(update={"mail": settings.mail.model_copy(update={"dkim_selector": "nurture"}),
                                          "dkim_key": PEM})
    mailer = MemoryMailer()
    make_lead(store)
    asyncio.run(Engine(signing, store, mailer).send_due(T0))
    [envelope] = mailer.sent
    assert envelope.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
    assert b"d=example.com" in envelope.data.split(b"\r\n\r\n")[0] and b"s=nurture" in envelope.data
    assert dkim.verify(envelope.data, dnsfunc=dns)
    assert not dkim.verify(envelope.data.replace(b"Subject: ", b"Subject: Re: "), dnsfunc=dns)  # tampered


def test_an_unsigned_mail_without_a_selector(settings: Settings, store: Store) -> None:
    mailer = MemoryMailer()
    make_lead(store)
    asyncio.run(Engine(settings, store, mailer).send_due(T0))
    assert b"DKIM-Signature" not in mailer.sent[0].data


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_key_comes_from_the_environment_or_a_file_and_a_half_setup_is_refused(database_url: str,
                                                                                  tmp_path: Path) -> None:
    escaped = PEM.decode().replace("\n", "\\n")  # a variable on one line, as most platforms keep them
    with pytest.raises(ConfigError, match="a DKIM key is set but mail.dkim_selector is not"):
        load_settings(environ(database_url, NURTURE_DKIM_PRIVATE_KEY=escaped), ROOT / "nurture.yaml")
    selected = tmp_path / "selected.yaml"
    text = (ROOT / "nurture.yaml").read_text(encoding="utf-8")
    selected.write_text(text.replace("mail:\n", "mail:\n  dkim_selector: nurture\n", 1), encoding="utf-8")
    assert "dkim_selector: nurture" in selected.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="no PEM private key"):
        load_settings(environ(database_url), selected)
    assert load_settings(environ(database_url, NURTURE_DKIM_PRIVATE_KEY=escaped), selected).dkim_key == PEM
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(PEM)
    assert load_settings(environ(database_url, NURTURE_DKIM_KEY_FILE=str(key_file)), selected).dkim_key == PEM
