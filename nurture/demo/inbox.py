"""Reading a delivered mail as its recipient's mail client does: the tracking URLs it carries.

A recipient reacts to what it was sent, so the simulation reads the message the mailer took, not the
database: the pixel, each tracked link (by its index in the mail), the confirmation, unsubscribe and
preference links, and in a hand-off mail the lead's profile.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field

from nurture.errors import TokenError
from nurture.render.message import Envelope
from nurture.track.tokens import Purpose, Signer

PATHS = {"o": Purpose.OPEN, "c": Purpose.CLICK, "confirm": Purpose.CONFIRM, "u": Purpose.UNSUBSCRIBE,
         "p": Purpose.PREFERENCES, "sales": Purpose.PROFILE}


@dataclass
class Mail:
    """What one delivered message offers its reader: a token for each thing it can do."""

    recipient: str
    send_id: int | None = None  # the send it is (None: a mail to sales)
    pixel: str | None = None
    links: dict[int, str] = field(default_factory=dict)  # a tracked link's index in the send -> its token
    confirm: str | None = None
    unsubscribe: str | None = None
    preferences: str | None = None
    profile: str | None = None  # a hand-off mail's link to the lead's profile
    handoff_id: int | None = None


class Inbox:
    """Reads the tracking URLs of mails sent under `base_url`, checking each token as the server would."""

    def __init__(self, base_url: str, signer: Signer):
        self.pattern = re.compile(rf"{re.escape(base_url.rstrip('/'))}/(o|c|confirm|u|p|sales)/([A-Za-z0-9_-]+)")
        self.signer = signer

    def read(self, envelope: Envelope) -> Mail:
        mail = Mail(envelope.recipient)
        for path, token in self.pattern.findall(_html(envelope.data)):
            self._take(mail, PATHS[path], token)
        return mail

    def _take(self, mail: Mail, purpose: Purpose, token: str) -> None:
        try:
            claim = self.signer.verify(token, purpose)
        except TokenError:
            return  # not one of ours (a feed's own link that looks alike)
        if purpose is Purpose.OPEN:
            mail.pixel, mail.send_id = token, claim.subject
        elif purpose is Purpose.CLICK:
            mail.links[claim.link] = token
            mail.send_id = claim.subject
        elif purpose is Purpose.PROFILE:
            mail.profile, mail.handoff_id = token, claim.subject
        elif purpose is Purpose.CONFIRM:
            mail.confirm = token
        elif purpose is Purpose.UNSUBSCRIBE:
            mail.unsubscribe = token
        else:
            mail.preferences = token


def _html(data: bytes) -> str:
    """The HTML part, decoded (its transfer encoding would break URLs across lines). The compat32 policy:
    the default one parses every header into objects, five times the cost, for nothing read here."""
    for part in email.message_from_bytes(data).walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            return payload.decode(part.get_content_charset() or "utf-8") if isinstance(payload, bytes) else ""
    return ""
