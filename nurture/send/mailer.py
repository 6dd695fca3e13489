"""The Mailer port: an SMTP implementation with pooled connections, and an in-memory double."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib

from nurture.errors import DeliveryError, Fault
from nurture.render.message import Envelope
from nurture.send import answers

Ready = Callable[[], Awaitable[None]]  # awaited before the server may take the message


class Mailer(Protocol):
    async def send(self, envelope: Envelope, ready: Ready | None = None) -> None:
        """Deliver one message or raise DeliveryError, whose `fault` says whose refusal it was. `ready`, when given, is
        awaited once the envelope is accepted and before the message goes: the server cannot take the
        message until it returns."""

    async def close(self) -> None: ...


@dataclass
class MemoryMailer:
    """Keeps what it is given; `fail` maps a recipient to the DeliveryError to raise for it."""

    sent: list[Envelope] = field(default_factory=list)
    fail: dict[str, DeliveryError] = field(default_factory=dict)

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> None:
        if envelope.recipient in self.fail:
            raise self.fail[envelope.recipient]
        if ready is not None:
            await ready()
        self.sent.append(envelope)

    async def close(self) -> None:
        return None


STAGE_OF: list[tuple[type[aiosmtplib.SMTPResponseException], str]] = [  # the refusals aiosmtplib tells apart
    (aiosmtplib.SMTPConnectResponseError, "connect"), (aiosmtplib.SMTPHeloError, "ehlo"),
    (aiosmtplib.SMTPAuthenticationError, "auth"), (aiosmtplib.SMTPSenderRefused, "mail"),
    (aiosmtplib.SMTPRecipientRefused, "rcpt"), (aiosmtplib.SMTPDataError, "data"),
]


class SmtpMailer:
    """Delivers over SMTP, reusing up to `connections` open connections."""

    def __init__(self, host: str, port: int, *, connections: int = 4, timeout: float = 30,
                 starttls: bool = False, username: str | None = None, password: str | None = None,
                 verify_certificates: bool = True):
        self._options = dict(hostname=host, port=port, timeout=timeout, start_tls=starttls or False,
                             username=username, password=password, validate_certs=verify_certificates)
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(connections)

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> None:
        async with self._slots:
            client = None
            try:
                client = await self._checkout()
                await _transfer(client, envelope, ready)
            except aiosmtplib.SMTPResponseException as error:  # a reply: whose refusal it is depends on when
                await _drop(client)
                stage = next((name for kind, name in STAGE_OF if isinstance(error, kind)), None)
                raise DeliveryError(f"{answers.STAGES.get(stage or '', 'the server')} refused: {error.code} "
                                    f"{error.message}", fault=answers.fault(stage, error.code, error.message),
                                    code=error.code) from None
            except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as error:
                await _drop(client)
                raise DeliveryError(f"{type(error).__name__}: {error}") from None
            except ValueError as error:  # the client refuses the message itself (an address it cannot quote)
                await _drop(client)
                raise DeliveryError(f"refused by the SMTP client: {error}", fault=Fault.ADDRESS) from None
            except Exception:  # not the server's doing (`ready` failed): leave no half-open envelope behind
                await _drop(client)
                raise
            self._idle.put_nowait(client)

    async def _checkout(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
        return await self._connect()

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(**self._options)  # type: ignore[arg-type]
        await client.connect()
        return client

    async def close(self) -> None:
        while not self._idle.empty():
            await _drop(self._idle.get_nowait())


async def _transfer(client: aiosmtplib.SMTP, envelope: Envelope, ready: Ready | None) -> None:
    """MAIL, RCPT and DATA for one recipient. `sendmail` would also pass over the message bytes a second
    time (to count its SIZE) and parse each address twice: a fifth of the client's work per message."""
    options = [f"SIZE={envelope.size}"] if client.supports_extension("size") else []
    await client.mail(envelope.sender, options=options)
    await client.rcpt(envelope.recipient)
    if ready is not None:
        await ready()
    await client.data(envelope.data)


async def _drop(client: aiosmtplib.SMTP | None) -> None:
    if client is None or not client.is_connected:
        return
    try:
        await client.quit()
    except (TimeoutError, aiosmtplib.SMTPException, OSError):
        client.close()
