"""The bounce mailbox: for a relay that delivers bounces and complaints to a mailbox rather than to a
server of ours, poll it over IMAP (the stdlib's imaplib). Each message not yet seen is read and acted
on (nurture.inbound.feedback), then flagged as seen, so a message is taken once however often the
mailbox is polled; one that cannot be stored stays unseen for the next poll.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from datetime import datetime

from nurture.errors import ConfigError, RunFailed
from nurture.inbound.feedback import Feedback
from nurture.models import InboundMail

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 30


def poll(feedback: Feedback, now: datetime) -> list[InboundMail]:
    """Take every unseen message of bounces.mailbox; return what was made of each."""
    settings = feedback.settings
    mailbox = settings.bounces.mailbox
    if mailbox is None:
        raise ConfigError("bounces.mailbox is not configured (host, username; NURTURE_IMAP_PASSWORD)")
    if not settings.imap_password:
        raise ConfigError("NURTURE_IMAP_PASSWORD is not set: the password of bounces.mailbox")
    try:
        if mailbox.security == "ssl":
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL(mailbox.host, mailbox.port, timeout=TIMEOUT_SECONDS,
                                                      ssl_context=ssl.create_default_context())
        else:
            client = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=TIMEOUT_SECONDS)
            if mailbox.security == "starttls":
                client.starttls(ssl.create_default_context())
        client.login(mailbox.username, settings.imap_password)
    except (OSError, imaplib.IMAP4.error) as error:
        raise RunFailed(f"the bounce mailbox {mailbox.username}@{mailbox.host}:{mailbox.port} cannot be "
                            f"opened: {error}") from None
    taken = []
    try:
        status, _ = client.select(_quoted(mailbox.folder))
        if status != "OK":
            raise ConfigError(f"the bounce mailbox has no folder {mailbox.folder!r}")
        _, found = client.uid("SEARCH", "UNSEEN")
        for uid in (found[0] or b"").decode().split():
            _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
            data = next((part[1] for part in parts if isinstance(part, tuple)), None)
            if data is None:
                continue
            taken.append(feedback.take(data, "", [], "mailbox", now))
            client.uid("STORE", uid, "+FLAGS", "(\\Seen)")  # only once it is stored
    finally:
        try:
            client.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    log.info("bounce mailbox: %d message(s) taken", len(taken))
    return taken


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
