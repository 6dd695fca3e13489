"""The judge's own process: it judges what the server stores, and never outlives the server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from nurture.engine import Engine
from nurture.score.judge import Judged
from nurture.server.judge_loop import Judging, Supervisor
from nurture.track.journal import Arrival, Journal
from tests.conftest import ROOT, SECRET, make_lead

PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nurture.server.judge_loop import start_process
    from nurture.runtime import open_store
    from nurture.settings import load_settings
    settings = load_settings({"NURTURE_DATABASE_URL": sys.argv[1], "NURTURE_SECRET_KEY": sys.argv[2]},
                             Path(sys.argv[3]))
    open_store(settings).close()
    judge = start_process(settings)
    print(judge.pid, flush=True)
    time.sleep(120)
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has stopped; only its parent's wait would reap it
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.timeout(60)
def test_the_judge_stops_when_its_server_is_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nurture.db'}"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, url, SECRET, str(ROOT / "nurture.yaml")],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert parent.stdout is not None
        judge = int(parent.stdout.readline())
        time.sleep(1.0)
        assert alive(judge)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(judge) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(judge), "the judge outlived its server"
    finally:
        parent.kill()


def test_the_judge_outlasts_a_database_that_is_away(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable database drops no stored hit; the judge tries again and judges it when it is back."""
    make_lead(engine.store)
    asyncio.run(engine.send_due(datetime.now(UTC) - timedelta(hours=1)))
    send_id = engine.store.sends_of(1)[0].id or 0
    Journal(engine.store).write([Arrival("open", send_id, None, "GET", "Mozilla/5.0", None, time.time())])
    judging = Judging(engine)
    judge = judging.judge._judge
    outages = iter([OperationalError("SELECT", {}, Exception("connection refused"))] * 3)

    def away(limit: int) -> Judged:
        outage = next(outages, None)
        if outage is not None:
            raise outage
        return judge(limit)

    monkeypatch.setattr(judging.judge, "_judge", away)
    monkeypatch.setattr("nurture.server.judge_loop.RETRY_SECONDS", 0.01)
    with pytest.raises(OperationalError):
        judging.judge.next_batch()
    assert engine.store.pending_hits() == 1, "nothing dropped while the database is away"

    async def a_while() -> None:
        task = asyncio.create_task(judging.run())
        deadline = time.monotonic() + 5
        while engine.store.pending_hits() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task.cancel()

    asyncio.run(a_while())
    assert engine.store.pending_hits() == 0
    assert engine.store.lead(1).score == 1


@pytest.mark.timeout(90)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_server_starts_a_new_judge_when_its_judge_dies_and_stops_it_gently(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nurture.server.judge_loop.WATCH_SECONDS", 0.05)

    async def scene() -> tuple[int, int, int | None]:
        supervisor = Supervisor(engine.settings)
        first = supervisor.process
        watching = asyncio.create_task(supervisor.watch())
        await asyncio.sleep(1.0)
        os.kill(first.pid or 0, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while supervisor.process is first and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        second = supervisor.process
        await asyncio.sleep(5.0)  # started (imports done), and judging
        watching.cancel()
        await supervisor.stop()
        return first.pid or 0, second.pid or 0, second.exitcode

    first, second, exitcode = asyncio.run(scene())
    assert second != first, "a new judge was started"
    assert exitcode == 0, "told to stop (SIGTERM), the judge finished its batch and left on its own"
