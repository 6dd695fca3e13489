"""A delivery run's results, logged to a file of the run's own before they reach the outbox table (SQLite).

On SQLite one connection at a time may write, and a transaction costs a commit however small it is. A
sender that stored each group of results itself (a few messages: no more than `concurrency` may be out
but unrecorded) spent a fifth of its time on it, on its event loop, and fought the builder for the
lock. Instead it appends each group to its log: one write(2), after which the results outlive a killed
process as a committed transaction does under `synchronous=NORMAL` (neither waits for the disk).

The log reaches the outbox table in large groups (Outbox.apply_log): before each claim of the run's
builder, at the end of the run, and, after a crash, at the start of the next run on this host, before
the dead run's claims are given back. How much of a log has been applied is stored with the results
it applied, in one transaction: no result is applied twice.

A run holds an exclusive lock (flock) on its log from before the file appears under its name until the
run has stored it: a log nobody holds belongs to a run that ended or died. The file holds JSON lines:
first a header (the worker, the run's time), then one line per result. A write that fails (a full
disk) is cut back to the last whole line, and the run stops. A power cut may lose the last lines, as it
may lose SQLite's last commits under `synchronous=NORMAL`: those messages go out again.

What it buys (`python scripts/bench_send.py --without result-log`, 5,000 confirmations, medians of 5
interleaved rounds on 2 cores): 0.85x the raw blast with the log, 0.77x with group commits to SQLite
(1,250 against 973 emails/s).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from sqlalchemy.engine import make_url

try:
    import fcntl
except ImportError:  # Windows: results are written to the database directly
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
Record = dict[str, Any]
FORMAT = 2  # of the records; in format 1 (no "format" in the header) they also held what the message carried


class BrokenLog(ValueError):
    """A result log that cannot be read: it names the file and the byte where it breaks."""


def folder_for(url: str) -> Path | None:
    """Where the runs on a SQLite database file keep their logs; None where results go to the database
    directly (PostgreSQL, whose workers may be on other hosts; an in-memory database; no flock)."""
    parsed = make_url(url)
    if fcntl is None or parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(f"{parsed.database}-results")


def path_for(folder: Path, worker: str) -> Path:
    return folder / f"{quote(worker, safe='')}.log"


class ResultLog(Generic[T]):
    """The sender's end of a log, taking results as GroupCommit does: `add` one, then `committed` to have it
    (and every result added before it) written. `encode` makes a result its record."""

    def __init__(self, path: Path, worker: str, now: datetime, encode: Callable[[T], Record]):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.encode = encode
        self.pending: list[bytes] = []
        self.waiting: list[asyncio.Future[None]] = []
        self.size = 0  # bytes of whole lines written
        self.broken: OSError | None = None  # a write failed: the log takes no more
        fresh = path.with_name(path.name + ".new")  # locked before it is a log that another run could take
        self.fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._write(_line({"format": FORMAT, "worker": worker, "now": now.isoformat()}))
            os.link(fresh, path)  # never over another run's log (FileExistsError)
        except BaseException:
            os.close(self.fd)
            raise
        finally:
            fresh.unlink(missing_ok=True)

    def add(self, item: T) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(_line(self.encode(item)))
        self.waiting.append(future)
        return future

    async def committed(self, future: asyncio.Future[None]) -> None:
        """Write what was added, unless `future`'s result is written already; raise if that write failed."""
        if not future.done():
            self.flush()
        await future

    def flush(self) -> None:
        lines, waiting, self.pending, self.waiting = self.pending, self.waiting, [], []
        try:
            self._write(b"".join(lines))
        except OSError as error:  # a full disk, say: every result of the group is unrecorded
            for future in waiting:
                if not future.done():
                    future.set_exception(error)
            return
        for future in waiting:
            if not future.done():  # a waiter may have been cancelled meanwhile
                future.set_result(None)

    def _write(self, data: bytes) -> None:
        """Append whole lines; on failure cut the file back to its last whole line and take no more."""
        if self.broken is not None:
            raise self.broken
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as error:
            self.broken = error
            os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def close(self) -> None:
        """Write what is left and let the log go (its lock with it)."""
        if self.pending and self.broken is None:
            self.flush()
        os.close(self.fd)


@dataclass(frozen=True)
class Chunk:
    """What a log holds past a point: its header, the complete records (each with the byte it starts
    at), and where they end."""

    header: Record
    records: list[tuple[int, Record]]
    end: int


def read(path: Path, offset: int = 0) -> Chunk:
    """The complete records of the log at `path` from byte `offset` (0: the first record)."""
    with open(path, "rb") as file:
        first = file.readline()
        if not first.endswith(b"\n"):
            return Chunk({}, [], 0)  # a run that died writing its header sent nothing
        header = _parse(path, first, 0)
        start = max(offset, len(first))
        size = file.seek(0, os.SEEK_END)
        if start > size:
            raise BrokenLog(f"{path}: {start} bytes of it were stored, but it holds {size}")
        file.seek(start)
        data = file.read()
    complete = data[: data.rfind(b"\n") + 1]
    records, at = [], start
    for line in complete.splitlines(keepends=True):
        records.append((at, _parse(path, line, at)))
        at += len(line)
    return Chunk(header, records, start + len(complete))


def read_header(path: Path) -> Record:
    """The log's header; empty when the run died writing it."""
    with open(path, "rb") as file:
        first = file.readline()
    return _parse(path, first, 0) if first.endswith(b"\n") else {}


def logs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.log")) if folder.is_dir() else []


@contextmanager
def abandoned(path: Path) -> Iterator[bool]:
    """Whether no run holds the log at `path` (it ended or died); while True, this process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # another process took it and removed it
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield _same_file(fd, path)  # not removed, by whoever held it, while this process waited to lock it
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _encode_time(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"a result log holds no {type(value).__name__}")


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_encode_time)  # made once: json.dumps makes one a call


def _line(record: Record) -> bytes:
    return _ENCODER.encode(record).encode() + b"\n"


def _parse(path: Path, line: bytes, at: int) -> Record:
    try:
        record = json.loads(line)
    except ValueError as error:
        raise BrokenLog(f"{path}: byte {at}: not a JSON line: {error}") from None
    if not isinstance(record, dict):
        raise BrokenLog(f"{path}: byte {at}: a record is a JSON object, not {type(record).__name__}")
    return record
