"""The bounce receiver: an SMTP server (aiosmtpd) for the return-path domain, where its MX, or a relay's
bounce forwarding, delivers the bounces and complaints that come back. It takes mail for the bounce
address only (no relay for anyone else) and answers 451 when it cannot store what it took, so that the
sending server tries again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.controller import Controller

from nurture.inbound.feedback import Feedback
from nurture.render.message import domain_of
from nurture.settings import Settings
from nurture.store import Store

log = logging.getLogger(__name__)
MAX_BYTES = 10 * 1024 * 1024


def bounce_domain(settings: Settings) -> str:
    """The domain bounces come back to: bounces.domain, else that of the From address."""
    return (settings.bounces.domain or domain_of(settings.mail.from_email)).lower()


class BounceHandler:
    def __init__(self, feedback: Feedback):
        self.feedback = feedback
        self.local_part = feedback.settings.bounces.local_part.lower()
        self.domain = bounce_domain(feedback.settings)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.domain or local.lower().partition("+")[0] != self.local_part:
            return f"550 5.1.1 <{address}>: this server takes bounces for {self.local_part}@{self.domain} only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        try:
            await asyncio.to_thread(self.feedback.take, data, str(envelope.mail_from or ""), list(envelope.rcpt_tos),
                                    "smtp", datetime.now(UTC))
        except Exception:
            log.exception("a bounce could not be stored; the sender is asked to try again")
            return "451 4.3.0 could not store the message; try again later"
        return "250 OK"


def start_receiver(feedback: Feedback) -> Controller:
    """Start the receiver on bounces.host:bounces.port in a thread of its own; the caller `.stop()`s it."""
    bounces = feedback.settings.bounces
    controller = Controller(BounceHandler(feedback), hostname=bounces.host, port=bounces.port, ready_timeout=10,
                            data_size_limit=MAX_BYTES)
    controller.start()
    log.info("taking bounces for %s@%s on %s:%s", bounces.local_part, bounce_domain(feedback.settings),
             bounces.host, bounces.port)
    return controller


@contextmanager
def receiving(settings: Settings, store: Store) -> Iterator[Controller | None]:
    """Run the receiver while the block runs, where bounces.receive asks `nurture run` to."""
    if not settings.bounces.receive:
        yield None
        return
    controller = start_receiver(Feedback(settings, store))
    try:
        yield controller
    finally:
        controller.stop()
