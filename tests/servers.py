"""Real servers for end-to-end tests: uvicorn on a free port in a thread, and an SMTP server in a process of
its own that writes down what it accepted."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.applications import Starlette


@contextmanager
def serving(app: Starlette, port: int) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1:port until the block ends; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


SMTP_SINK = '''
import asyncio, os, sys, time
from email import message_from_bytes

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, path, delay, hold_after):
        self.out = open(path, "a", encoding="utf-8")
        self.delay = delay
        self.hold_after = hold_after
        self.released = path + ".release"  # the file `release` makes
        self.taken = 0

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)  # a server that takes its time over each message
        self.taken += 1
        while 0 <= self.hold_after < self.taken and not os.path.exists(self.released):
            await asyncio.sleep(0.01)  # held until the test lets it go on (`release`)
        mid = message_from_bytes(envelope.original_content)["Message-ID"]
        for recipient in envelope.rcpt_tos:
            self.out.write(f"{time.time()} {recipient} {mid}\\n")
        self.out.flush()
        os.fsync(self.out.fileno())  # taken for good before the client hears 250
        return "250 OK"


port, path, delay, hold_after = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
controller = Controller(Handler(path, delay, hold_after), hostname="127.0.0.1", port=port, ready_timeout=10)
controller.start()
print("ready", flush=True)
sys.stdin.read()  # serve until the test closes stdin
controller.stop()
'''


@contextmanager
def smtp_sink(folder: Path, port: int, delay: float = 0.0, hold_after: int | None = None) -> Iterator[Path]:
    """An SMTP server on 127.0.0.1:port in a process of its own, taking `delay` seconds over each message;
    yields the file where it writes, before answering 250, each message it accepted (see `arrived`). Being
    apart from the sender, the file is the truth about what went out, whatever happened to the sender.

    `hold_after`: it accepts that many messages, then holds the next ones (no 250, nothing written) until
    `release`: a test can act on a sender caught mid-run, however fast or slow the machine."""
    script, received = folder / "smtp_sink.py", folder / "received.txt"
    script.write_text(SMTP_SINK, encoding="utf-8")
    received.touch()
    server = subprocess.Popen([sys.executable, str(script), str(port), str(received), str(delay),
                               str(-1 if hold_after is None else hold_after)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield received
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def release(received: Path) -> None:
    """Let a sink that holds its messages (`smtp_sink`'s hold_after) take them, and those to come."""
    Path(f"{received}.release").touch()


def arrived(received: Path) -> list[tuple[float, str, str]]:
    """What `smtp_sink` accepted, in order: (when, recipient, Message-ID); read while the sink writes, so only
    the lines it has finished count."""
    found = []
    for line in received.read_text(encoding="utf-8").split("\n")[:-1]:  # a line still being written is not yet
        at, recipient, mid = line.split(" ", 2)
        found.append((float(at), recipient, mid))
    return found
