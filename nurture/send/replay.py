"""Replaying a run's result log (nurture.send.resultlog) into the outbox table: a batch at a time while
the run goes, the rest at its end, and the log of a run that died at the next run on its host. How much
of a log was applied is stored with what it applied, so no result is applied twice."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.dialects import sqlite
from sqlmodel import select

from nurture.models import ResultLogMark, SendState
from nurture.send import resultlog
from nurture.send.results import Finished, Result, Results
from nurture.settings import Delivery, Scoring

_MARKS = ResultLogMark.__table__  # type: ignore[attr-defined]


class Replay(Results):
    """The outbox's part that reads and applies result logs."""

    def log_record(self, result: Result, now: datetime, policy: Delivery) -> resultlog.Record:
        """A result as a run's log holds it (nurture.send.resultlog): the row without the claim it ends."""
        finished = self.finished(result, now, policy)
        row = {key: value for key, value in finished.row.items() if key not in _CLAIM}
        return {"lead_id": finished.lead_id, "step": finished.step, **row}

    def apply_log(self, path: Path, rules: Scoring) -> int:
        """Store what the log at `path` holds past what was applied before; return how many results."""
        with self.store.engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, so the mark read is the mark
            applied = connection.execute(select(_MARKS.c.applied).where(_MARKS.c.log == path.name)).scalar()
            chunk = resultlog.read(path, applied or 0)
            if not chunk.records:
                return 0
            worker, now, first = _from_header(path, chunk.header)
            described = first and all(key in chunk.records[0][1] for key in _DESCRIBED)  # see _from_header
            sends: list[Finished] = []
            for at, record in chunk.records:
                try:
                    sends.append(_from_record(record, worker, described))
                except ValueError as error:
                    raise resultlog.BrokenLog(f"{path}: byte {at}: {error}") from None
            self.write_in(connection, sends, now, rules)
            mark = sqlite.insert(_MARKS).values(log=path.name, applied=chunk.end)
            connection.execute(mark.on_conflict_do_update(index_elements=["log"], set_={"applied": chunk.end}))
        return len(sends)

    def conclude_log(self, path: Path, rules: Scoring) -> str:
        """Store the rest of a log no run writes any more, then remove it and its mark; return its worker."""
        self.apply_log(path, rules)
        worker = str(resultlog.read_header(path).get("worker", ""))
        path.unlink(missing_ok=True)  # first: a log without its mark would be applied again from the start
        with self.store.engine.begin() as connection:
            connection.execute(delete(_MARKS).where(_MARKS.c.log == path.name))
        return worker

    def conclude_abandoned(self, rules: Scoring) -> set[str]:
        """Store and remove the logs of runs on this host that ended or died; return their workers."""
        folder = resultlog.folder_for(self.store.url)
        over = set()
        for path in resultlog.logs(folder) if folder else []:
            with resultlog.abandoned(path) as free:
                if free:
                    over.add(self.conclude_log(path, rules))
        return over


_CLAIM = ("worker", "claimed_by", "claimed_at")  # what HELD sets or checks of the claim, not of the result
_LOGGED = {"send_id": (int,), "lead_id": (int,), "step": (int,), "state": (str,), "attempts": (int,),
           "error": (str, type(None)), "sent_at": (str, type(None)),
           "retry_at": (str, type(None))}  # what a record holds, of what kinds
_DESCRIBED = {"message_id": (str,), "subject": (str,), "links": (list,)}  # in format 1 only
_RESULTS = {SendState.SENT, SendState.DEFERRED, SendState.FAILED, SendState.BOUNCED, SendState.QUEUED}


def _from_header(path: Path, header: resultlog.Record) -> tuple[str, datetime, bool]:
    """The worker and time of a log, and whether it is of the first format (no "format" in its header),
    whose records carry what their messages carried, unless the version that wrote it stored that when
    it built them (as this one does)."""
    written = header.get("format", 1)
    if type(written) is not int or written not in (1, resultlog.FORMAT):
        raise resultlog.BrokenLog(f"{path}: written in format {written!r}, which this version does not read")
    try:
        return str(header["worker"]), datetime.fromisoformat(header["now"]), written == 1
    except (KeyError, TypeError, ValueError) as error:
        raise resultlog.BrokenLog(f"{path}: its header names no worker and time: {error}") from None


def _from_record(record: resultlog.Record, worker: str, described: bool = False) -> Finished:
    """A logged result as HELD stores it, with what its message carried where the record holds that
    (`described`: format 1); ValueError naming what is missing or wrong."""
    for key, kinds in (_LOGGED | _DESCRIBED).items() if described else _LOGGED.items():
        if key not in record:
            raise ValueError(f"a record lacks {key!r}")
        if type(record[key]) not in kinds:
            raise ValueError(f"{key!r} is a {type(record[key]).__name__}")
    state = SendState(record["state"])
    if state not in _RESULTS:
        raise ValueError(f"no result leaves a send {state.value}")
    row = {"send_id": record["send_id"], "worker": worker, "state": state, "attempts": record["attempts"],
           "error": record["error"], "claimed_by": None, "claimed_at": None, "sent_at": _time(record["sent_at"]),
           "retry_at": _time(record["retry_at"])}
    if described:
        row.update({key: record[key] for key in _DESCRIBED})
    return Finished(row, record["lead_id"], record["step"])


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


