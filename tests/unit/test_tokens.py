"""Signed tracking tokens: round trips, and every way a token can be forged, damaged or misused."""

import base64
import itertools
import string

import pytest

from nurture.errors import TokenError
from nurture.track.tokens import Claim, Purpose, Signer

SECRET = "test-secret-key"
ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def signer() -> Signer:
    return Signer(SECRET)


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def flip(token: str, index: int) -> str:
    """Replace one character by another whose top bit differs, so the decoded bytes always change."""
    value = ALPHABET.index(token[index]) ^ 0b100000
    return token[:index] + ALPHABET[value] + token[index + 1 :]


def token_with(chars: str, purpose: Purpose = Purpose.CLICK) -> tuple[str, int]:
    """A genuine token that contains one of `chars` (searching subjects deterministically)."""
    for subject in range(1, 10_000):
        token = signer().sign(purpose, subject, 3)
        if any(char in token for char in chars):
            return token, subject
    raise AssertionError(f"no token with any of {chars!r}")


@pytest.mark.parametrize("purpose", list(Purpose))
def test_round_trip_for_every_purpose(purpose):
    token = signer().sign(purpose, 4711, 9)
    assert signer().verify(token, purpose) == Claim(purpose, 4711, 9)


def test_round_trip_default_link_and_large_numbers():
    s = signer()
    assert s.verify(s.sign(Purpose.OPEN, 1), Purpose.OPEN) == Claim(Purpose.OPEN, 1, 0)
    big = 2**63 + 5
    assert s.verify(s.sign(Purpose.CLICK, big, 65535), Purpose.CLICK) == Claim(Purpose.CLICK, big, 65535)


def test_token_is_url_safe_and_stable():
    s = signer()
    token = s.sign(Purpose.UNSUBSCRIBE, 12)
    assert token == s.sign(Purpose.UNSUBSCRIBE, 12)
    assert set(token) <= set(ALPHABET)
    assert "=" not in token


def test_a_token_carries_no_email_address_and_differs_per_subject():
    s = signer()
    first, second = s.sign(Purpose.PREFERENCES, 1), s.sign(Purpose.PREFERENCES, 2)
    assert first != second
    for token in (first, second):
        assert "@" not in token
        assert b"@" not in raw(token)
        assert b"example" not in raw(token)
    assert s.sign(Purpose.CLICK, 1, 0) != s.sign(Purpose.CLICK, 1, 1)


def test_empty_secret_is_refused():
    with pytest.raises(ValueError):
        Signer("")


@pytest.mark.parametrize("index", range(31))
def test_flipping_any_character_is_rejected(index):
    token = signer().sign(Purpose.CLICK, 77, 2)
    assert len(token) == 31
    forged = flip(token, index)
    assert forged != token
    with pytest.raises(TokenError):
        signer().verify(forged, Purpose.CLICK)


def test_every_single_character_substitution_is_rejected():
    s = signer()
    token = s.sign(Purpose.CLICK, 77, 2)
    accepted = [
        (index, char)
        for index in range(len(token))
        for char in ALPHABET + "+/"
        if char != token[index] and _verifies(s, token[:index] + char + token[index + 1 :])
    ]
    assert accepted == []


def _verifies(s: Signer, token: str) -> bool:
    try:
        s.verify(token, Purpose.CLICK)
    except TokenError:
        return False
    return True


def test_flipping_a_signature_byte_is_rejected():
    token = signer().sign(Purpose.OPEN, 5)
    data = bytearray(raw(token))
    data[-1] ^= 0x01
    with pytest.raises(TokenError, match="signature"):
        signer().verify(encode(bytes(data)), Purpose.OPEN)


@pytest.mark.parametrize("cut", [1, 2, 4, 16, 30])
def test_truncated_token_is_rejected(cut):
    token = signer().sign(Purpose.OPEN, 5)
    with pytest.raises(TokenError):
        signer().verify(token[:-cut], Purpose.OPEN)


def test_token_with_extra_characters_is_rejected():
    token = signer().sign(Purpose.OPEN, 5)
    with pytest.raises(TokenError, match="length"):
        signer().verify(token + "AAAA", Purpose.OPEN)


@pytest.mark.parametrize(
    "bad",
    ["", "A" * 65, "A" * 200, "é" * 31, "токен", "ab\x00cd", " " * 31],
    ids=["empty", "65", "200", "latin", "cyrillic", "nul", "spaces"],
)
def test_malformed_tokens_are_rejected(bad):
    with pytest.raises(TokenError):
        signer().verify(bad, Purpose.OPEN)


@pytest.mark.parametrize("char", ["!", "+", "/", "=", ".", "%", " "])
@pytest.mark.parametrize("index", [0, 10, 30])
def test_non_base64url_characters_are_rejected(char, index):
    token = signer().sign(Purpose.OPEN, 5)
    assert token[index] not in "-_"  # the spelling aliases are covered below
    with pytest.raises(TokenError):
        signer().verify(token[:index] + char + token[index + 1 :], Purpose.OPEN)


def test_token_of_another_secret_is_rejected():
    other = Signer("another-secret").sign(Purpose.OPEN, 5)
    with pytest.raises(TokenError):
        signer().verify(other, Purpose.OPEN)


@pytest.mark.parametrize(("made_as", "used_as"), list(itertools.permutations(Purpose, 2)))
def test_token_of_one_purpose_is_no_token_of_another(made_as, used_as):
    token = signer().sign(made_as, 5)
    with pytest.raises(TokenError):
        signer().verify(token, used_as)


def test_open_token_is_no_unsubscribe_token_even_with_the_purpose_byte_changed():
    token = signer().sign(Purpose.OPEN, 5)
    data = bytearray(raw(token))
    assert data[0:1] == Purpose.OPEN.value
    data[0:1] = Purpose.UNSUBSCRIBE.value
    with pytest.raises(TokenError):
        signer().verify(encode(bytes(data)), Purpose.UNSUBSCRIBE)


@pytest.mark.parametrize("purpose", [Purpose.OPEN, Purpose.CLICK, Purpose.UNSUBSCRIBE, Purpose.PREFERENCES])
def test_token_replayed_across_leads_is_rejected(purpose):
    token = signer().sign(purpose, 1, 0)
    data = bytearray(raw(token))
    assert data[1:9] == (1).to_bytes(8, "big")
    data[1:9] = (2).to_bytes(8, "big")
    replayed = encode(bytes(data))
    assert replayed != token
    with pytest.raises(TokenError):
        signer().verify(replayed, purpose)
    assert signer().verify(token, purpose).subject == 1


def test_click_token_replayed_for_another_link_is_rejected():
    token = signer().sign(Purpose.CLICK, 1, 0)
    data = bytearray(raw(token))
    data[9:11] = (1).to_bytes(2, "big")
    with pytest.raises(TokenError):
        signer().verify(encode(bytes(data)), Purpose.CLICK)


def test_dash_and_underscore_tokens_still_verify():
    token, subject = token_with("-_")
    assert signer().verify(token, Purpose.CLICK) == Claim(Purpose.CLICK, subject, 3)


def _plus_slash_alias(token: str) -> str:
    return token.replace("-", "+").replace("_", "/")


def _padded(token: str) -> str:
    return token + "="


def _nonzero_trailing_bits(token: str) -> str:
    # 23 bytes need 31 characters; the last one carries 4 data bits and 2 unused bits that must be 0
    value = ALPHABET.index(token[-1])
    assert value & 0b11 == 0
    return token[:-1] + ALPHABET[value | 0b0001]


@pytest.mark.parametrize("make", [_plus_slash_alias, _padded, _nonzero_trailing_bits])
def test_non_canonical_spellings_of_a_genuine_token_are_rejected(make):
    token, _ = token_with("-_")
    altered = make(token)
    assert altered != token
    with pytest.raises(TokenError):
        signer().verify(altered, Purpose.CLICK)


def test_after_a_rotation_the_new_key_signs_and_the_old_one_still_verifies() -> None:
    old, new = Signer("old-key"), Signer("new-key", ["old-key"])
    mailed = old.sign(Purpose.CLICK, 42, 3)
    assert new.verify(mailed, Purpose.CLICK) == Claim(Purpose.CLICK, 42, 3)
    fresh = new.sign(Purpose.CLICK, 42, 3)
    assert fresh != mailed and Signer("new-key").verify(fresh, Purpose.CLICK).subject == 42
    with pytest.raises(TokenError):
        Signer("new-key").verify(mailed, Purpose.CLICK)  # the old key retired: its links die
    with pytest.raises(TokenError):
        new.verify(Signer("someone-else").sign(Purpose.CLICK, 42, 3), Purpose.CLICK)
