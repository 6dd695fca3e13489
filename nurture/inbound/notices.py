"""Reading what comes back: a delivery status notification (RFC 3464), a complaint from a feedback loop
(ARF, RFC 5965), or a bounce in one of the formats that mail servers wrote before DSNs, which
flufl.bounce (Mailman's detectors) reads. Nothing here touches the database.

A notice names its send by the address it came back to (the send's own return path, VERP), else by the
Message-ID of the original message it quotes (each one carries a digest only nurture can make), else
only by the recipient's address, which the caller looks up.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import BytesHeaderParser

from flufl.bounce import all_failures

from nurture.errors import Fault
from nurture.models import EventKind
from nurture.render.message import sends_named_in
from nurture.send import answers
from nurture.track.urls import ReturnPaths

DIAGNOSTIC_CHARS = 300
COMPLAINTS = {"abuse", "fraud", "virus"}  # ARF feedback types that are a person's (or a provider's) complaint
SMTP_CODE = re.compile(r"\b([245]\d\d)\b")
logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)  # a detector's failure is told in the Unrecognized


@dataclass(frozen=True)
class Notice:
    """One recipient's bounce, or one complaint."""

    kind: EventKind  # BOUNCE or COMPLAINT
    fault: Fault  # of a bounce: ADDRESS (hard), TRANSIENT (soft), SENDER (the receiving server blocked us)
    recipient: str | None
    send_id: int | None
    status: str | None  # the enhanced status code, such as 5.1.1
    diagnostic: str  # the receiving server's words, or the report's
    format: str  # DSN, ARF, or the flufl.bounce detector's find

    @property
    def detail(self) -> str:
        """What the lead's history shows of it."""
        return " ".join(part for part in (self.status, self.diagnostic) if part)[:DIAGNOSTIC_CHARS]


@dataclass(frozen=True)
class Unrecognized:
    reason: str


class Reader:
    """Reads the mail that came back to nurture's return paths; `secrets` are the signing keys, newest
    first (they name the Message-IDs)."""

    def __init__(self, secrets: Sequence[str], return_paths: ReturnPaths | None = None):
        self.secrets = list(secrets)
        self.return_paths = return_paths

    def read(self, data: bytes, envelope_recipients: Sequence[str] = ()) -> list[Notice] | Unrecognized:
        """The notices in one message taken by the receiver or the mailbox poller; never raises."""
        try:
            message = message_from_bytes(data, policy=policy.compat32)
        except Exception as error:  # noqa: BLE001 - a message the parser chokes on is unrecognized, not a crash
            return Unrecognized(f"not a readable message: {type(error).__name__}: {error}")
        send_id = self.send_named(data, envelope_recipients)
        report_type = (message.get_param("report-type") or "") if message.get_content_type() == "multipart/report" \
            else ""
        try:
            if str(report_type).lower() == "feedback-report":
                return _complaint(message, send_id)
            if str(report_type).lower() == "delivery-status" and _part(message, "message/delivery-status"):
                return _dsn(message, send_id)
            return _by_detectors(message, send_id)
        except Exception as error:  # noqa: BLE001 - malformed in a way no reader foresaw
            return Unrecognized(f"could not be read: {type(error).__name__}: {error}")

    def send_named(self, data: bytes, envelope_recipients: Sequence[str]) -> int | None:
        """The send named by one of these return paths, else by the one Message-ID of ours `data` quotes."""
        if self.return_paths is not None:
            for address in envelope_recipients:
                send_id = self.return_paths.send_of(address)
                if send_id is not None:
                    return send_id
        named = sends_named_in(data, self.secrets)
        return named[0] if len(named) == 1 else None  # a digest quoting several mails names none for sure


def _part(message: Message, content_type: str) -> Message | None:
    return next((part for part in message.walk() if part.get_content_type() == content_type), None)


def _dsn(message: Message, send_id: int | None) -> list[Notice] | Unrecognized:
    status_part = _part(message, "message/delivery-status")
    assert status_part is not None
    blocks = _blocks(status_part)
    notices = []
    for block in blocks[1:]:  # the first block is about the message, each further one about a recipient
        action = str(block.get("Action", "")).strip().lower()
        if action != "failed":
            continue
        status = str(block.get("Status", "")).strip() or None
        diagnostic = _unfold(str(block.get("Diagnostic-Code", ""))).partition(";")[2].strip()
        code = SMTP_CODE.search(diagnostic)
        basic = int(code.group(1)) if code else (500 if (status or "5").startswith("5") else 400)
        fault = answers.fault("rcpt", basic, f"{status or ''} {diagnostic}".strip())
        recipient = _address(block.get("Final-Recipient") or block.get("Original-Recipient"))
        notices.append(Notice(EventKind.BOUNCE, fault, recipient, send_id, status, diagnostic[:DIAGNOSTIC_CHARS],
                              "DSN"))
    if not notices:
        actions = sorted({str(block.get("Action", "")).strip().lower() or "none" for block in blocks[1:]})
        return Unrecognized(f"a delivery report with no failed recipient (action: {', '.join(actions) or 'none'})")
    return notices


def _complaint(message: Message, send_id: int | None) -> list[Notice] | Unrecognized:
    part = _part(message, "message/feedback-report")
    if part is None:
        return Unrecognized("a feedback report without its message/feedback-report part")
    fields = _blocks(part)[0]
    feedback = str(fields.get("Feedback-Type", "")).strip().lower()
    if feedback not in COMPLAINTS:
        return Unrecognized(f"a feedback report of type {feedback or 'none'!r}, not a complaint")
    recipient = _address(fields.get("Original-Rcpt-To"))
    agent = str(fields.get("User-Agent", "")).strip()
    diagnostic = f"{feedback} report" + (f" from {agent}" if agent else "")
    return [Notice(EventKind.COMPLAINT, Fault.ADDRESS, recipient, send_id, None, diagnostic, "ARF")]


def _by_detectors(message: Message, send_id: int | None) -> list[Notice] | Unrecognized:
    try:
        temporary, permanent = all_failures(message)
    except Exception as error:  # noqa: BLE001 - a detector that trips over a malformed message
        return Unrecognized(f"no delivery report, complaint or known bounce format (a detector failed: "
                            f"{type(error).__name__})")
    notices = [Notice(EventKind.BOUNCE, fault, address.decode(errors="replace"), send_id, None, _summary(message),
                      "flufl.bounce")
               for fault, addresses in ((Fault.ADDRESS, permanent), (Fault.TRANSIENT, temporary - permanent))
               for address in sorted(addresses)]
    if not notices:
        return Unrecognized("no delivery report, complaint or known bounce format")
    return notices


def _blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return [block for block in payload if isinstance(block, Message)]
    raw = payload if isinstance(payload, str) else ""
    return [BytesHeaderParser().parsebytes(chunk.strip().encode() + b"\n\n")
            for chunk in re.split(r"\r?\n\s*\r?\n", raw) if chunk.strip()] or [Message()]


def _address(field: object) -> str | None:
    """`rfc822; ada@example.com` -> ada@example.com."""
    if not field:
        return None
    value = _unfold(str(field)).rpartition(";")[2].strip().strip("<>").strip()
    return value.lower() if "@" in value else None


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _summary(message: Message) -> str:
    """The first lines of a bounce's readable text, as its diagnostic."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return _unfold(payload.decode(errors="replace"))[:DIAGNOSTIC_CHARS]
    return ""
