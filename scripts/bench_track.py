#!/usr/bin/env python3
"""How fast the tracking server records opens, against a bare endpoint that only returns the GIF.

Seeds a SQLite database with sent emails, starts the nurture server under uvicorn (one worker, with its
judge process, as `nurture serve` runs it), and loads it on loopback with wrk for a fixed time, every
request a distinct valid pixel token, over 64 connections. In the same run it loads a bare Starlette app
that returns the same GIF and does nothing else (the limit). Prints requests/s, p50 and p99 for both and
the ratio; then waits until the judge has judged every stored hit, says how long that took, and checks
that the judged events match the responses sent. Needs wrk (Debian: apt-get install wrk).

    python scripts/bench_track.py [--seconds 10] [--connections 64] [--sends 30000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.models import Lead, SendState  # noqa: E402
from nurture.program import Due  # noqa: E402
from nurture.send.outbox import Outbox  # noqa: E402
from nurture.send.results import Result  # noqa: E402
from nurture.settings import load_settings  # noqa: E402
from nurture.store import Store  # noqa: E402
from nurture.track.tokens import Purpose, Signer  # noqa: E402

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
SECRET = "bench-secret"
BARE_APP = textwrap.dedent('''
    import base64
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
    async def pixel(request):
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})
    app = Starlette(routes=[Route("/o/{token}.gif", pixel)])
''')
NURTURE_APP = textwrap.dedent('''
    import os
    from pathlib import Path
    from nurture.engine import Engine
    from nurture.send.mailer import MemoryMailer
    from nurture.server import create_app
    from nurture.settings import load_settings
    from nurture.store import Store
    settings = load_settings(os.environ, Path(os.environ["NURTURE_CONFIG"]))
    app = create_app(Engine(settings, Store(settings.database_url), MemoryMailer()))
''')
LUA = textwrap.dedent('''
    local paths = {}
    for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
    local n = 0
    request = function()
        n = n + 1
        return wrk.format("GET", paths[(n %% #paths) + 1], {["User-Agent"] = "%s"})
    end
''')
BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
           "Version/17.5 Safari/605.1.15")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed(folder: Path, sends: int) -> tuple[dict[str, str], list[str]]:
    environ = {"NURTURE_DATABASE_URL": f"sqlite:///{folder}/track.db", "NURTURE_SECRET_KEY": SECRET,
               "NURTURE_CONFIG": str(ROOT / "nurture.yaml")}
    settings = load_settings(environ, ROOT / "nurture.yaml")
    store = Store(settings.database_url)
    store.create()
    leads = max(1, sends // 3)
    store.add_leads([Lead(email=f"lead{n}@example.com", cycle_started_at=NOW, created_at=NOW, confirmed_at=NOW)
                     for n in range(leads)], "bench_track.py")
    outbox = Outbox(store)
    for step in range(3):  # three sent mails per lead
        outbox.enqueue_many([(Due(n + 1, 0, step, "digest", None), []) for n in range(leads)], NOW)
    claimed = outbox.claim(sends, NOW, 300)
    for start in range(0, len(claimed), 5000):
        results = [Result(send, SendState.SENT) for send in claimed[start:start + 5000]]
        outbox.finish(results, NOW, settings.scoring, settings.delivery)
    store.close()
    signer = Signer(SECRET)
    return environ, [f"/o/{signer.sign(Purpose.OPEN, send.id or 0)}.gif" for send in claimed]


def serve(module: str, folder: Path, environ: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    (folder / f"{module}.py").write_text(NURTURE_APP if module == "nurture_app" else BARE_APP)
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port), "--log-level", "warning",
         "--no-access-log"], cwd=folder, env={**os.environ, **environ, "PYTHONPATH": f"{folder}:{ROOT}"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{module} did not start")


def load(port: int, paths_file: Path, script: Path, seconds: int, connections: int) -> dict[str, float]:
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                           f"http://127.0.0.1:{port}"], capture_output=True, text=True,
                          env={**os.environ, "BENCH_PATHS": str(paths_file)}, check=True)
    out = done.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
            "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
            "requests": requests, "bad": int(errors.group(1)) if errors else 0}


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def events_stored(folder: Path) -> int:
    with sqlite3.connect(folder / "track.db") as connection:
        return int(connection.execute("select count(*) from event where kind = 'OPEN' or kind = 'open'").fetchone()[0])


def pending(folder: Path) -> int:
    with sqlite3.connect(folder / "track.db-hits") as connection:  # the tracking server's journal
        return int(connection.execute("select count(*) from pendinghit").fetchone()[0])


def drained(folder: Path, limit: float = 300) -> float:
    """Seconds until the judge has judged every stored hit."""
    started = time.monotonic()
    while pending(folder) and time.monotonic() - started < limit:
        time.sleep(0.05)
    return time.monotonic() - started


def one_run(args: argparse.Namespace) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="bench-track-"))
    environ, paths = seed(folder, args.sends)
    paths_file = folder / "paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    script = folder / "pixels.lua"
    script.write_text(LUA % BROWSER)
    figures = {}
    for name, module in (("bare", "bare_app"), ("nurture", "nurture_app")):
        process, port = serve(module, folder, environ)
        try:
            figures[name] = load(port, paths_file, script, args.seconds, args.connections)
            if name == "nurture":
                figures[name]["backlog"] = pending(folder)
                figures[name]["drain"] = drained(folder)
        finally:
            process.terminate()
            process.wait(10)
    stored = events_stored(folder)
    answered = figures["nurture"]["requests"]
    print(f"  bare     {figures['bare']['rps']:8.0f} req/s  p50 {figures['bare']['p50']:6.2f} ms  "
          f"p99 {figures['bare']['p99']:6.2f} ms")
    print(f"  nurture  {figures['nurture']['rps']:8.0f} req/s  p50 {figures['nurture']['p50']:6.2f} ms  "
          f"p99 {figures['nurture']['p99']:6.2f} ms  (non-2xx: {figures['nurture']['bad']})")
    print(f"  judge    {figures['nurture']['backlog']:.0f} hits not yet judged when the load stopped, "
          f"all judged {figures['nurture']['drain']:.1f} s later")
    print(f"  ratio    {figures['nurture']['rps'] / figures['bare']['rps']:.2f}x   events judged and stored {stored}, "
          f"responses counted by wrk {answered} (requests still in flight when wrk stops are not counted)")
    shutil.rmtree(folder, ignore_errors=True)
    return {"bare": figures["bare"]["rps"], "nurture": figures["nurture"]["rps"],
            "ratio": figures["nurture"]["rps"] / figures["bare"]["rps"], "p99": figures["nurture"]["p99"],
            "lost": max(0, answered - stored), "drain": figures["nurture"]["drain"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sends", type=int, default=30000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    runs = []
    for run in range(1, args.runs + 1):
        print(f"run {run}:")
        runs.append(one_run(args))
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"\nmedian of {args.runs} runs ({args.connections} connections, {args.seconds} s each, one uvicorn worker):")
    print(f"  bare Starlette  {median['bare']:8.0f} req/s")
    print(f"  nurture pixel   {median['nurture']:8.0f} req/s, p99 {median['p99']:.1f} ms")
    print(f"  ratio           {median['ratio']:.2f}x   (target >= 0.7, p99 < 50 ms)")
    print(f"  judged          every stored hit within {median['drain']:.1f} s after the load stopped (median)")
    print(f"  events lost     {max(run['lost'] for run in runs):.0f}   (responses answered without a judged event)")


if __name__ == "__main__":
    main()
