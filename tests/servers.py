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
    def __init__(self, path, delay):
        self.out = open(path, "a", encoding="utf-8")
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)  # a server that takes its time over each message
        mid = message_from_bytes(envelope.original_content)["Message-ID"]
        for recipient in envelope.rcpt_tos:
            self.out.write(f"{time.time()} {recipient} {mid}\\n")
        self.out.flush()
        os.fsync(self.out.fileno())  # taken for good before the client hears 250
        return "250 OK"


port, path, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
controller = Controller(Handler(path, delay), hostname="127.0.0.1", port=port, ready_timeout=10)
controller.start()
print("ready", flush=True)
sys.stdin.read()  # serve until the test closes stdin
controller.stop()
'''


@contextmanager
def smtp_sink(folder: Path, port: int, delay: float = 0.0) -> Iterator[Path]:
    """An SMTP server on 127.0.0.1:port in a process of its own, taking `delay` seconds over each message;
    yields the file where it writes, before answering 250, each message it accepted (see `arrived`). Being
    apart from the sender, the file is the truth about what went out, whatever happened to the sender."""
    script, received = folder / "smtp_sink.py", folder / "received.txt"
    script.write_text(SMTP_SINK, encoding="utf-8")
    received.touch()
    server = subprocess.Popen([sys.executable, str(script), str(port), str(received), str(delay)],
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


def arrived(received: Path) -> list[tuple[float, str, str]]:
    """What `smtp_sink` accepted, in order: (when, recipient, Message-ID); read while the sink writes, so only
    the lines it has finished count."""
    found = []
    for line in received.read_text(encoding="utf-8").split("\n")[:-1]:  # a line still being written is not yet
        at, recipient, mid = line.split(" ", 2)
        found.append((float(at), recipient, mid))
    return found
