"""MIME building: headers, both parts round-trip, deterministic Message-IDs, no header injection."""

import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone

import pytest

from nurture.errors import InputError
from nurture.render.message import build, domain_of, message_id

DATE = datetime(2026, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
MID = message_id("secret", "send", 7, "example.com")
UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://t.example/u/TOKEN>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def make(**overrides):
    arguments = dict(sender="Acme Software <marketing@example.com>", to="Ann Smith <ann@example.org>",
                     subject="Your weekly digest", html="<p>Hello <b>Ann</b></p>", text="Hello Ann\n",
                     message_id=MID, date=DATE, headers=UNSUBSCRIBE)
    arguments.update(overrides)
    return build(**arguments)


def parsed(envelope):
    return email.message_from_bytes(envelope.data, policy=email.policy.default)


def test_headers():
    envelope = make()
    message = parsed(envelope)
    assert message["From"] == "Acme Software <marketing@example.com>"
    assert message["From"].addresses[0].addr_spec == "marketing@example.com"
    assert message["To"].addresses[0].addr_spec == "ann@example.org"
    assert message["To"].addresses[0].display_name == "Ann Smith"
    assert message["Subject"] == "Your weekly digest"
    assert message["Message-ID"] == MID
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime == DATE.replace(microsecond=0)
    assert message.get_content_type() == "multipart/alternative"
    assert message.defects == []


def test_envelope_fields():
    envelope = make()
    assert envelope.sender == "marketing@example.com"
    assert envelope.recipient == "ann@example.org"
    assert envelope.message_id == MID
    assert envelope.data.isascii()


def test_list_unsubscribe_headers():
    message = parsed(make())
    assert message["List-Unsubscribe"] == "<https://t.example/u/TOKEN>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_no_extra_headers():
    message = parsed(make(headers=None))
    assert message["List-Unsubscribe"] is None
    assert message["Subject"] == "Your weekly digest"


def test_date_is_given_in_gmt():
    local = datetime(2026, 6, 1, 14, 30, 15, tzinfo=timezone(timedelta(hours=2)))
    message = parsed(make(date=local))
    assert message["Date"].datetime == datetime(2026, 6, 1, 12, 30, 15, tzinfo=UTC)
    assert b"GMT" in make(date=local).data


@pytest.mark.parametrize(
    "subject",
    ["Grüße – café", "日本語の件名", "Ünïcödé " * 40, "plain " * 160, "emoji 🎉 party", "tab\tinside"],
    ids=["latin", "cjk", "long-unicode", "long-ascii", "emoji", "tab"],
)
def test_subject_round_trips(subject):
    envelope = make(subject=subject)
    assert envelope.data.isascii()
    message = parsed(envelope)
    assert message["Subject"] == subject
    assert all(len(line) <= 998 for line in envelope.data.splitlines())


def test_short_unicode_subject_uses_crlf_only():
    data = make(subject="Grüße – café").data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "subject", ["Grüße aus dem schönen Café am Marktplatz – Ausgabe 12", "plain " * 160], ids=["unicode", "long-ascii"]
)
def test_folded_subject_uses_crlf_only(subject):
    data = make(subject=subject).data
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_non_ascii_display_names():
    message = parsed(make(sender="Acme Süd <m@example.com>", to="Jörg Müller <jorg@example.org>"))
    assert message["From"].addresses[0].display_name == "Acme Süd"
    assert message["To"].addresses[0].display_name == "Jörg Müller"
    assert message["To"].addresses[0].addr_spec == "jorg@example.org"


def test_display_name_with_special_characters_is_quoted():
    message = parsed(make(to='"Smith, Ann" <ann@example.org>'))
    [address] = message["To"].addresses
    assert address.display_name == "Smith, Ann"
    assert address.addr_spec == "ann@example.org"


def test_bare_address():
    message = parsed(make(to="ann@example.org"))
    assert message["To"].addresses[0].addr_spec == "ann@example.org"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hello <b>Ann</b></p>", "Hello Ann\n"),
        ("<p>Grüße – café ☕ 日本</p>", "Grüße – café ☕ 日本\nzweite Zeile\n"),
        ("<p>" + "long line " * 500 + "</p>", "word " * 1000),
        ("", ""),
    ],
    ids=["ascii", "unicode", "long", "empty"],
)
def test_parts_round_trip_exactly(html, text):
    message = parsed(make(html=html, text=text))
    assert message.get_body(("plain",)).get_content() == text
    assert message.get_body(("html",)).get_content() == html
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(part.get_content_charset() == "utf-8" for part in parts)


def test_body_lines_are_short():
    data = make(html="<p>" + "x" * 5000 + "</p>").data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_boundary_does_not_clash_with_content():
    envelope = make()
    boundary = parsed(envelope).get_boundary()
    assert boundary and boundary.startswith("=_nurture_")
    assert envelope.data.count(f"--{boundary}--".encode()) == 1


def test_build_is_deterministic():
    assert make().data == make().data
    assert make(boundary_seed="a").data != make(boundary_seed="b").data


# message ids


def test_message_id_is_deterministic():
    assert message_id("s", "send", 1, "example.com") == message_id("s", "send", 1, "example.com")


def test_message_id_shape():
    mid = message_id("TopSecret", "send", 42, "example.com")
    assert mid.startswith("<send.42.") and mid.endswith("@example.com>")
    digest = mid[len("<send.42."):-len("@example.com>")]
    assert len(digest) == 16
    assert set(digest) <= set("0123456789abcdef")
    assert "TopSecret" not in mid


@pytest.mark.parametrize(
    "other",
    [("s", "send", 2, "example.com"), ("s", "handoff", 1, "example.com"), ("t", "send", 1, "example.com")],
    ids=["number", "kind", "secret"],
)
def test_message_id_differs(other):
    mine, theirs = message_id("s", "send", 1, "example.com"), message_id(*other)
    assert mine != theirs
    assert digest_of(mine) != digest_of(theirs)  # not just the readable prefix


def digest_of(mid: str) -> str:
    return mid.split("@")[0].rsplit(".", 1)[1]


def test_message_id_digest_depends_on_the_secret():
    first = message_id("secret-1", "send", 1, "example.com")
    second = message_id("secret-2", "send", 1, "example.com")
    assert first.split(".")[2] != second.split(".")[2]


def test_message_id_parses_as_a_header():
    mid = message_id("s", "handoff", 3, domain_of("Acme <marketing@mail.example.com>"))
    assert parsed(make(message_id=mid))["Message-ID"] == mid
    assert mid.endswith("@mail.example.com>")


# domain_of


@pytest.mark.parametrize(
    ("address", "domain"),
    [("Acme <marketing@example.com>", "example.com"), ("a@b.example.org", "b.example.org"), ("", "localhost")],
)
def test_domain_of(address, domain):
    assert domain_of(address) == domain


def test_domain_of_an_address_without_domain_falls_back_to_localhost():
    assert domain_of("marketing") == "localhost"


# injection and bad addresses


@pytest.mark.parametrize("value", ["Hello\r\nBcc: victim@example.net", "Hello\nBcc: x@example.net", "Hello\r", "x\n"])
def test_subject_with_line_break_is_refused(value):
    with pytest.raises(InputError, match="line break"):
        make(subject=value)


@pytest.mark.parametrize("value", ["<https://t.example/u/T>\r\nBcc: victim@example.net", "a\nb"])
def test_header_value_with_line_break_is_refused(value):
    with pytest.raises(InputError, match="line break"):
        make(headers={"List-Unsubscribe": value})


def test_message_id_with_line_break_is_refused():
    with pytest.raises(InputError):
        make(message_id="<a@b>\r\nBcc: victim@example.net")


@pytest.mark.parametrize("field", ["to", "sender"])
@pytest.mark.parametrize(
    "value", ["ann@example.org\r\nBcc: victim@example.net", "Ann <ann@example.org>\nBcc: victim@example.net"]
)
def test_address_with_line_break_is_refused(field, value):
    with pytest.raises(InputError):
        make(**{field: value})


@pytest.mark.parametrize("value", ["", "not an address", "Ann Smith", "<>", "ann.example.org"])
def test_bad_to_address(value):
    with pytest.raises(InputError, match="not an email address"):
        make(to=value)


def test_bad_sender_address():
    with pytest.raises(InputError):
        make(sender="Marketing")


@pytest.mark.parametrize("to", ["jörg@example.org", "ann@exämple.org"], ids=["local-part", "domain"])
def test_non_ascii_address_is_refused_or_encoded(to):
    try:
        envelope = make(to=to)
    except InputError:
        return
    assert envelope.data.isascii()
