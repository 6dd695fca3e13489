"""Limits that hold for the deployment, not per process: two `send-due` workers keep one pace between
them, and two `nurture serve` processes one sign-up limit per address."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from nurture.store import Store
from tests.conftest import ROOT, T0, environ, free_port, make_lead
from tests.servers import arrived, smtp_sink


@pytest.fixture
def arrivals(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    with smtp_sink(tmp_path, port) as received:
        yield port, received


def config(tmp_path: Path, **delivery: object) -> Path:
    """The repository's nurture.yaml with `delivery` changed, written beside the test's database."""
    raw = yaml.safe_load((ROOT / "nurture.yaml").read_text(encoding="utf-8"))
    raw.update(feeds_file=str(ROOT / "feeds.yaml"), templates_dir=str(ROOT / "templates"))
    raw["delivery"] = {**raw.get("delivery", {}), **delivery}
    path = tmp_path / "nurture.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.mark.timeout(60)
def test_two_send_due_workers_keep_one_pace_between_them(database_url: str, tmp_path: Path,
                                                         arrivals: tuple[int, Path]) -> None:
    leads, rate = 60, 20.0
    store = Store(database_url)
    store.create()
    for n in range(leads):
        make_lead(store, email=f"lead{n}@example.com")
    store.close()
    port, received = arrivals
    path = config(tmp_path, rate_per_second=rate, batch_size=5)  # small batches: both workers get some
    env = environ(database_url, NURTURE_SMTP_PORT=str(port), NURTURE_SMTP_SINK="false")
    command = [sys.executable, "-m", "nurture.cli", "--config", str(path), "send-due", "--at", T0.isoformat(),
               "--no-refresh"]
    workers = [subprocess.Popen(command, env={**env, "PATH": ""}, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=50)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs

    times = sorted(at for at, _, _ in arrived(received))
    assert len(times) == leads
    shares = [int(re.search(r"^(\d+) sent,", output, re.M).group(1)) for output in outputs]  # type: ignore[union-attr]
    assert sum(shares) == leads and min(shares) > 0, outputs  # each worker delivered a share
    # one pace: 59 intervals of 50 ms at least (two paces of their own would take about half as long)
    assert times[-1] - times[0] >= 0.9 * (leads - 1) / rate, (times[-1] - times[0], outputs)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= rate + 2  # never much over 20 in any second


@pytest.fixture
def two_servers(database_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two `nurture serve` processes on one database; yields their base URLs."""
    store = Store(database_url)
    store.create()
    store.close()
    env = environ(database_url, NURTURE_SMTP_PORT=str(free_port()), NURTURE_SMTP_SINK="false")
    ports = [free_port(), free_port()]
    servers = [subprocess.Popen([sys.executable, "-m", "nurture.cli", "--config", str(ROOT / "nurture.yaml"),
                                 "serve", "--port", str(port)], env={**env, "PATH": ""}, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base in bases:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{base} did not start"
                time.sleep(0.1)
        yield bases
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)


@pytest.mark.timeout(60)
def test_two_servers_keep_one_sign_up_limit_per_address(two_servers: list[str]) -> None:
    statuses = []
    for n in range(6):  # five per address per ten minutes, whichever server is asked
        base = two_servers[n % 2]
        statuses.append(httpx.post(f"{base}/subscribe", data={"email": f"p{n}@example.com"}, timeout=10).status_code)
    assert statuses == [200] * 5 + [429]
