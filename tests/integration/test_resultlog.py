"""A run's result log on SQLite (nurture.send.resultlog): written by the sender, stored by the builder and
the end of the run, taken over by the next run when its writer is gone."""

from __future__ import annotations

import asyncio
import errno
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nurture.engine import Engine
from nurture.models import ResultLogMark, SendState
from nurture.program import CONFIRMATION, Due
from nurture.send import resultlog
from nurture.send.mailer import MemoryMailer
from nurture.send.outbox import Outbox
from nurture.send.resultlog import BrokenLog, ResultLog
from nurture.send.results import ClaimedSend, Result
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import T0, make_lead


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A SQLite file: where runs keep result logs (on PostgreSQL results go to the database directly)."""
    return f"sqlite:///{tmp_path / 'nurture.db'}"


def claimed(store: Store, outbox: Outbox, count: int) -> list[ClaimedSend]:
    leads = [make_lead(store, email=f"lead{n}@example.com") for n in range(count)]
    outbox.enqueue_many([(Due(lead.id or 0, 0, 0, CONFIRMATION, None), []) for lead in leads], T0)
    return outbox.claim(count, T0, 600)


def log_of(store: Store, outbox: Outbox) -> Path:
    folder = resultlog.folder_for(store.url)
    assert folder is not None
    return resultlog.path_for(folder, outbox.worker)


def write(path: Path, outbox: Outbox, settings: Settings, results: list[Result],
          close: bool = True) -> ResultLog[Result]:
    async def logged() -> ResultLog[Result]:
        log: ResultLog[Result] = ResultLog(path, outbox.worker, T0,
                                           lambda result: outbox.log_record(result, T0, settings.delivery))
        await asyncio.gather(*(log.committed(log.add(result)) for result in results))
        if close:
            log.close()
        return log

    return asyncio.run(logged())


def sent(send: ClaimedSend) -> Result:
    return Result(send, SendState.SENT, None, datetime.now(UTC))


def states(store: Store, sends: list[ClaimedSend]) -> list[SendState]:
    return [store.sends_of(send.lead_id)[0].state for send in sends]


def test_logs_live_beside_a_sqlite_file_only() -> None:
    assert resultlog.folder_for("sqlite:////data/nurture.db") == Path("/data/nurture.db-results")
    assert resultlog.folder_for("sqlite://") is None
    assert resultlog.folder_for("sqlite:///:memory:") is None
    assert resultlog.folder_for("postgresql+psycopg://127.0.0.1/test") is None


def test_a_log_holds_its_header_then_a_line_a_result(store: Store, settings: Settings) -> None:
    outbox = Outbox(store)
    sends = claimed(store, outbox, 3)
    path = log_of(store, outbox)
    write(path, outbox, settings, [sent(send) for send in sends])
    chunk = resultlog.read(path)
    assert chunk.header == {"format": resultlog.FORMAT, "worker": outbox.worker, "now": T0.isoformat()}
    assert [record["send_id"] for _, record in chunk.records] == [send.id for send in sends]
    assert {record["state"] for _, record in chunk.records} == {"sent"}
    assert chunk.records[0][0] == len(path.read_bytes().splitlines(keepends=True)[0])  # where each starts
    assert chunk.end == path.stat().st_size
    assert resultlog.read(path, chunk.end).records == []
    assert [file.name for file in path.parent.iterdir()] == [path.name]  # locked under another name, then linked


def test_a_log_of_the_first_format_stores_what_its_messages_carried(store: Store, settings: Settings) -> None:
    """Written by a version that stored a message's Message-ID, subject and links with its result."""
    outbox = Outbox(store)
    [send] = claimed(store, outbox, 1)
    path = log_of(store, outbox)
    path.parent.mkdir(parents=True, exist_ok=True)
    links = [{"url": "https://example.com/a", "action": "content", "tag": None, "points": None}]
    path.write_bytes(resultlog._line({"worker": outbox.worker, "now": T0.isoformat()}) + resultlog._line(
        {"send_id": send.id, "lead_id": send.lead_id, "step": 0, "state": "sent", "attempts": 1, "error": None,
         "sent_at": T0.isoformat(), "retry_at": None, "message_id": "<send.1@example.com>", "subject": "Welcome",
         "links": links}))
    assert outbox.apply_log(path, settings.scoring) == 1
    stored = store.sends_of(send.lead_id)[0]
    assert (stored.state, stored.message_id, stored.subject, stored.links) == (
        SendState.SENT, "<send.1@example.com>", "Welcome", links)


def test_a_log_without_a_format_whose_records_carry_only_results_is_read(store: Store, settings: Settings) -> None:
    """Written by a version that stored what a message carried when it built it, before logs named a format."""
    outbox = Outbox(store)
    [send] = claimed(store, outbox, 1)
    path = log_of(store, outbox)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(resultlog._line({"worker": outbox.worker, "now": T0.isoformat()}) + resultlog._line(
        {"send_id": send.id, "lead_id": send.lead_id, "step": 0, "state": "sent", "attempts": 1, "error": None,
         "sent_at": T0.isoformat(), "retry_at": None}))
    assert outbox.apply_log(path, settings.scoring) == 1
    assert states(store, [send]) == [SendState.SENT]


def test_a_log_of_an_unknown_format_is_not_read(store: Store, settings: Settings) -> None:
    outbox = Outbox(store)
    sends = claimed(store, outbox, 1)
    path = log_of(store, outbox)
    path.parent.mkdir(parents=True, exist_ok=True)
    for written in (9, True, "2"):
        path.write_bytes(resultlog._line({"format": written, "worker": outbox.worker, "now": T0.isoformat()}) +
                         resultlog._line({"send_id": sends[0].id}))
        with pytest.raises(BrokenLog, match=f"written in format {written!r}"):
            outbox.apply_log(path, settings.scoring)
    assert states(store, sends) == [SendState.SENDING]


def test_a_line_cut_short_is_read_once_it_is_whole(store: Store, settings: Settings) -> None:
    outbox = Outbox(store)
    sends = claimed(store, outbox, 2)
    path = log_of(store, outbox)
    write(path, outbox, settings, [sent(sends[0])])
    whole = resultlog.read(path)
    line = outbox.log_record(sent(sends[1]), T0, settings.delivery)
    encoded = resultlog._line(line)
    with open(path, "ab") as file:
        file.write(encoded[:20])  # a line being written while the builder reads
    assert resultlog.read(path).records == whole.records
    assert resultlog.read(path).end == whole.end
    with open(path, "ab") as file:
        file.write(encoded[20:])
    assert [record["send_id"] for _, record in resultlog.read(path, whole.end).records] == [sends[1].id]


@pytest.mark.parametrize(("line", "problem"), [
    (b"{not json", "not a JSON line"),
    (b'{"send_id": 1, "lead_id": 1, "step": 0, "state": "sent", "sent_at": null, "retry_at": null}',
     "a record lacks 'attempts'"),
    (b'{"send_id": "1", "lead_id": 1, "step": 0, "state": "sent", "attempts": 1, "error": null, "sent_at": null,'
     b' "retry_at": null}', "'send_id' is a str"),
    (b'{"send_id": 1, "lead_id": 1, "step": 0, "state": "sending", "attempts": 1, "error": null, "sent_at": null,'
     b' "retry_at": null}', "no result leaves a send sending"),
    (b'{"send_id": 1, "lead_id": 1, "step": 0, "state": "sent", "attempts": 1, "error": null, "sent_at": "today",'
     b' "retry_at": null}', "Invalid isoformat string"),
])
def test_a_line_that_is_not_a_result_names_the_file_and_the_byte(store: Store, settings: Settings, line: bytes,
                                                                  problem: str) -> None:
    outbox = Outbox(store)
    sends = claimed(store, outbox, 1)
    path = log_of(store, outbox)
    write(path, outbox, settings, [sent(sends[0])])
    at = path.stat().st_size
    with open(path, "ab") as file:
        file.write(line + b"\n")
    with pytest.raises(BrokenLog, match=rf"{path.name}: byte {at}: {problem}"):
        outbox.apply_log(path, settings.scoring)
    assert states(store, sends) == [SendState.SENDING]  # nothing of a broken group is stored


def test_a_log_shorter_than_what_was_stored_of_it_is_broken(store: Store, settings: Settings) -> None:
    outbox = Outbox(store)
    sends = claimed(store, outbox, 2)
    path = log_of(store, outbox)
    write(path, outbox, settings, [sent(send) for send in sends])
    outbox.apply_log(path, settings.scoring)
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 10)  # replaced, or cut by hand
    with pytest.raises(BrokenLog, match="bytes of it were stored, but it holds"):
        outbox.apply_log(path, settings.scoring)


def test_a_log_is_stored_once_however_often_it_is_applied(store: Store, settings: Settings) -> None:
    outbox = Outbox(store)
    sends = claimed(store, outbox, 3)
    path = log_of(store, outbox)
    log = write(path, outbox, settings, [sent(send) for send in sends[:2]], close=False)
    assert outbox.apply_log(path, settings.scoring) == 2
    assert states(store, sends) == [SendState.SENT, SendState.SENT, SendState.SENDING]
    assert outbox.apply_log(path, settings.scoring) == 0
    with store.session() as session:
        assert session.get(ResultLogMark, path.name).applied == path.stat().st_size  # type: ignore[union-attr]

    async def one_more() -> None:
        await log.committed(log.add(sent(sends[2])))

    asyncio.run(one_more())
    log.close()
    assert outbox.apply_log(path, settings.scoring) == 1
    assert states(store, sends) == [SendState.SENT] * 3
    stored = store.sends_of(sends[0].lead_id)[0]
    assert (stored.attempts, stored.error, stored.claimed_by) == (1, None, None)
    assert stored.sent_at is not None
    outbox.conclude_log(path, settings.scoring)
    assert not path.exists()
    with store.session() as session:
        assert session.get(ResultLogMark, path.name) is None


def test_a_log_is_taken_over_only_once_its_run_lets_it_go(store: Store, settings: Settings) -> None:
    outbox = Outbox(store)
    path = log_of(store, outbox)
    log = write(path, outbox, settings, [], close=False)
    with resultlog.abandoned(path) as free:
        assert not free  # held by its run, here in this very process
    with pytest.raises(FileExistsError):  # and no second run may write it
        ResultLog(path, outbox.worker, T0, lambda result: {})
    log.close()
    with resultlog.abandoned(path) as free:
        assert free
    path.unlink()
    with resultlog.abandoned(path) as free:
        assert not free  # another process took it over and removed it


def test_the_next_run_stores_an_ended_runs_log_then_gives_back_its_other_claims(store: Store,
                                                                                 settings: Settings) -> None:
    """The run ended without storing its log (its database went away at the end, say); its process
    lives on (`nurture run`), so only the log tells that the run is over."""
    ended = Outbox(store)
    sends = claimed(store, ended, 3)
    path = log_of(store, ended)
    write(path, ended, settings, [sent(send) for send in sends[:2]])
    assert Outbox(store).reclaim_orphans(settings.scoring) == 1
    assert states(store, sends) == [SendState.SENT, SendState.SENT, SendState.QUEUED]
    assert not path.exists()


def test_a_run_still_writing_its_log_keeps_its_claims(store: Store, settings: Settings) -> None:
    running = Outbox(store)
    sends = claimed(store, running, 2)
    path = log_of(store, running)
    log = write(path, running, settings, [sent(sends[0])], close=False)
    try:
        assert Outbox(store).reclaim_orphans(settings.scoring) == 0
        assert states(store, sends) == [SendState.SENDING, SendState.SENDING]
        assert path.exists()
    finally:
        log.close()


def test_a_write_that_fails_fails_every_result_of_its_group(store: Store, settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = Outbox(store)
    sends = claimed(store, outbox, 3)
    path = log_of(store, outbox)
    log = write(path, outbox, settings, [], close=False)
    before = path.stat().st_size

    def full(fd: int, data: bytes) -> int:  # a part of the group fits, then the disk is full
        monkeypatch.setattr(resultlog.os, "write", no_room)
        return os.write(fd, bytes(data[:25]))

    def no_room(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    async def group() -> list[BaseException | None]:
        futures = [log.add(sent(send)) for send in sends]
        monkeypatch.setattr(resultlog.os, "write", full)
        return await asyncio.gather(*(log.committed(future) for future in futures), return_exceptions=True)

    outcomes = asyncio.run(group())
    assert all(isinstance(outcome, OSError) and outcome.errno == errno.ENOSPC for outcome in outcomes)
    assert path.stat().st_size == before  # cut back to its last whole line
    monkeypatch.setattr(resultlog.os, "write", os.write)

    async def later() -> None:  # room again, but a log with a hole in it would lie: it takes nothing more
        await log.committed(log.add(sent(sends[0])))

    with pytest.raises(OSError, match="No space left"):
        asyncio.run(later())
    log.close()
    assert path.stat().st_size == before
    assert resultlog.read(path).records == []


def test_a_run_whose_log_and_database_both_fail_tells_the_first_failure_and_leaves_its_log(
        engine: Engine, mailer: MemoryMailer, monkeypatch: pytest.MonkeyPatch) -> None:
    leads = [make_lead(engine.store, email=f"lead{n:02}@example.com") for n in range(12)]
    write, conclude_log = ResultLog._write, Outbox.conclude_log
    groups = 0

    def full_after_two(self: ResultLog[Result], data: bytes) -> None:
        nonlocal groups
        groups += 1
        if groups > 3:  # the header, then two groups
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, data)

    def gone(*args: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(ResultLog, "_write", full_after_two)
    monkeypatch.setattr(Outbox, "conclude_log", gone)  # the end of the run cannot store the log either
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(engine.send_due(T0))
    folder = resultlog.folder_for(engine.store.url)
    assert folder is not None and len(resultlog.logs(folder)) == 1  # kept, with what it holds, for the next run
    assert Outbox(engine.store).counts().get(SendState.SENDING)  # the claims stay with the log
    monkeypatch.setattr(ResultLog, "_write", write)
    monkeypatch.setattr(Outbox, "conclude_log", conclude_log)
    asyncio.run(engine.send_due(T0))
    assert Outbox(engine.store).counts() == {SendState.SENT: len(leads)}
    assert resultlog.logs(folder) == []
    assert len(mailer.sent) - len(leads) <= engine.settings.smtp.concurrency
