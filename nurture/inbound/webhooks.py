"""Bounces and complaints a relay reports over HTTP: Amazon SES through SNS, and Mailgun. Each report is
verified by its provider's signature before anything is read from it, then turned into the same notices
a bounce by mail makes (nurture.inbound.notices).

SNS signs each message with a key whose certificate it serves from an amazonaws.com address (named in
the message: only such an address is fetched); Mailgun signs a timestamp and a one-time token with the
account's webhook signing key (NURTURE_MAILGUN_SIGNING_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from nurture.errors import Fault, InputError
from nurture.inbound.notices import DIAGNOSTIC_CHARS, Notice, Reader
from nurture.models import EventKind
from nurture.send import answers

SNS_CERTIFICATE_URL = re.compile(r"^https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[\w./-]+\.pem$")
SNS_FIELDS = {  # what each kind of SNS message signs, in this order
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
MAILGUN_SKEW_SECONDS = 300


class Forged(InputError):
    """A report whose signature does not verify, or that comes from where it may not."""


# Amazon SES, through SNS

def verify_sns(message: Mapping[str, Any], certificate_for: Callable[[str], bytes], topics: Sequence[str]) -> None:
    """Raise Forged unless `message` is signed by SNS for one of `topics`."""
    kind = message.get("Type")
    if kind not in SNS_FIELDS:
        raise Forged(f"not an SNS message type: {kind!r}")
    if message.get("TopicArn") not in topics:
        raise Forged(f"topic {message.get('TopicArn')!r} is not one of bounces.ses_topics")
    url = str(message.get("SigningCertURL", ""))
    if not SNS_CERTIFICATE_URL.match(url):
        raise Forged(f"the signing certificate is not Amazon's: {url!r}")
    signed = "".join(f"{name}\n{message[name]}\n" for name in SNS_FIELDS[kind] if name in message).encode()
    algorithm = hashes.SHA256() if str(message.get("SignatureVersion")) == "2" else hashes.SHA1()
    key = x509.load_pem_x509_certificate(certificate_for(url)).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Forged("the signing certificate holds no RSA key")
    try:
        key.verify(base64.b64decode(str(message.get("Signature", ""))), signed, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError):
        raise Forged("the SNS signature does not verify") from None


def ses_notices(message: Mapping[str, Any], reader: Reader) -> list[Notice]:
    """The notices in a verified SNS notification of SES (bounces and complaints; deliveries say nothing)."""
    report = json.loads(str(message.get("Message", "{}")))
    mail = report.get("mail", {})
    headers = "\n".join(f"{h.get('name')}: {h.get('value')}" for h in mail.get("headers", []))
    send_id = reader.send_named(headers.encode(), [str(mail.get("source", ""))])
    kind = report.get("notificationType") or report.get("eventType")
    if kind == "Bounce":
        bounce = report.get("bounce", {})
        permanent = bounce.get("bounceType") == "Permanent"
        notices = []
        for recipient in bounce.get("bouncedRecipients", []):
            status = recipient.get("status")
            diagnostic = str(recipient.get("diagnosticCode", "")).partition(";")[2].strip() or str(
                bounce.get("bounceSubType", ""))
            fault = answers.fault("rcpt", 550 if permanent else 450, f"{status or ''} {diagnostic}".strip())
            if not permanent and fault is Fault.ADDRESS:
                fault = Fault.TRANSIENT  # SES says it may pass later: believe it
            notices.append(Notice(EventKind.BOUNCE, fault, _lower(recipient.get("emailAddress")), send_id, status,
                                  diagnostic[:DIAGNOSTIC_CHARS], "SES"))
        return notices
    if kind == "Complaint":
        complaint = report.get("complaint", {})
        feedback = complaint.get("complaintFeedbackType") or "abuse"
        return [Notice(EventKind.COMPLAINT, Fault.ADDRESS, _lower(recipient.get("emailAddress")), send_id, None,
                       f"{feedback} report via SES", "SES") for recipient in complaint.get("complainedRecipients", [])]
    return []


# Mailgun

def verify_mailgun(body: Mapping[str, Any], key: str, now: float, seen: Callable[[str], bool]) -> None:
    """Raise Forged unless `body` is signed with the signing `key`, recent, and not seen before (`seen`
    says whether a token was, and notes it)."""
    signature = body.get("signature") or {}
    timestamp, token, given = (str(signature.get(name, "")) for name in ("timestamp", "token", "signature"))
    if not key:
        raise Forged("no Mailgun signing key is configured (NURTURE_MAILGUN_SIGNING_KEY)")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not token or not hmac.compare_digest(expected, given):
        raise Forged("the Mailgun signature does not verify")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAILGUN_SKEW_SECONDS:
        raise Forged("the Mailgun report is too old (or from the future)")
    if seen(token):
        raise Forged("the Mailgun report was delivered before (its token is used)")


def mailgun_notices(body: Mapping[str, Any], reader: Reader) -> list[Notice]:
    event = body.get("event-data") or {}
    message_id = str((event.get("message", {}).get("headers", {}) or {}).get("message-id", ""))
    send_id = reader.send_named(f"<{message_id.strip('<>')}>".encode(), [str(event.get("envelope", {})
                                                                            .get("sender", ""))])
    recipient = _lower(event.get("recipient"))
    if event.get("event") == "complained":
        return [Notice(EventKind.COMPLAINT, Fault.ADDRESS, recipient, send_id, None, "complaint via Mailgun",
                       "Mailgun")]
    if event.get("event") != "failed":
        return []
    status = event.get("delivery-status", {}) or {}
    code = status.get("code")
    enhanced = str(status.get("enhanced-code") or "")
    words = str(status.get("message") or status.get("description") or "")
    basic = int(str(code)) if str(code).isdigit() else None
    fault = answers.fault("rcpt", basic, f"{enhanced} {words}".strip())
    if event.get("severity") == "temporary" and fault is Fault.ADDRESS:
        fault = Fault.TRANSIENT
    return [Notice(EventKind.BOUNCE, fault, recipient, send_id, enhanced or None, words[:DIAGNOSTIC_CHARS],
                   "Mailgun")]


def _lower(address: object) -> str | None:
    return str(address).strip().lower() if address else None


def parse(body: bytes) -> dict[str, Any]:
    """A report's JSON object; InputError names what is wrong with it."""
    try:
        data = json.loads(body)
    except ValueError:
        raise InputError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise InputError("the body must be a JSON object")
    return data
