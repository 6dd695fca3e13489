"""The journal: hits stored in group commits before they are answered, whatever holds the database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from nurture.engine import Engine
from nurture.store import Store
from nurture.track.journal import Arrival, Journal
from tests.conftest import make_lead

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def opened(send_id: int) -> Arrival:
    return Arrival("open", send_id, None, "GET", BROWSER, "192.0.2.7", time.time())


def stored(store: Store) -> int:
    return store.pending_hits()


def test_concurrent_hits_share_a_commit_and_each_is_stored(store: Store) -> None:
    journal = Journal(store)
    writes: list[int] = []
    write = journal.write
    journal.write = lambda arrivals: writes.append(len(arrivals)) or write(arrivals)  # type: ignore[method-assign]

    async def hits() -> None:
        await asyncio.gather(*(journal.put(opened(n)) for n in range(200)))

    asyncio.run(hits())
    assert stored(store) == 200
    assert sum(writes) == 200 and len(writes) < 20, writes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("kind", ["open", "click"])
@pytest.mark.parametrize("held", ["nurture.db", "nurture.db-hits"])
def test_a_held_write_lock_never_stalls_the_server(engine: Engine, tmp_path: Path, kind: str, held: str) -> None:
    """A judge's transaction on the database does not hold a hit up at all (the journal is a file of its
    own, links are read without a lock); while the journal itself is locked (a judge forgetting judged
    hits), the hit waits and the event loop goes on."""
    make_lead(engine.store)
    asyncio.run(engine.send_due(datetime.now(UTC)))
    send_id = engine.store.sends_of(1)[0].id or 0
    hit = Arrival(kind, send_id, 1 if kind == "click" else None, "GET", BROWSER, None, time.time())
    holder = sqlite3.connect(tmp_path / held, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, holder.execute, ["COMMIT"]).start()
    journal = Journal(engine.store)

    async def scene() -> tuple[float, int, str | None]:
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        clock = asyncio.create_task(ticking())
        started = time.monotonic()
        url = await journal.put(hit)
        clock.cancel()
        return time.monotonic() - started, ticks, url

    waited, ticks, url = asyncio.run(scene())
    time.sleep(0.35)
    holder.close()
    if held == "nurture.db":
        assert waited < 0.2, "a judge's transaction holds no hit up"
    else:
        assert waited >= 0.25, "the hit is answered only once stored"
        assert ticks >= 10, "the loop served others while the hit waited"
    assert stored(engine.store) == 1
    assert (url is not None) == (kind == "click")


def test_a_failed_write_is_tried_again(store: Store) -> None:
    journal = Journal(store)
    write = journal.write
    failures = iter([OperationalError("INSERT", {}, Exception("disk I/O error"))])

    def flaky(arrivals: list[Arrival]) -> list[str | None]:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return write(arrivals)

    journal.write = flaky  # type: ignore[assignment]
    asyncio.run(journal.put(opened(1)))
    assert stored(store) == 1


def test_a_write_that_keeps_failing_fails_its_hits(store: Store) -> None:
    journal = Journal(store)

    def broken(arrivals: list[Arrival]) -> list[str | None]:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    journal.write = broken  # type: ignore[assignment]
    with pytest.raises(OperationalError):
        asyncio.run(journal.put(opened(1)))
    assert stored(store) == 0
