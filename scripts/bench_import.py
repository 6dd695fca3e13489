#!/usr/bin/env python3
"""What `leads import` costs: CSV files of 10k and 100k leads (and 1M with --million) imported on SQLite and on
PostgreSQL (where reachable, in a schema of its own), each import in a fresh process so that its peak memory
is its own. `new` is the streaming import (nurture.intake.import_csv); `old` is the whole file read into
leads and stored in one session (read_csv + Store.add_leads, the import of release c57e62c), run up to
--old-max leads; `refused` (with --refused) the new import of the file with its last row repeated: read
and stored to the end, read again to name the row repeated, rolled back.

    python scripts/bench_import.py [--million] [--refused] [--old-max N] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nurture.content.catalog import load_catalog  # noqa: E402
from nurture.errors import InputError  # noqa: E402
from nurture.intake import import_csv, read_csv  # noqa: E402
from nurture.settings import load_settings  # noqa: E402
from nurture.store import Store  # noqa: E402
from tests.conftest import POSTGRES_URL, SECRET, postgres_problem  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)
INTERESTS = ["cloud", "security", "devops", "cloud;security", "devops;security", ""]
INDUSTRIES = ["finance", "manufacturing", ""]


@dataclass(frozen=True)
class Figures:
    wall: float
    cpu: float
    rss_mb: float  # peak resident memory of the import above the process's before it


def write_csv(path: Path, size: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "first_name", "last_name", "company", "industry", "interests", "locale",
                         "country", "customer"])
        for n in range(size):
            writer.writerow([f"Lead.{n}@Example{n % 1000}.com", f"First{n}", f"Last{n}", f"Company {n % 997} BV",
                             INDUSTRIES[n % 3], INTERESTS[n % 6], "en" if n % 4 else "nl", "NL" if n % 2 else "",
                             "yes" if n % 10 == 0 else "no"])
    return path


def repeat_last_row(path: Path) -> None:
    """Append a copy of the last row: the import fails at the end of the file, and reads it all again to
    name the row repeated (the worst case of a refusal)."""
    with path.open("rb") as handle:
        handle.seek(-500, 2)
        last = handle.read().splitlines(keepends=True)[-1]
    with path.open("ab") as handle:
        handle.write(last)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_import(url: str, path: str, way: str) -> Figures:
    """In a fresh process: import `path` into the empty database at `url` the `way` (old or new)."""
    settings = load_settings({"NURTURE_DATABASE_URL": url, "NURTURE_SECRET_KEY": SECRET}, ROOT / "nurture.yaml")
    catalog = load_catalog(settings.feeds_file)
    store = Store(url)
    store.create()
    rss, cpu, wall = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, cpu_seconds(), time.perf_counter()
    if way == "new":
        import_csv(store, Path(path), catalog, NOW)
    elif way == "refused":
        try:
            import_csv(store, Path(path), catalog, NOW)
        except InputError as error:
            assert "repeats row" in str(error), error
        assert not store.leads(limit=1)
    else:
        leads = read_csv(Path(path), catalog, NOW)
        for lead in leads:
            lead.confirmed_at = lead.created_at
        store.add_leads(leads, f"import {Path(path).name}")
    figures = Figures(time.perf_counter() - wall, cpu_seconds() - cpu,
                      (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024)
    store.close()
    return figures


def measured(url: str, path: Path, way: str) -> Figures:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(run_import, (url, str(path), way))


def databases(folder: Path) -> list[tuple[str, str]]:
    """(name, URL) of each database to measure."""
    found = [("sqlite", f"sqlite:///{folder / 'db'}")]
    if (problem := postgres_problem()) is None:
        found.append(("postgres", POSTGRES_URL))
    else:
        print(f"PostgreSQL skipped: {problem}")
    return found


def fresh(name: str, url: str, folder: Path) -> tuple[str, str | None]:
    """A URL of an empty database like `url`: a new SQLite file, or a new PostgreSQL schema."""
    if name == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}", None
    import psycopg

    schema = f"bench_import_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{url}?options=-csearch_path%3D{schema}", schema


def drop(url: str, schema: str | None, folder: Path) -> None:
    if schema is None:
        for file in folder.glob("*.db*"):
            file.unlink()
        return
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated numbers of leads")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 leads (the new import only)")
    parser.add_argument("--refused", action="store_true",
                        help="also the file with its last row repeated (new import)")
    parser.add_argument("--old-max", type=int, default=100_000, help="the old import up to this many leads")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")] + ([1_000_000] if args.million else [])
    print(f"{'database':<9} {'way':<7} {'leads':>9} {'wall s':>8} {'CPU s':>8} {'peak MB':>8} {'µs CPU/lead':>12}")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        targets = databases(folder)
        for size in sizes:
            path = write_csv(folder / f"leads-{size}.csv", size)
            ways = ["old"] * (size <= args.old_max) + ["new"] + ["refused"] * args.refused
            for way in ways:
                if way == "refused":
                    repeat_last_row(path)
                for name, url in targets:
                    target, schema = fresh(name, url, folder)
                    try:
                        figures = measured(target, path, way)
                    finally:
                        drop(url, schema, folder)
                    print(f"{name:<9} {way:<7} {size:>9,} {figures.wall:>8.1f} {figures.cpu:>8.1f} "
                          f"{figures.rss_mb:>8.0f} {figures.cpu / size * 1e6:>12.0f}", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
