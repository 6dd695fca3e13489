"""kill -9 during `nurture send-due`, then a restart: no due send is lost, and the only duplicates are the
few messages that were in flight (at most smtp.concurrency), each with the Message-ID of its first copy.

The SMTP server is a separate process that writes every accepted message to a file (flushed and fsynced
before it answers 250), so the file is the truth about what went out, whatever happened to the sender.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from nurture.engine import Engine
from nurture.models import Lead, SendState
from nurture.render.message import Envelope
from nurture.send import resultlog
from nurture.send.mailer import MemoryMailer, Ready
from nurture.send.outbox import Outbox
from nurture.settings import load_settings
from nurture.store import Store
from tests.conftest import ROOT, T0, environ, free_port, make_lead
from tests.processes import alive, children
from tests.servers import arrived, smtp_sink

LEADS = 150
@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A slow SMTP server in its own process; yields its port and the file of what it accepted."""
    port = free_port()
    with smtp_sink(tmp_path, port, delay=0.02) as received:
        yield port, received


def sent_ids(store: Store, leads: int = LEADS) -> dict[str, str]:
    """The Message-ID of every send the database records as sent, by recipient."""
    found = {}
    for lead in store.leads(leads + 10):
        assert lead.id is not None
        for send in store.sends_of(lead.id):
            if send.state is SendState.SENT:
                found[lead.email] = send.message_id
    return found


def logged_sent(store: Store) -> set[str]:
    """Who a run's result log, not yet applied, says was sent (nurture.send.resultlog): what a restart stores first."""
    folder = resultlog.folder_for(store.url)
    lead_ids = {int(record["lead_id"]) for path in (resultlog.logs(folder) if folder else [])
                for _, record in resultlog.read(path).records if record["state"] == SendState.SENT}
    return {lead.email for lead in store.leads_by_id(sorted(lead_ids)).values()}


def send_due() -> list[str]:
    return [sys.executable, "-m", "nurture.cli", "send-due", "--at", T0.isoformat(), "--no-refresh"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("leads", "moment"), [(LEADS, "1 queued"), (LEADS, "5 lines"), (LEADS, "60 lines"),
                                              (3 * LEADS, "250 lines")])  # more than two batches: built in a process
def test_kill_9_during_send_due_loses_nothing_and_repeats_only_what_was_in_flight(
        database_url: str, sink: tuple[int, Path], leads: int, moment: str) -> None:
    port, received = sink
    env = {**os.environ, **environ(database_url, NURTURE_SMTP_PORT=str(port), NURTURE_SMTP_SINK="false",
                                   NURTURE_CONFIG=str(ROOT / "nurture.yaml"))}
    settings = load_settings(env, ROOT / "nurture.yaml")
    concurrency = settings.smtp.concurrency
    assert concurrency == 4
    store = Store(settings.database_url)
    store.create()
    emails = [f"lead{n:03}@example.com" for n in range(leads)]
    store.add_leads([Lead(email=email, first_name="Lead", interests=["cloud"], industry="finance",
                          cycle_started_at=T0, created_at=T0, confirmed_at=T0) for email in emails], "test")
    try:
        first = subprocess.Popen(send_due(), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        amount, unit = moment.split()
        outbox = Outbox(store)
        deadline = time.monotonic() + 30
        # "queued": as soon as the outbox holds a send (enqueueing, or building the batch); "lines": mid-delivery
        while (sum(outbox.counts().values()) if unit == "queued" else len(arrived(received))) < int(amount):
            if first.poll() is not None:
                assert first.stderr is not None
                pytest.fail(f"send-due ended before it could be killed: {first.stderr.read()}")
            assert time.monotonic() < deadline, f"still waiting for {moment}"
            time.sleep(0.002)
        builders = children(first.pid)
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL, "send-due finished before the kill: the test proves nothing"
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in builders) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in builders), "a builder process outlived its sender"

        time.sleep(0.2)  # messages already handed over finish on the server, sender or no sender
        before = arrived(received)
        durable = set(sent_ids(store, leads)) | logged_sent(store)
        assert len(durable) < leads
        unrecorded = {recipient for _, recipient, _ in before} - durable
        assert len(unrecorded) <= concurrency, f"{len(unrecorded)} messages went out without being recorded"

        again = subprocess.run(send_due(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=40)
        assert again.returncode == 0, again.stderr

        copies: dict[str, list[str]] = defaultdict(list)
        for _, recipient, mid in arrived(received):
            copies[recipient].append(mid)
        assert sorted(copies) == emails, "a due confirmation was lost"
        for recipient, mids in copies.items():
            assert len(set(mids)) == 1, f"{recipient} got copies with different Message-IDs: {mids}"
        duplicated = [recipient for recipient, mids in copies.items() if len(mids) > 1]
        assert len(duplicated) <= concurrency, f"{len(duplicated)} duplicated: {duplicated}"
        assert set(duplicated) <= unrecorded
        assert all(len(mids) <= 2 for mids in copies.values())

        recorded = sent_ids(store, leads)
        assert sorted(recorded) == emails
        for lead in store.leads(leads + 10):
            assert lead.id is not None
            sends = store.sends_of(lead.id)
            assert [(send.state, send.step) for send in sends] == [(SendState.SENT, 0)], lead.email
            assert sends[0].claimed_by is None
            assert copies[lead.email][0] == sends[0].message_id
    finally:
        store.close()


class Probe(MemoryMailer):
    """Notes, at every delivery, how many delivered messages the outbox has not recorded yet."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: set[int] = set()
        self.worst = 0

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> None:
        await asyncio.sleep(0.002)
        await super().send(envelope, ready)
        delivered = {send_number(sent) for sent in self.sent}
        self.worst = max(self.worst, len(delivered - self.recorded))


def send_number(envelope: Envelope) -> int:
    found = re.match(r"<send\.(\d+)\.", envelope.message_id)
    assert found, envelope.message_id
    return int(found.group(1))


@pytest.mark.timeout(60)
def test_never_more_than_concurrency_messages_are_out_but_unrecorded(engine: Engine,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """What bounds the duplicates after a crash, watched in-process over a slow write of the results (to
    the run's log on SQLite, to the database elsewhere)."""
    probe = Probe()
    engine.mailer = probe
    finish, flush = Outbox.finish, resultlog.ResultLog.flush

    def slow_finish(self: Outbox, results, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.03)  # a slow disk: results wait to be committed while deliveries go on
        finish(self, results, *args, **kwargs)
        probe.recorded.update(result.send.id for result in results if result.state is SendState.SENT)

    def slow_flush(self: resultlog.ResultLog) -> None:  # type: ignore[type-arg]
        records = [json.loads(line) for line in self.pending]
        time.sleep(0.03)
        flush(self)
        probe.recorded.update(record["send_id"] for record in records if record["state"] == SendState.SENT)

    async def slow_finish_ahead(self: Outbox, results, *args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.03)  # a slow database, on PostgreSQL's connection of the event loop
        await finish_ahead(self, results, *args, **kwargs)
        probe.recorded.update(result.send.id for result in results if result.state is SendState.SENT)

    finish_ahead = Outbox.finish_ahead
    monkeypatch.setattr(Outbox, "finish", slow_finish)
    monkeypatch.setattr(Outbox, "finish_ahead", slow_finish_ahead)
    monkeypatch.setattr(resultlog.ResultLog, "flush", slow_flush)
    for n in range(40):
        make_lead(engine.store, email=f"lead{n:02}@example.com")
    report = asyncio.run(engine.send_due(T0))
    assert len(report.sent) == 40 and len(probe.sent) == 40
    assert len(probe.recorded) == 40
    assert 1 <= probe.worst <= engine.settings.smtp.concurrency


@pytest.mark.timeout(90)
def test_a_killed_builder_ends_the_run_in_seconds_and_the_next_run_sends_the_rest(
        database_url: str, sink: tuple[int, Path]) -> None:
    port, received = sink
    env = {**os.environ, **environ(database_url, NURTURE_SMTP_PORT=str(port), NURTURE_SMTP_SINK="false",
                                   NURTURE_CONFIG=str(ROOT / "nurture.yaml"))}
    settings = load_settings(env, ROOT / "nurture.yaml")
    store = Store(settings.database_url)
    store.create()
    emails = [f"lead{n:03}@example.com" for n in range(3 * LEADS)]
    store.add_leads([Lead(email=email, first_name="Lead", interests=["cloud"], industry="finance",
                          cycle_started_at=T0, created_at=T0, confirmed_at=T0) for email in emails], "test")
    try:
        first = subprocess.Popen(send_due(), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True)
        deadline = time.monotonic() + 30
        while len(arrived(received)) < 20 or not children(first.pid):
            assert first.poll() is None and time.monotonic() < deadline, "send-due ended before its builder was killed"
            time.sleep(0.002)
        for builder in children(first.pid):
            os.kill(builder, signal.SIGKILL)
        _, stderr = first.communicate(timeout=15)  # ended, not hanging on its claims
        assert first.returncode == 1
        assert stderr.strip().splitlines()[-1].startswith("error: the builder process died")
        assert Outbox(store).counts().get(SendState.SENDING, 0) == 0  # its claims were given back

        again = subprocess.run(send_due(), env=env, cwd=ROOT, capture_output=True, text=True, timeout=40)
        assert again.returncode == 0, again.stderr
        assert sorted({recipient for _, recipient, _ in arrived(received)}) == emails
    finally:
        store.close()
