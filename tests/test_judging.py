"""The judge's own process: it judges what the server stores, and never outlives the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SECRET

PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from nurture.judging import start_process
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
