"""Ctrl-C, as a terminal sends it: SIGINT to every process of the foreground group, helpers included.
The command stops with one line, its helper processes stop with it (told by their parent, not by the
signal), and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from nurture.store import Store
from tests.conftest import ROOT, T0, environ, free_port, make_lead
from tests.processes import alive, children
from tests.servers import arrived, release, smtp_sink


def ignores_ctrl_c(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    return bool(ignored & 1 << (signal.SIGINT - 1))


def with_ctrl_c() -> None:
    """In the child, before it runs: Ctrl-C as a terminal has it, even where the tests run with SIGINT
    ignored (a background job's children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def killed_at_the_end(process: subprocess.Popen[str]) -> Iterator[None]:
    """Whatever the block does, the process and its group are gone after it."""
    try:
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def nurture(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "nurture.cli", "--config", str(ROOT / "nurture.yaml"), *arguments]


@pytest.mark.timeout(60)
def test_ctrl_c_stops_the_server_and_its_judge_quietly(database_url: str, tmp_path: Path) -> None:
    store = Store(database_url)
    store.create()
    store.close()
    port = free_port()
    env = {**environ(database_url, NURTURE_SMTP_PORT=str(free_port()), NURTURE_SMTP_SINK="false"), "PATH": ""}
    server = subprocess.Popen(nurture("serve", "--port", str(port)), env=env, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                              preexec_fn=with_ctrl_c)
    with killed_at_the_end(server):
        deadline = time.monotonic() + 30
        judges: list[int] = []
        while not judges:
            assert time.monotonic() < deadline and server.poll() is None, "the server or its judge did not start"
            judges = [pid for pid, command in children(server.pid).items() if "multiprocessing" in command
                      and "resource_tracker" not in command]
            time.sleep(0.1)
        judge = judges[0]
        while not ignores_ctrl_c(judge):  # once it has started
            assert time.monotonic() < deadline and alive(judge), "the judge never set Ctrl-C aside"
            time.sleep(0.1)
        os.kill(judge, signal.SIGINT)  # the judge has its share of a Ctrl-C: it goes on until the server stops it
        time.sleep(1.0)
        assert alive(judge)

        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok"
        os.killpg(server.pid, signal.SIGINT)
        output, _ = server.communicate(timeout=40)
    assert server.returncode == 0, output
    assert "Traceback" not in output and "starting another" not in output and "Aborted" not in output, output
    assert not alive(judge)


@pytest.mark.timeout(90)
def test_ctrl_c_stops_send_due_with_one_line_and_the_next_run_sends_the_rest(database_url: str,
                                                                             tmp_path: Path) -> None:
    leads = 500  # three batches: built by a process of the run's own
    store = Store(database_url)
    store.create()
    for n in range(leads):
        make_lead(store, email=f"lead{n:04d}@example.com")
    store.close()
    port = free_port()
    env = {**environ(database_url, NURTURE_SMTP_PORT=str(port), NURTURE_SMTP_SINK="false"), "PATH": ""}
    send_due = nurture("send-due", "--at", T0.isoformat(), "--no-refresh")
    taken = 150  # then the sink holds the run mid-way, however fast or slow the machine, until the Ctrl-C
    with smtp_sink(tmp_path, port, delay=0.01, hold_after=taken) as received:
        first = subprocess.Popen(send_due, env=env, cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, start_new_session=True, preexec_fn=with_ctrl_c)
        with killed_at_the_end(first):
            deadline = time.monotonic() + 40
            while len(arrived(received)) < taken or not children(first.pid):  # under way, its builder running
                assert time.monotonic() < deadline and first.poll() is None, first.communicate()
                time.sleep(0.05)
            builders = list(children(first.pid))
            os.killpg(first.pid, signal.SIGINT)
            release(received)  # the messages in flight are answered while the run stops
            _, stderr = first.communicate(timeout=40)
        assert first.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1].startswith("stopped (Ctrl-C)"), stderr
        assert "Traceback" not in stderr, stderr
        assert not any(alive(pid) for pid in builders)
        assert len(arrived(received)) <= taken + 4  # at most smtp.concurrency were in flight

        again = subprocess.run(send_due, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        copies = Counter(recipient for _, recipient, _ in arrived(received))
    assert sorted(copies) == [f"lead{n:04d}@example.com" for n in range(leads)], "a due confirmation was lost"
    assert sum(copies.values()) - leads <= 4  # at most smtp.concurrency were in flight, as after kill -9
