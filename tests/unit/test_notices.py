"""Reading what comes back, over a corpus of bounces and complaints in the formats of several mail
servers (tests/fixtures/bounces): each names its send and its recipient, with whose fault it is, or is
unrecognized with a reason; none crashes the reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.errors import Fault
from nurture.inbound.notices import Notice, Reader, Unrecognized
from nurture.models import EventKind
from nurture.render.message import message_id
from nurture.track.tokens import Signer
from nurture.track.urls import ReturnPaths
from tests.conftest import SECRET

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "bounces"
SEND = 7
RECIPIENT = "ada@example.org"
RETURN_PATHS = ReturnPaths("bounces", "bounces.example.com", Signer(SECRET))
BOUNCE, COMPLAINT = EventKind.BOUNCE, EventKind.COMPLAINT

# file: (kind, fault, status, whether it quotes the original Message-ID, what its diagnostic says)
RECOGNIZED = {
    "postfix-user-unknown.eml": (BOUNCE, Fault.ADDRESS, "5.1.1", True, "User unknown in virtual mailbox table"),
    "gmail-does-not-exist.eml": (BOUNCE, Fault.ADDRESS, "5.1.1", True, "does not exist"),
    "gmail-mailbox-full.eml": (BOUNCE, Fault.TRANSIENT, "5.2.2", False, "over quota"),
    "exchange-recipient-not-found.eml": (BOUNCE, Fault.ADDRESS, "5.1.10", True, "RecipientNotFound"),
    "ses-policy-block.eml": (BOUNCE, Fault.SENDER, "5.7.1", True, "content policy"),
    "exim-classic.eml": (BOUNCE, Fault.ADDRESS, None, True, "could not be delivered"),
    "qmail-classic.eml": (BOUNCE, Fault.ADDRESS, None, False, "qmail-send"),
    "arf-abuse.eml": (COMPLAINT, Fault.ADDRESS, None, True, "abuse report from SomeGenerator/1.0"),
}
UNRECOGNIZED = {
    "postfix-delayed.eml": "no failed recipient (action: delayed)",
    "arf-not-spam.eml": "type 'not-spam', not a complaint",
    "out-of-office.eml": "no delivery report, complaint or known bounce format",
    "garbage.eml": "no delivery report, complaint or known bounce format",
}


def example(name: str, return_path: str) -> bytes:
    text = (CORPUS / name).read_bytes()
    for placeholder, value in ((b"{RETURN_PATH}", return_path), (b"{RECIPIENT}", RECIPIENT),
                               (b"{MESSAGE_ID}", message_id(SECRET, "send", SEND, "example.com"))):
        text = text.replace(placeholder, value.encode())
    return text


def test_the_corpus_is_all_here() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.eml")) == sorted([*RECOGNIZED, *UNRECOGNIZED])


@pytest.mark.parametrize("name", sorted(RECOGNIZED))
def test_a_notice_names_its_send_by_its_return_path(name: str) -> None:
    verp = RETURN_PATHS.address(SEND)
    notices = Reader([SECRET], RETURN_PATHS).read(example(name, verp), [verp.upper()])  # whatever the case
    kind, fault, status, _, words = RECOGNIZED[name]
    assert isinstance(notices, list) and len(notices) == 1, notices
    notice = notices[0]
    assert (notice.kind, notice.fault, notice.status, notice.send_id, notice.recipient) == (
        kind, fault, status, SEND, RECIPIENT)
    assert words in notice.diagnostic


@pytest.mark.parametrize("name", sorted(RECOGNIZED))
def test_without_a_return_path_a_notice_names_its_send_by_the_message_id_it_quotes(name: str) -> None:
    notices = Reader([SECRET]).read(example(name, "bounces@example.com"), ["bounces@example.com"])
    assert isinstance(notices, list) and len(notices) == 1, notices
    quotes = RECOGNIZED[name][3]
    assert notices[0].send_id == (SEND if quotes else None)
    assert notices[0].recipient == RECIPIENT  # what the caller looks the lead up by, when no send is named


def test_a_forged_return_path_or_message_id_names_no_send() -> None:
    forger = ReturnPaths("bounces", "bounces.example.com", Signer("another-key"))
    data = example("postfix-user-unknown.eml", forger.address(SEND)).replace(
        message_id(SECRET, "send", SEND, "example.com").encode(), message_id("another-key", "send", SEND,
                                                                             "example.com").encode())
    notices = Reader([SECRET], RETURN_PATHS).read(data, [forger.address(SEND)])
    assert isinstance(notices, list) and notices[0].send_id is None


def test_a_message_id_made_with_a_rotated_key_still_names_its_send() -> None:
    data = example("gmail-does-not-exist.eml", "bounces@example.com").replace(
        message_id(SECRET, "send", SEND, "example.com").encode(), message_id("old-key", "send", SEND,
                                                                             "example.com").encode())
    notices = Reader([SECRET, "old-key"]).read(data)
    assert isinstance(notices, list) and notices[0].send_id == SEND


@pytest.mark.parametrize("name", sorted(UNRECOGNIZED))
def test_what_is_no_bounce_or_complaint_is_unrecognized_with_a_reason(name: str) -> None:
    found = Reader([SECRET], RETURN_PATHS).read(example(name, RETURN_PATHS.address(SEND)))
    assert isinstance(found, Unrecognized)
    assert UNRECOGNIZED[name] in found.reason


@pytest.mark.parametrize("cut", [10, 200, 700, 1500])
def test_a_truncated_notice_never_crashes_the_reader(cut: int) -> None:
    for name in sorted(RECOGNIZED):
        found = Reader([SECRET], RETURN_PATHS).read(example(name, "x@example.com")[:cut])
        assert isinstance(found, (list, Unrecognized))
        assert all(isinstance(notice, Notice) for notice in (found if isinstance(found, list) else []))
