"""Signed, opaque tracking tokens: what a URL in an email may say about itself.

A token packs a purpose (open, click, unsubscribe, preferences, profile) and one or two numbers (a send
and a link, a lead, or a hand-off), followed by a truncated HMAC-SHA256 over both. It carries no email
address or other personal data. Verification is constant-time and binds the purpose: an open token is
no unsubscribe token, and changing any number invalidates the signature.

Keys rotate: the newest key signs, and the keys before it still verify, so the links of mail sent
before a rotation keep working while a leaked key can be retired.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from nurture.errors import TokenError

SIGNATURE_BYTES = 12
_LAYOUT = struct.Struct(">cQH")  # purpose, subject id, link index


class Purpose(bytes, Enum):
    OPEN = b"o"
    CLICK = b"c"
    UNSUBSCRIBE = b"u"  # a lead's: in a mail that records no send (the reconfirmation), and in mail of older releases
    UNSUBSCRIBE_MAIL = b"v"  # the unsubscribe link of one mail: the subject is the send, so reports know which
    PREFERENCES = b"p"
    PROFILE = b"h"
    CONFIRM = b"y"  # a lead confirms its address (double opt-in)
    BOUNCE = b"b"  # the return path of one send (VERP): a bounce names the send it comes back for


@dataclass(frozen=True)
class Claim:
    purpose: Purpose
    subject: int  # a send id (open, click, a mail's unsubscribe), a lead id (unsubscribe, preferences), a hand-off id
    link: int = 0


class Signer:
    """Signs tokens with the newest secret key (`secret`) and verifies them with it or any of `older`."""

    def __init__(self, secret: str, older: Sequence[str] = ()):
        if not secret:
            raise ValueError("a token key is required")
        self._key = _derive(secret)
        self._keys = [self._key, *(_derive(key) for key in older if key and key != secret)]

    def sign(self, purpose: Purpose, subject: int, link: int = 0) -> str:
        payload = _LAYOUT.pack(purpose.value, subject, link)
        return _encode(payload + _mac(self._key, payload))

    def verify(self, token: str, purpose: Purpose) -> Claim:
        """Return the claim of a genuine token of this purpose; raise TokenError otherwise."""
        return self._claim(_decode(token), purpose)

    def sign_for_address(self, purpose: Purpose, subject: int) -> str:
        """A token to stand in an email address's local part: lower-case base32, as mail servers may
        change the case of an address."""
        payload = _LAYOUT.pack(purpose.value, subject, 0)
        return base64.b32encode(payload + _mac(self._key, payload)).rstrip(b"=").decode("ascii").lower()

    def verify_from_address(self, token: str, purpose: Purpose) -> Claim:
        """`verify` for a token made by sign_for_address, in any case."""
        if not token or len(token) > 64 or not token.isascii():
            raise TokenError("token is malformed")
        try:
            raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
        except (binascii.Error, ValueError):
            raise TokenError("token is malformed") from None
        return self._claim(raw, purpose)

    def _claim(self, raw: bytes, purpose: Purpose) -> Claim:
        if len(raw) != _LAYOUT.size + SIGNATURE_BYTES:
            raise TokenError("token has the wrong length")
        payload, signature = raw[: _LAYOUT.size], raw[_LAYOUT.size :]
        if not any(hmac.compare_digest(signature, _mac(key, payload)) for key in self._keys):
            raise TokenError("token signature does not match")
        kind, subject, link = _LAYOUT.unpack(payload)
        if kind != purpose.value:
            raise TokenError("token is for another purpose")
        return Claim(purpose, subject, link)



def _derive(secret: str) -> bytes:
    return hashlib.sha256(b"nurture-tokens:" + secret.encode()).digest()


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, payload, "sha256")[:SIGNATURE_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes:
    if not token or len(token) > 64 or not token.isascii():
        raise TokenError("token is malformed")
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise TokenError("token is malformed") from None
    if _encode(raw) != token:  # one token, one spelling: no padding, aliases or stray trailing bits
        raise TokenError("token is malformed")
    return raw
