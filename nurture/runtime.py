"""Building the running parts from Settings: the store, the SMTP mailer, the development sink; and the
event loop they run on."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import socket
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiosmtpd.controller import Controller

from nurture.errors import ConfigError
from nurture.send.mailer import SmtpMailer
from nurture.send.sink import listening, start_sink
from nurture.settings import Settings
from nurture.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


NOISY = ("apscheduler", "mail.log", "httpx", "alembic")  # their INFO lines say nothing an operator needs


class JsonLines(logging.Formatter):
    """A log record as one JSON object a line: time (UTC), level, logger, message, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(verbose: bool = False, json_lines: bool | None = None, tag: str = "") -> None:
    """Log to stderr, as text or (with `json_lines`, or NURTURE_LOG_FORMAT=json, which child processes
    inherit) as JSON lines; `tag` names the process in text lines (the judge's)."""
    if json_lines is None:
        json_lines = os.environ.get("NURTURE_LOG_FORMAT", "").lower() == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if json_lines else
                         logging.Formatter(f"%(asctime)s {tag}%(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop where it is installed (not on Windows): its event loop costs the sender
    about a tenth less CPU per message. The server's uvicorn picks uvloop by itself.

    What is loaded by then (modules, settings, the store's mappings: some hundred thousand objects) is
    frozen first, once its garbage is collected: the collector never scans it again, where each full
    collection of a run would."""
    gc.collect()
    gc.freeze()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything else starts: a port in use is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}; stop what uses it or "
                          "choose another port with --port") from None
    return sock


def open_store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.create()
    return store


def smtp_mailer(settings: Settings) -> SmtpMailer:
    smtp = settings.smtp
    return SmtpMailer(smtp.host, smtp.port, connections=smtp.concurrency, timeout=smtp.timeout,
                      starttls=smtp.starttls, username=smtp.username, password=settings.smtp_password,
                      verify_certificates=smtp.verify_certificates)


@contextmanager
def development_sink(settings: Settings, store: Store) -> Iterator[Controller | None]:
    """Run the embedded sink while the block runs, if configured and nothing listens on its port yet."""
    smtp = settings.smtp
    if not smtp.sink or listening(smtp.host, smtp.port):
        yield None
        return
    controller = start_sink(store, smtp.host, smtp.port)
    log.info("development SMTP sink listening on %s:%s (read it with `nurture sink`)", smtp.host, smtp.port)
    try:
        yield controller
    finally:
        controller.stop()
