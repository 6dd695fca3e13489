"""The benchmark scripts still run against the code as it is (their figures are theirs to print)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mail", ["confirmation", "digest"])
def test_bench_send_runs_on_a_few_leads(mail: str) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_send.py"), "--leads", "30", "--runs", "1",
                           "--naive", "2", "--mail", mail], cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"30 leads ({mail})" in done.stdout and "nurture / raw" in done.stdout


@pytest.mark.timeout(120)
def test_bench_send_times_postgresql_beside_sqlite(postgres_skip_reason: str | None) -> None:
    if postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_send.py"), "--leads", "30", "--runs", "1",
                           "--naive", "2", "--mail", "digest", "--postgres"], cwd=ROOT, capture_output=True, text=True,
                          timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "on PostgreSQL" in done.stdout and "SQLite's (target >= 0.8)" in done.stdout


def test_bench_track_seeds_sent_mail(tmp_path: Path) -> None:
    """The load itself needs wrk; what it loads is seeded here."""
    environ, paths = script("bench_track").seed(tmp_path, 30)
    assert len(paths) >= 30 and environ["NURTURE_DATABASE_URL"].endswith("track.db")


@pytest.mark.timeout(120)
def test_bench_claim_runs_on_a_small_history() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_claim.py"), "2000", "300"], cwd=ROOT,
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "claim of 200 with 2,000 sent and 300 queued" in done.stdout and "SQLite      partial index" in done.stdout


@pytest.mark.timeout(120)
def test_bench_due_runs_on_a_small_list() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_due.py"), "200", "400"], cwd=ROOT,
                          capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SQLite             400 due_pages (index)" in done.stdout and "histories (old scan)" in done.stdout


@pytest.mark.timeout(120)
def test_bench_due_measures_a_pass_with_everybody_due() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_due.py"), "--enqueue", "300", "600"],
                          cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "planning MB" in done.stdout and "       600 " in done.stdout


def test_bench_dkim_prints_its_cost() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_dkim.py"), "3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DKIM sign" in done.stdout and "build (MIME)" in done.stdout
