#!/usr/bin/env python3
"""What nurture costs as the list grows (issue #17): for each size (default 10k, 100k and 1M leads) and
database (SQLite, and PostgreSQL where reachable, in a schema of its own), the CPU seconds and the peak
memory of each of these, through nurture's own entry points:

    idle plan       Engine.plan with nobody due (median of 15 runs, after one to warm up)
    idle tick       Engine.send_due with nobody due: what the scheduler's send job runs every minute
    /healthz        GET through Starlette's TestClient on create_app
    planning        Engine.plan with the due leads due (median of 15)
    digest pass     Engine.send_due delivering the due leads' digests to a local SMTP sink
    confirmation    Engine.send_due delivering the confirmations of as many new sign-ups
    claim           Outbox.claim of 200 among 1,000 queued, over the whole history (median of 15)
    leads import    nurture.intake.import_csv (`nurture leads import`) of a CSV of SIZE leads, empty database

The digest pass runs ROUNDS (3) times at each size, SQLite's and PostgreSQL's passes taking turns, each
database put back after each pass (PutBack); its cell is the pass of the median rate, and the PostgreSQL
ratio is the median of the rounds' ratios: the host's pace drifts by 10-15% within minutes, more than the
difference sought. A PostgreSQL database is vacuumed after seeding and after each pass, as autovacuum
would (the test server runs without it).

Each runs in a fresh process (multiprocessing 'spawn'): CPU is its user + system time and its children's
(a delivery run forks its builder); peak memory is the largest resident set of it or its children above
its own before the first run (ru_maxrss), so seeding pollutes neither. On PostgreSQL the database server's
work is in no process of ours: it shows in the wall time, which each cell gives too.

The history, made by SQL in the database (INSERT ... SELECT over a series, seconds to a few minutes): each
lead is confirmed and in its third cycle, with two earlier cycles behind it: 4 mails sent (the
confirmation and a digest in cycle 0, two digests in cycle 1), each digest with one feed item, 3 events (an
open, a click, a digest's cost), 2 hand-offs with an outcome (that started cycles 1 and 2) and a consent.
By default DELIVERY (10,000) leads are due for a digest among the SIZE stored, the others not due for days;
the confirmation pass mails as many new sign-ups added after the digest pass. So CPU per mail is compared
across sizes on the same number of mails: what the history stored costs each one. --full-delivery makes
every stored lead due (a full digest pass over 1M leads takes about 25 minutes on SQLite on 2 cores).

    python scripts/bench_scale.py [--sizes 10000,100000,1000000] [--db sqlite,postgres]
                                  [--skip-delivery] [--delivery-leads 10000 | --full-delivery]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, make_url, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_import import run_import, write_csv  # noqa: E402
from bench_report import LINKS, TALLY, enum, series, vacuum  # noqa: E402
from bench_send import free_port, sink_process  # noqa: E402

from nurture import program  # noqa: E402
from nurture.content.catalog import load_catalog  # noqa: E402
from nurture.content.refresh import refresh  # noqa: E402
from nurture.engine import Engine, Report  # noqa: E402
from nurture.models import Event, Handoff, Lead, Send, Stage  # noqa: E402
from nurture.runtime import run_async  # noqa: E402
from nurture.send.mailer import SmtpMailer  # noqa: E402
from nurture.send.outbox import Outbox  # noqa: E402
from nurture.server import create_app  # noqa: E402
from nurture.settings import Settings, load_settings  # noqa: E402
from nurture.store import Store  # noqa: E402
from tests.conftest import SECRET, postgres_problem, postgres_schema  # noqa: E402

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
IDLE = NOW - timedelta(hours=2)  # the due leads are due an hour before NOW; at IDLE nobody is
RUNS = 15  # fixed costs of a few milliseconds: fewer runs left their verdicts to the host's noise
CLAIM, QUEUED = 200, 1_000
MEMORY_LIMIT_MB = 300
DATETIME = Lead.__table__.c.due_at.type  # type: ignore[attr-defined]
SEEDED = ("lead", "consent", "send", "senditem", "event", "handoff", "feeditem")  # vacuumed on PostgreSQL
ADDED = ("senditem", "event", "handoff", "send")  # the tables a digest pass adds to, in the order PutBack empties them
ROUNDS = 3  # digest passes a database and size, SQLite's and PostgreSQL's taking turns: the ratio is their median
# the mails of the two earlier cycles: (cycle, step, template, days before NOW)
HISTORY = ((0, 0, "confirmation", 200), (0, 1, "digest", 193), (1, 1, "digest", 120), (1, 2, "digest", 113))
# the events of those mails: (kind, cycle and step of the mail, points, credit key, link)
EVENTS = (("OPEN", 0, 1, 1, "'open:' || id", "NULL"), ("CLICK", 1, 1, 0, "'click:' || id || ':' || 2", "2"),
          ("SENT", 1, 2, -1, "'sent:' || id", "NULL"))
LABELS = {"idle-plan": "idle plan (nobody due)", "idle-tick": "idle tick (send_due)", "healthz": "/healthz",
          "plan": "planning", "digest": "digest pass", "confirmation": "confirmation pass",
          "claim": f"claim of {CLAIM}", "import": "leads import"}
DELIVERY = ("digest", "confirmation")
PER_LEAD = ("plan", *DELIVERY, "import")


@dataclass(frozen=True)
class Figures:
    cpu: float  # CPU seconds of one run (the median, where there are several), its children's included
    wall: float  # wall seconds of that run
    peak_mb: float  # peak resident memory above the process's before the first run
    count: int = 0  # leads planned, mails sent or leads imported
    server: float = 0.0  # CPU seconds of the local PostgreSQL server's processes in that run (0 on SQLite)
    rates: tuple[float, ...] = ()  # a digest pass: the mails/s of each round's pass, this one among them

    @property
    def cpu_per_lead_us(self) -> float:
        return self.cpu / self.count * 1e6 if self.count else 0.0

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall else 0.0


@dataclass(frozen=True)
class Population:
    """SIZE leads with history, `due` of them (every `every`-th, up to `reach`) due for a digest at NOW."""

    size: int
    due: int

    @classmethod
    def of(cls, size: int, due: int) -> Population:
        return cls(size, max(min(due, size), 1))

    @property
    def every(self) -> int:
        return self.size // self.due

    @property
    def reach(self) -> int:
        return self.every * self.due


# seeding


def seed(url: str, population: Population) -> None:
    """The history (see the module's docstring), the bundled feeds read, ANALYZE run."""
    store = Store(url)
    store.create()
    settings = settings_for(url, 25)  # no mail goes here
    asyncio.run(refresh(store, load_catalog(settings.feeds_file), NOW - timedelta(days=1)))
    with store.engine.begin() as connection:
        add_leads(connection, store, 0, population.size, settings, population)
        for statement, params in history(store, connection):
            connection.execute(statement, params)
        for statement in TALLY:  # what the judge keeps of each mail's and lead's hits
            connection.execute(text(statement))
    assert store.restore_due(settings.program) == 0, "a seeded lead's due time is not the program's"
    finish(store)


def add_leads(connection: Any, store: Store, after: int, count: int, settings: Settings,
              population: Population | None = None) -> None:
    """`count` leads with ids after `after`: of a `population`, in their third cycle, its due ones due at NOW
    and the others in 2 to 6 days; or new sign-ups of an hour ago, not yet confirmed, their confirmation due."""
    every, reach = (population.every, population.reach) if population else (0, 0)
    if population:
        cycle, confirmed = 2, ":created"
        due = NOW - timedelta(days=settings.program.digest_every_days, hours=1)  # due an hour before NOW
        starts = [("k % :every = 0 AND k <= :reach", due)] + [
            (f"k % 3 = {n}", NOW - timedelta(days=days)) for n, days in enumerate((1, 3, 5))]
    else:
        cycle, confirmed, starts = 0, "NULL", [("1 = 1", NOW - timedelta(hours=1))]
    params: dict[str, Any] = {"count": count, "after": after, "every": every, "reach": reach, "cycle": cycle,
                              "created": NOW - timedelta(days=200 if population else 0, hours=1)}
    for n, (_, started) in enumerate(starts):
        params[f"start{n}"] = started
        params[f"due{n}"] = program.next_digest_at(program.History(
            0, Stage.MQL, False, cycle, started, None, None, population is not None), settings.program)
    interests = """CASE k % 4 WHEN 0 THEN '["cloud"]' WHEN 1 THEN '["security"]' WHEN 2 THEN '["cloud", "security"]'
                   ELSE '["devops"]' END"""
    mql = enum(store, Lead, "stage", "'MQL'")
    statement = (
        "INSERT INTO lead (id, email, first_name, last_name, company, industry, interests, locale, country, "
        "customer, stage, cycle, cycle_started_at, score, created_at, confirmed_at, tracking, last_step, "
        "last_mailed_at, due_at) SELECT :after + k, 'lead' || (:after + k) || '@example.com', 'Lead', '', "
        "'Company ' || (k % 97), CASE k % 3 WHEN 0 THEN 'finance' WHEN 1 THEN 'manufacturing' ELSE '' END, "
        f"{as_json(store, interests)}, 'en', '', k % 10 = 0, {mql}, :cycle, "
        f"{case(starts, 'start')}, 0, :created, {confirmed}, true, NULL, NULL, {case(starts, 'due')} "
        f"FROM ({series(store)}) AS s")
    connection.execute(typed(statement, params), params)
    connection.execute(text("INSERT INTO consent (lead_id, at, how) SELECT id, created_at, 'import leads.csv' "
                            "FROM lead WHERE id > :after"), {"after": after})


def history(store: Store, connection: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The statements of the two earlier cycles: mails, their items, events and hand-offs."""
    sent, handed, no_result = (enum(store, table, column, value) for table, column, value in (
        (Send, "state", "'SENT'"), (Handoff, "state", "'SENT'"), (Handoff, "outcome", "'NO_RESULT'")))
    links = as_json(store, f"'{LINKS}'", "jsonb")  # as models.Send.links stores them
    sent_days = {(cycle, step): days for cycle, step, _, days in HISTORY}
    for cycle, step, template, days in HISTORY:
        at = {"at": NOW - timedelta(days=days)}
        yield typed(
            "INSERT INTO send (lead_id, cycle, step, template, state, message_id, subject, links, attempts, "
            f"created_at, sent_at) SELECT id, {cycle}, {step}, '{template}', {sent}, "
            f"'<' || id || '.{cycle}.{step}@bench.example.com>', 'Your digest', {links}, 1, "
            f":at, :at FROM lead", at), at
    items = {feed: [row[0] for row in connection.execute(text(
        "SELECT id FROM feeditem WHERE feed = :feed ORDER BY published, id LIMIT 3"), {"feed": feed})]
        for feed in ("cloud", "security")}
    for n, (cycle, step, _, _) in enumerate(HISTORY[1:]):  # a digest's oldest item of the lead's first feed
        yield text("INSERT INTO senditem (send_id, lead_id, item_id, position) SELECT id, lead_id, CASE WHEN "
                   f"lead_id % 4 = 1 THEN :security ELSE :cloud END, 0 FROM send WHERE cycle = {cycle} AND "
                   f"step = {step}"), {"cloud": items["cloud"][n], "security": items["security"][n]}
    for kind, cycle, step, points, credit, link in EVENTS:
        at = {"at": NOW - timedelta(days=sent_days[cycle, step] - 1)}  # the day after the mail
        field = {name: "NULL" if link == "NULL" else f"json_extract(links, '$[{link}].{name}')" if store.is_sqlite
                 else f"links -> {link} ->> '{name}'" for name in ("url", "tag")}  # a click keeps its link's
        yield typed(
            "INSERT INTO event (lead_id, cycle, send_id, kind, link, url, tag, points, counted, machine, credit_for, "
            f"credit_key, occurred_at, method, user_agent) SELECT lead_id, cycle, id, "
            f"{enum(store, Event, 'kind', repr(kind))}, {link}, {field['url']}, {field['tag']}, {points}, true, "
            f"false, {credit}, {credit}, :at, "
            f"'GET', 'Mozilla/5.0' FROM send WHERE cycle = {cycle} AND step = {step}", at), at
    for cycle, days in ((0, 150), (1, 60)):
        at = {"at": NOW - timedelta(days=days), "decided": NOW - timedelta(days=days - 3)}
        yield typed(
            "INSERT INTO handoff (lead_id, cycle, score, state, outcome, message_id, created_at, sent_at, "
            f"decided_at, owner_name, owner_email) SELECT id, {cycle}, 12, "
            f"{handed}, {no_result}, '', "
            ":at, :at, :decided, 'Sales team', 'sales@example.com' FROM lead", at), at


def finish(store: Store) -> None:
    """ANALYZE, as a database that has lived a while has been; on PostgreSQL the leads' sequence moved past
    the ids given here, so that nurture's own inserts go on from them."""
    with store.engine.begin() as connection:
        if not store.is_sqlite:
            connection.execute(text("SELECT setval(pg_get_serial_sequence('lead', 'id'), max(id)) FROM lead"))
        connection.execute(text("ANALYZE"))
    store.close()


def add_sign_ups(store: Store, settings: Settings, count: int) -> None:
    with store.engine.begin() as connection:
        last = connection.execute(text("SELECT max(id) FROM lead")).scalar_one()
        add_leads(connection, store, last, count, settings)
    finish(store)


def case(starts: list[tuple[str, datetime]], name: str) -> str:
    return "CASE " + " ".join(f"WHEN {condition} THEN :{name}{n}" for n, (condition, _) in enumerate(starts)) + " END"


def as_json(store: Store, value: str, kind: str = "json") -> str:
    """A JSON literal as the column's type: text on SQLite, `kind` (json or jsonb) on PostgreSQL."""
    return value if store.is_sqlite else f"CAST({value} AS {kind})"


def typed(statement: str, params: dict[str, Any]) -> Any:
    """The statement with its datetimes (and Nones: a due time not set) bound as nurture binds them (the
    column type's format on SQLite, its type on PostgreSQL)."""
    return text(statement).bindparams(*(bindparam(name, type_=DATETIME) for name, value in params.items()
                                        if value is None or isinstance(value, datetime)))


# measuring, in a process of its own


def usage() -> tuple[float, float]:
    """CPU seconds of this process and its children, and the largest peak resident set of either (MB)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return cpu, max(own.ru_maxrss, children.ru_maxrss) / 1024


def server_cpu() -> float:
    """CPU seconds of this machine's PostgreSQL processes so far: the live ones', and those of the backends
    that ended (the postmaster's children's, once it reaped them)."""
    found = {}  # pid -> (parent, own ticks, reaped children's ticks)
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if stat[stat.index("(") + 1:stat.rindex(")")].startswith("postgres"):
            fields = stat[stat.rindex(")") + 2:].split()  # from field 3, state
            found[entry.name] = (fields[1], int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]))
    ticks = sum(own + (reaped if parent not in found else 0) for parent, own, reaped in found.values())
    return ticks / os.sysconf("SC_CLK_TCK")


def settings_for(url: str, port: int) -> Settings:
    environ = {"NURTURE_DATABASE_URL": url, "NURTURE_SECRET_KEY": SECRET, "NURTURE_SMTP_PORT": str(port),
               "NURTURE_SMTP_SINK": "false", **{name: os.environ[name] for name in (
                   "HOME", "XDG_CACHE_HOME", "NURTURE_CACHE_DIR") if name in os.environ}}
    settings = load_settings(environ, ROOT / "nurture.yaml")
    return settings.model_copy(update={"server": settings.server.model_copy(update={"judge": "inline"})})


Once = Callable[[], int]  # one run of a measurement: how many leads it planned, mailed or claimed
Prepared = tuple[Once, Callable[[], object]]  # the run, and what puts the database back after it (not measured)


def unchanged() -> None:
    """Nothing to put back after a run."""


def idle_plan(engine: Engine, population: Population, delivery: int) -> Prepared:
    return lambda: checked(len(engine.plan(IDLE)), 0), unchanged


def idle_tick(engine: Engine, population: Population, delivery: int) -> Prepared:
    runner = asyncio.Runner()  # the scheduler's loop: one for every tick
    return lambda: checked(len(runner.run(engine.send_due(IDLE)).sent), 0), unchanged


def healthz(engine: Engine, population: Population, delivery: int) -> Prepared:
    from starlette.testclient import TestClient

    client = TestClient(create_app(engine)).__enter__()  # the server started (its lifespan), as tests do
    return lambda: checked(int(client.get("/healthz").text == "ok"), 1), unchanged


def planning(engine: Engine, population: Population, delivery: int) -> Prepared:
    return lambda: checked(len(engine.plan(NOW)), population.due), unchanged


def digest_pass(engine: Engine, population: Population, delivery: int) -> Prepared:
    return lambda: checked(len(run_async(deliver(engine)).sent), population.due), unchanged


def confirmation_pass(engine: Engine, population: Population, delivery: int) -> Prepared:
    add_sign_ups(engine.store, engine.settings, delivery)
    return lambda: checked(len(run_async(deliver(engine)).sent), delivery), unchanged


def claim(engine: Engine, population: Population, delivery: int) -> Prepared:
    """QUEUED confirmations of new sign-ups queued; each run claims CLAIM of them, and gives them back."""
    add_sign_ups(engine.store, engine.settings, QUEUED)
    confirmations = [due for due in engine.plan(NOW) if due.template == program.CONFIRMATION]
    checked(engine.enqueue_due(NOW, Report(), confirmations), QUEUED)
    outbox, lease = Outbox(engine.store), engine.settings.delivery.lease_seconds
    return lambda: checked(len(outbox.claim(CLAIM, NOW, lease)), CLAIM), outbox.release


# in this order: a delivery pass changes the database, the claim adds to its outbox
PREPARE: dict[str, Callable[[Engine, Population, int], Prepared]] = {
    "idle-plan": idle_plan, "idle-tick": idle_tick, "healthz": healthz, "plan": planning,
    "digest": digest_pass, "confirmation": confirmation_pass, "claim": claim}


async def deliver(engine: Engine) -> Report:
    report = await engine.send_due(NOW)
    await engine.mailer.close()
    return report


@dataclass(frozen=True)
class PutBack:
    """What a digest pass writes, taken back after it: the rows it added (ids past those stored before it)
    and the due leads as they were (kept in a table of their own, not in the measured process's memory);
    then, on PostgreSQL, VACUUM, as autovacuum would in time. Each round's pass then mails the same leads
    from the same database (on SQLite the figures' triggers take back what the deleted rows counted)."""

    store: Store
    last: dict[str, int]  # table -> its largest id before the pass

    @classmethod
    def before(cls, store: Store, population: Population) -> PutBack:
        with store.engine.begin() as connection:
            last = {name: connection.execute(text(f"SELECT coalesce(max(id), 0) FROM {name}")).scalar_one()
                    for name in ADDED}
            connection.execute(text("DROP TABLE IF EXISTS bench_due_lead"))
            connection.execute(text("CREATE TABLE bench_due_lead AS SELECT * FROM lead WHERE id % :every = 0 AND "
                                    "id <= :reach"), {"every": population.every, "reach": population.reach})
        return cls(store, last)

    def __call__(self) -> None:
        columns = [name for name in Lead.__table__.c.keys() if name != "id"]  # type: ignore[attr-defined]
        with self.store.engine.begin() as connection:
            for name in ADDED:  # the items before their sends
                connection.execute(text(f"DELETE FROM {name} WHERE id > :last"), {"last": self.last[name]})
            connection.execute(text(f"UPDATE lead SET {', '.join(f'{name} = saved.{name}' for name in columns)} "
                                    "FROM bench_due_lead AS saved WHERE lead.id = saved.id"))
            connection.execute(text("DROP TABLE bench_due_lead"))
        if not self.store.is_sqlite:
            vacuum(self.store, SEEDED)


def checked(count: int, expected: int) -> int:
    assert count == expected, f"{count} where {expected} were expected"
    return count


def measure(name: str, url: str, port: int, population: Population, delivery: int, again: bool = False) -> Figures:
    """In a fresh process: prepare `name`, then time it once (a delivery pass) or RUNS times after a run to warm
    up; `again`: another round of it follows, so the database is put back after it (a digest pass)."""
    settings = settings_for(url, port)
    store = Store(url)
    engine = Engine(settings, store, SmtpMailer("127.0.0.1", port, connections=settings.smtp.concurrency))
    once, reset = PREPARE[name](engine, population, delivery)  # not measured
    if again:
        reset = PutBack.before(store, population)
    runs = 1 if name in DELIVERY else RUNS + 1
    _, baseline = usage()
    timings = []
    read_server = (lambda: 0.0) if store.is_sqlite else server_cpu  # read outside the times it would add to
    peak = 0.0
    for _ in range(runs):
        server = read_server()
        cpu, started = usage()[0], time.perf_counter()
        count = once()
        cpu, wall = usage()[0] - cpu, time.perf_counter() - started
        timings.append((cpu, wall, read_server() - server))
        peak = max(peak, usage()[1] - baseline)  # before putting back, which is not measured
        reset()
    cpu, wall, server = statistics.median(timings[-RUNS:]) if runs > 1 else timings[0]  # the run of the median CPU
    store.close()
    return Figures(cpu, wall, peak, count if name in PER_LEAD else 0, server)


def measure_import(url: str, csv: str, size: int) -> Figures:
    figures = run_import(url, csv, "new")  # `nurture leads import`, as scripts/bench_import.py drives it
    return Figures(figures.cpu, figures.wall, figures.rss_mb, size)


def in_child(work: Callable[..., Figures], *args: Any) -> Figures:
    """`work` in a fresh process (not a daemon, as a Pool's are: a delivery run forks its builder)."""
    with ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as pool:
        return pool.submit(work, *args).result()


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """An empty database: a SQLite file (removed after), or a schema of its own on the test PostgreSQL."""
    if kind == "postgres":
        with postgres_schema("bench_scale") as url:
            yield url
        return
    path = Path(tempfile.mkdtemp(prefix="scale-", dir=folder))
    try:
        yield f"sqlite:///{path / 'nurture.db'}"
    finally:
        shutil.rmtree(path)


# the table and the targets


Measured = dict[str, dict[int, Figures]]  # measurement -> size -> figures, of one database


def seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def cell(name: str, figures: Figures | None) -> str:
    """CPU s / peak MB, then wall s, or mails a second for a delivery pass (and, for a digest pass, each
    round's); µs CPU per lead for planning and delivery."""
    if figures is None:
        return "-"
    shown = f"{seconds(figures.cpu)} s / {figures.peak_mb:.1f} MB, "
    if name in DELIVERY and figures.server:
        shown += f"server {seconds(figures.server)} s, "
    shown += f"{figures.rate:.0f}/s" if name in DELIVERY else f"wall {seconds(figures.wall)} s"
    if len(figures.rates) > 1:
        shown += f" ({'/'.join(f'{rate:.0f}' for rate in figures.rates)})"
    if name in ("plan", *DELIVERY):
        shown += f", {figures.cpu_per_lead_us:.0f} µs"
    return shown


def table(title: str, measured: Measured, sizes: list[int]) -> list[str]:
    width = max([len(cell(name, by_size.get(size))) for name, by_size in measured.items() for size in sizes] + [12])
    lines = [f"{title}: CPU s / peak MB, wall s or mails/s, µs CPU per lead (each in a process of its own)",
             f"{'':<24}" + "".join(f" {size:>{width},}" for size in sizes)]
    for name, by_size in measured.items():
        lines.append(f"{LABELS[name]:<24}" + "".join(f" {cell(name, by_size.get(size)):>{width}}" for size in sizes))
    return lines


def within(large: float, small: float, factor: float, floor: float = 1e-9) -> bool:
    """`large` is at most `factor` times `small`, taken as at least `floor` (memory grows in steps of pages)."""
    return large <= factor * max(small, floor)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(database: str, measured: Measured, sizes: list[int]) -> list[str]:
    """Issue #17's targets, read off this run: the largest size measured against the smallest."""
    if len(sizes) < 2:
        return [f"{database}: one size measured, no target to read"]
    small, large = min(sizes), max(sizes)
    pairs = {name: (by_size[large], by_size[small]) for name, by_size in measured.items()}
    at = f"at {large:,} against {small:,}"
    return ([flat(database, name, *pairs[name], at) for name in ("idle-plan", "idle-tick", "healthz") if name in pairs]
            + [per_lead(database, name, *pairs[name], at) for name in ("plan", *DELIVERY) if name in pairs]
            + ([imported(*pairs["import"], large, small)] if database == "SQLite" and "import" in pairs else []))


def flat(database: str, name: str, large: Figures, small: Figures, at: str) -> str:
    """Time (CPU and wall: on PostgreSQL the server's share is in the wall time only) and memory within 1.5x."""
    ok = (within(large.cpu, small.cpu, 1.5) and within(large.wall, small.wall, 1.5)
          and within(large.peak_mb, small.peak_mb, 1.5, 1.0))
    return (f"{verdict(ok)} {database} {LABELS[name]}: CPU {large.cpu / small.cpu:.2f}x, wall "
            f"{large.wall / small.wall:.2f}x, peak {large.peak_mb:.1f} MB against {small.peak_mb:.1f} MB {at} "
            "(target: all within 1.5x; memory as at least 1 MB)")


def per_lead(database: str, name: str, large: Figures, small: Figures, at: str) -> str:
    ratio = large.cpu_per_lead_us / small.cpu_per_lead_us
    ok = ratio <= 1.3 and large.peak_mb < MEMORY_LIMIT_MB
    return (f"{verdict(ok)} {database} {LABELS[name]}: CPU per lead {ratio:.2f}x {at}, peak {large.peak_mb:.0f} MB "
            f"(target: within 1.3x, under {MEMORY_LIMIT_MB} MB)")


def imported(large: Figures, small: Figures, size: int, smallest: int) -> str:
    """1,000,000 leads imported on SQLite in under 3 minutes (projected, where a smaller size was the largest)."""
    million = large.wall * 1_000_000 / size
    ok = million < 180 and within(large.peak_mb, small.peak_mb, 1.5, 10.0)
    how = "" if size == 1_000_000 else f" (projected from {size:,}, linear)"
    return (f"{verdict(ok)} SQLite leads import: {million:.0f} s for 1,000,000{how}, peak {large.peak_mb:.0f} MB "
            f"against {small.peak_mb:.0f} MB at {smallest:,} (target: under 180 s; memory flat: within 1.5x, "
            "as at least 10 MB)")


def against_sqlite(measured: dict[str, Measured], sizes: list[int]) -> list[str]:
    """PostgreSQL's digest pass against SQLite's, in this run: the median of the rounds' ratios, each of two
    passes a minute apart."""
    if not all("digest" in measured.get(name, {}) for name in ("SQLite", "PostgreSQL")):
        return []
    lines = []
    for size in sizes:
        ratios = round_ratios(measured["PostgreSQL"]["digest"][size], measured["SQLite"]["digest"][size])
        ratio = statistics.median(ratios)
        rounds = ", ".join(f"{each:.2f}x" for each in ratios)
        lines.append(f"{verdict(ratio >= 0.8)} digest pass at {size:,}: PostgreSQL {ratio:.2f}x SQLite's mails/s, "
                     f"the median of {len(ratios)} rounds ({rounds}) (target: at least 0.8x)")
    return lines


def round_ratios(postgres: Figures, sqlite: Figures) -> list[float]:
    """Each round's PostgreSQL mails/s over SQLite's (the rates of each pass, or of the one pass)."""
    pairs = zip(postgres.rates or (postgres.rate,), sqlite.rates or (sqlite.rate,), strict=True)
    return [ours / theirs for ours, theirs in pairs]


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    memory = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    return (f"machine: {os.cpu_count()} cores ({model}), {memory / 2**20:.0f} GB RAM, Python "
            f"{sys.version.split()[0]}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


# the run


NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def measure_size(kinds: list[str], population: Population, names: list[str], port: int, delivery: int,
                 csv: Path | None, folder: Path) -> dict[str, dict[str, Figures]]:
    """Seed a database of each kind, measure each of `names` against each in turn, the digest pass ROUNDS
    times in turns (the host's pace drifts by 10-15% within minutes: a database measured minutes after the
    other would carry that drift into the ratio), and the import of `csv` into an empty one. A digest pass's
    Figures are those of its median pass by mails/s, with every pass's rate (`rates`)."""
    found: dict[str, dict[str, Figures]] = {kind: {} for kind in kinds}
    with ExitStack() as stack:
        urls = {kind: stack.enter_context(database(kind, folder)) for kind in kinds}
        for kind, url in urls.items():
            started = time.perf_counter()
            seed(url, population)
            if kind == "postgres":
                store = Store(url)
                vacuum(store, SEEDED)
                store.close()
            print(f"{NAMES[kind]} {population.size:,}: seeded in {time.perf_counter() - started:.0f} s", flush=True)
        for url in urls.values():  # the other's seeding may have pushed a SQLite file out of the page cache
            warm(url)
        for name in names:
            passes: dict[str, list[Figures]] = {kind: [] for kind in kinds}
            rounds = ROUNDS if name == "digest" else 1
            for round_ in range(rounds):
                for kind, url in urls.items():
                    again = round_ < rounds - 1  # the last round's pass stays, as the measurements after it expect
                    passes[kind].append(in_child(measure, name, url, port, population, delivery, again))
            for kind in kinds:
                found[kind][name] = median_pass(passes[kind])
                print(f"  {NAMES[kind]:<10} {LABELS[name]:<24} {cell(name, found[kind][name])}", flush=True)
    if csv is None:
        return found
    for kind in kinds:
        with database(kind, folder) as url:
            found[kind]["import"] = in_child(measure_import, url, str(csv), population.size)
            print(f"  {NAMES[kind]:<10} {LABELS['import']:<24} {cell('import', found[kind]['import'])}", flush=True)
    return found


def warm(url: str) -> None:
    """Read a SQLite database's file once, as a database in use is read: into the operating system's cache."""
    if (path := make_url(url).database) and url.startswith("sqlite"):
        with open(path, "rb") as file:
            while file.read(1 << 24):
                pass


def median_pass(passes: list[Figures]) -> Figures:
    """The pass of the median rate (the lower of the middle two), with every pass's rate."""
    ranked = sorted(passes, key=lambda figures: figures.rate)
    return replace(ranked[(len(ranked) - 1) // 2], rates=tuple(figures.rate for figures in passes))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated numbers of leads")
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--skip-delivery", action="store_true", help="no digest or confirmation pass")
    parser.add_argument("--delivery-leads", type=int, default=10_000, help="leads due for each delivery pass")
    parser.add_argument("--full-delivery", action="store_true", help="every stored lead due for its digest")
    parser.add_argument("--only", default="", help="comma-separated measurements to take (default: all): "
                        + ", ".join(PREPARE) + ", import")
    return parser.parse_args()


def databases(wanted: str) -> list[str]:
    kinds = [kind for kind in wanted.split(",") if kind]
    if "postgres" in kinds and (problem := postgres_problem()):
        print(f"PostgreSQL skipped: {problem}")
        kinds.remove("postgres")
    return kinds


def start_sink() -> tuple[multiprocessing.Process, int]:
    """scripts/bench_send.py's SMTP sink in a process of its own, answering 250 without keeping the mail."""
    port, ready = free_port(), multiprocessing.Event()
    sink = multiprocessing.Process(target=sink_process, args=(port, ready, False), daemon=True)
    sink.start()
    ready.wait(10)
    return sink, port


def main() -> None:
    args = arguments()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    kinds = databases(args.db)
    only = set(filter(None, args.only.split(","))) or {*PREPARE, "import"}
    names = [name for name in PREPARE if name in only and not (args.skip_delivery and name in DELIVERY)]
    delivering = any(name in DELIVERY for name in names)
    sink, port = start_sink() if delivering else (None, 25)  # no mail goes to 25
    measured: dict[str, Measured] = {NAMES[kind]: {} for kind in kinds}
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as temp:
            for size in sizes:
                delivery = size if args.full_delivery else min(args.delivery_leads, size)
                population = Population.of(size, delivery)
                csv = write_csv(Path(temp) / f"leads-{size}.csv", size) if "import" in only else None
                for kind, found in measure_size(kinds, population, names, port, delivery, csv, Path(temp)).items():
                    for name, figures in found.items():
                        measured[NAMES[kind]].setdefault(name, {})[size] = figures
                if csv is not None:
                    csv.unlink()
    finally:
        if sink is not None:
            sink.terminate()
    report(measured, sizes, args)
    print(f"the run took {(time.perf_counter() - started) / 60:.1f} minutes")


def report(measured: dict[str, Measured], sizes: list[int], args: argparse.Namespace) -> None:
    print()
    if not args.skip_delivery:
        due = "every stored lead" if args.full_delivery else f"{args.delivery_leads:,} leads (or all, if fewer)"
        print(f"delivery passes: {due} due for a digest among those stored, the others not due; the confirmation "
              "pass mails as many new sign-ups; cells add mails/s and µs CPU per mail")
    for database, by_name in measured.items():
        print("\n".join(table(database, by_name, sizes)) + "\n")
    for database, by_name in measured.items():
        print("\n".join(targets(database, by_name, sizes)))
    print("\n".join(against_sqlite(measured, sizes)))
    print(machine())


if __name__ == "__main__":
    main()
