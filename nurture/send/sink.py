"""The embedded development SMTP sink: an aiosmtpd server that keeps every message it receives."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.controller import Controller

from nurture.models import SinkMessage
from nurture.store import Store


class SinkHandler:
    def __init__(self, store: Store):
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        subject = str(message_from_bytes(data, policy=policy.default).get("Subject", ""))
        self.store.add_sink_message(SinkMessage(
            mail_from=envelope.mail_from, recipients=list(envelope.rcpt_tos), subject=subject[:300],
            received_at=datetime.now(UTC), data=data))
        return "250 Message accepted for delivery"


def start_sink(store: Store, host: str, port: int) -> Controller:
    """Start the sink in its own thread; the caller stops it with `.stop()`."""
    controller = Controller(SinkHandler(store), hostname=host, port=port, ready_timeout=10)
    controller.start()
    return controller


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
