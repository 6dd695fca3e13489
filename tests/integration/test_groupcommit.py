"""Group commits: many waiters, one transaction; and a writer on the event loop that waits for SQLite's
lock without blocking the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from nurture.store import Store
from nurture.store.groupcommit import GroupCommit

T = TypeVar("T")


class Writer:
    """A write that can be held at a gate, fails for groups holding `poison`, and records what it stored."""

    def __init__(self, poison: object = None, gated: bool = False):
        self.poison = poison
        self.calls: list[list[object]] = []
        self.written: set[object] = set()
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, items: Sequence[object]) -> None:
        with self.lock:
            self.calls.append(list(items))
        self.started.set()
        assert self.gate.wait(5), "the test never opened the gate"
        time.sleep(0.005)  # a write takes a moment
        if self.poison is not None and self.poison in items:
            raise RuntimeError(f"cannot store {self.poison}")
        with self.lock:
            self.written.update(items)


async def hold_first_write(commit: GroupCommit[object, None], writer: Writer, first: object,
                           later: Sequence[object], outcomes: dict[object, object]) -> None:
    """Put `first`; while its write is held at the gate put `later`; then let the writes go."""

    async def put(item: object) -> None:
        try:
            await commit.put(item)
            outcomes[item] = item in writer.written  # True: it returned only once its item was stored
        except RuntimeError as error:
            outcomes[item] = error

    tasks = [asyncio.create_task(put(first))]
    assert await asyncio.to_thread(writer.started.wait, 5)
    tasks += [asyncio.create_task(put(item)) for item in later]
    await asyncio.sleep(0.02)
    assert outcomes == {}, "a put returned before its write was done"
    writer.gate.set()
    await asyncio.gather(*tasks)


@pytest.mark.timeout(10)
def test_group_commit_groups_the_puts_that_arrive_during_a_write() -> None:
    writer = Writer(gated=True)
    outcomes: dict[object, object] = {}

    async def main() -> None:
        commit: GroupCommit[object, None] = GroupCommit(writer)
        await hold_first_write(commit, writer, "first", list(range(10)), outcomes)

    asyncio.run(main())
    assert writer.calls == [["first"], list(range(10))]  # eleven puts, two writes
    assert outcomes == {item: True for item in ["first", *range(10)]}


@pytest.mark.timeout(10)
def test_group_commit_writes_each_item_once_and_in_order() -> None:
    writer = Writer()

    async def main() -> None:
        commit: GroupCommit[object, None] = GroupCommit(writer)
        await asyncio.gather(*(commit.put(n) for n in range(50)))
        await commit.put(50)  # after the group is drained, a new one starts

    asyncio.run(main())
    assert [item for call in writer.calls for item in call] == list(range(51))
    assert len(writer.calls) < 10
    assert writer.calls[-1] == [50]


@pytest.mark.timeout(10)
def test_a_failing_write_raises_in_every_waiter_of_its_group() -> None:
    writer = Writer(poison="bad", gated=True)
    outcomes: dict[object, object] = {}

    async def main() -> None:
        commit: GroupCommit[object, None] = GroupCommit(writer)
        await hold_first_write(commit, writer, "a", ["b", "bad", "c"], outcomes)
        await commit.put("d")  # the commit goes on working after a failed group

    asyncio.run(main())
    assert writer.calls == [["a"], ["b", "bad", "c"], ["d"]]
    assert outcomes["a"] is True
    for item in ("b", "bad", "c"):
        assert isinstance(outcomes[item], RuntimeError), item
        assert "cannot store bad" in str(outcomes[item])
    assert writer.written == {"a", "d"}


def test_a_cancelled_waiter_does_not_strand_the_rest_of_its_group() -> None:
    async def scenario() -> list[object]:
        def write(items):  # type: ignore[no-untyped-def]
            return [f"ok {item}" for item in items]

        commit: GroupCommit[int, str] = GroupCommit(write, on_loop=True)
        first = asyncio.ensure_future(commit.put(1))
        second = asyncio.ensure_future(commit.put(2))
        await asyncio.sleep(0)  # both are waiting on the group now
        first.cancel()
        return [await asyncio.wait_for(second, 2)]

    assert asyncio.run(scenario()) == ["ok 2"]


@pytest.mark.timeout(10)
def test_added_items_wait_for_a_settle_and_then_go_in_one_write() -> None:
    writer = Writer()

    async def main() -> None:
        commit: GroupCommit[object, None] = GroupCommit(writer, on_loop=True)
        futures = [commit.add(n) for n in range(4)]
        await asyncio.sleep(0.01)
        assert writer.calls == []  # added, not written
        await commit.committed(futures[1])
        assert all(future.done() for future in futures)
        await commit.committed(futures[3])  # already committed: no second write

    asyncio.run(main())
    assert writer.calls == [[0, 1, 2, 3]]


# a writer on the event loop, and SQLite's lock


@pytest.fixture
def local(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'local.db'}")
    store.create()
    with store.engine.begin() as connection:
        connection.execute(text("CREATE TABLE tally (n INTEGER)"))
    return store


def hold_lock(path: Path, seconds: float) -> threading.Thread:
    """Another process's writer, in effect: it holds SQLite's write lock for `seconds`."""
    taken = threading.Event()

    def holder() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        connection.execute("COMMIT")
        connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(5)
    return thread


def tally(store: Store) -> list[int]:
    with store.engine.connect() as connection:
        return [n for (n,) in connection.execute(text("SELECT n FROM tally ORDER BY n"))]


def loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def run_on(loop: str, main: Coroutine[Any, Any, T]) -> T:
    if loop == "asyncio":
        return asyncio.run(main)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("loop", loops())
def test_a_write_on_the_loop_waits_for_the_lock_while_the_loop_runs(local: Store, tmp_path: Path, loop: str) -> None:
    tries = 0

    async def main() -> tuple[float, float, float]:
        with local.connection(on_loop=True) as connection:

            def write(items: Sequence[int]) -> None:
                nonlocal tries
                tries += 1
                with connection.begin():
                    connection.execute(text("INSERT INTO tally VALUES (:n)"), [{"n": n} for n in items])

            commit: GroupCommit[int, None] = GroupCommit(write, on_loop=True)
            gaps, last = [0.0], time.monotonic()
            stop = asyncio.Event()

            async def heartbeat() -> None:
                nonlocal last
                while not stop.is_set():
                    await asyncio.sleep(0.005)
                    gaps.append(time.monotonic() - last)
                    last = time.monotonic()

            beating = asyncio.create_task(heartbeat())
            holder = hold_lock(tmp_path / "local.db", 0.4)
            started = time.monotonic()
            await asyncio.gather(*(commit.put(n) for n in range(5)))
            waited = time.monotonic() - started
            stop.set()
            await beating
            await asyncio.to_thread(holder.join)
            return waited, max(gaps), len(gaps)

    waited, longest_gap, beats = run_on(loop, main())
    assert tally(local) == [0, 1, 2, 3, 4]
    assert waited >= 0.3  # the puts returned only once the lock was free and their rows stored
    assert longest_gap < 0.2 and beats > 20  # the loop went on meanwhile (SQLite's own wait blocks it 0.4 s)
    assert tries < 200  # it waited between tries: 0.4 s at 5 ms is 80 (a loop that ignores short sleeps spins)


@pytest.mark.timeout(20)
def test_a_write_gives_up_once_the_lock_wait_is_over(local: Store, tmp_path: Path) -> None:
    async def main() -> None:
        with local.connection(on_loop=True) as connection:

            def write(items: Sequence[int]) -> None:
                with connection.begin():
                    connection.execute(text("INSERT INTO tally VALUES (:n)"), [{"n": n} for n in items])

            commit: GroupCommit[int, None] = GroupCommit(write, on_loop=True, lock_wait=0.1)
            holder = hold_lock(tmp_path / "local.db", 1.0)
            try:
                with pytest.raises(OperationalError, match="database is locked"):
                    await commit.put(1)
            finally:
                await asyncio.to_thread(holder.join)
            await commit.put(2)  # and works again once the lock is free

    asyncio.run(main())
    assert tally(local) == [2]


@pytest.mark.parametrize(("attempts", "stored"), [(1, False), (3, True)])
def test_other_failures_are_tried_again_attempts_times(attempts: int, stored: bool) -> None:
    failures = iter([OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))] * 2)
    written: list[int] = []

    def write(items: Sequence[int]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        written.extend(items)

    async def main() -> None:
        await GroupCommit(write, on_loop=True, attempts=attempts).put(7)

    if stored:
        asyncio.run(main())
        assert written == [7]
    else:
        with pytest.raises(OperationalError, match="disk I/O error"):
            asyncio.run(main())
        assert written == []


def pragmas(connection: Connection) -> tuple[int, int]:
    driver = connection.connection.driver_connection
    assert driver is not None
    busy, checkpoint = (driver.execute(f"PRAGMA {name}").fetchone()[0] for name in ("busy_timeout",
                                                                                   "wal_autocheckpoint"))
    return busy, checkpoint


def test_an_on_loop_connection_neither_waits_nor_checkpoints_even_after_a_reconnect(local: Store) -> None:
    with local.connection(on_loop=True) as connection:
        assert pragmas(connection) == (0, 0)
        connection.invalidate()  # as after a lost connection: the next use opens a new one
        connection.execute(text("SELECT 1"))
        assert pragmas(connection) == (0, 0)
    with local.connection() as connection, local.engine.connect() as pooled:
        assert pragmas(connection) == pragmas(pooled) == (30_000, 1000)  # everyone else waits, and checkpoints


def test_a_coroutine_writes_on_the_loop_and_items_that_come_meanwhile_form_the_next_group() -> None:
    """An async driver's write (a delivery run's results on PostgreSQL) is awaited on the event loop itself."""
    groups: list[list[int]] = []
    threads: set[threading.Thread] = set()

    async def write(items: Sequence[int]) -> None:
        threads.add(threading.current_thread())
        groups.append(list(items))
        await asyncio.sleep(0.01)  # the database answering

    async def main() -> None:
        committer: GroupCommit[int, None] = GroupCommit(write)
        first = asyncio.create_task(committer.put(0))
        await asyncio.sleep(0.001)  # the first group is being written
        await asyncio.gather(first, *(committer.put(n) for n in range(1, 5)))

    asyncio.run(main())
    assert threads == {threading.main_thread()}
    assert groups == [[0], [1, 2, 3, 4]]


def test_a_connection_of_the_loop_is_psycopgs_async_one(postgres_skip_reason: str | None) -> None:
    """Store.loop_connection, where a delivery run on PostgreSQL writes its results: awaited on the loop."""
    if postgres_skip_reason:
        pytest.skip(postgres_skip_reason)
    from tests.conftest import postgres_schema

    with postgres_schema() as url:
        store = Store(url)

        async def ask() -> tuple[int, str]:
            async with store.loop_connection() as connection:
                cursor = await connection.execute("select 41 + 1, current_schema()")
                answer, schema = await cursor.fetchone()
                return int(answer), str(schema)

        try:
            assert asyncio.run(ask()) == (42, url.rpartition("%3D")[2])  # the store's own options, its schema
        finally:
            store.close()
