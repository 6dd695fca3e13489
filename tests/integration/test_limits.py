"""Limits every process shares through the database: the pace of delivery and windows of requests.

The pacer's clock and sleep are fakes (but for one test), its slots the store's; the processes that
share them are in tests/system/test_shared_limits.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlmodel import select

from nurture.models import RequestWindow
from nurture.send.policy import Pacer, TakeSlot
from nurture.store import Store

T = TypeVar("T")


class FakeClock:
    """A clock that only moves when the fake sleep says so."""

    def __init__(self, now: float = 100.0):
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        start = self.now
        await asyncio.sleep(0)  # let other waiters run in between, as a real sleep would
        self.now = max(self.now, start + seconds)


def stored_slots(store: Store, stream: str = "delivery") -> TakeSlot:
    async def take(interval: float, now: float) -> float:
        return store.take_slot(stream, interval, now)

    return take


# the pace of delivery


def test_pacer_spaces_messages_at_the_per_second_rate(store: Store) -> None:
    clock = FakeClock()

    async def main() -> list[float]:
        pacer = Pacer(4, None, stored_slots(store), clock=clock, sleep=clock.sleep)
        started = []
        for _ in range(5):
            await pacer.wait()
            started.append(clock())
        return started

    started = asyncio.run(main())
    assert started == pytest.approx([100.0, 100.25, 100.5, 100.75, 101.0])
    assert clock.sleeps == pytest.approx([0.25] * 4)


def test_pacer_does_not_wait_when_time_has_passed_anyway(store: Store) -> None:
    clock = FakeClock()

    async def main() -> None:
        pacer = Pacer(2, None, stored_slots(store), clock=clock, sleep=clock.sleep)
        await pacer.wait()
        clock.now += 5  # the previous message took long: its slot is long gone
        await pacer.wait()
        clock.now += 0.2
        await pacer.wait()  # 0.3 s short of the next slot

    asyncio.run(main())
    assert clock.sleeps == pytest.approx([0.3])


@pytest.mark.parametrize(("per_second", "per_hour", "interval"), [
    (10, 60, 60.0),  # one a minute is stricter than ten a second
    (None, 7200, 0.5),
    (2, 36000, 0.5),  # ten a second per hour is looser than two a second
])
def test_pacer_honours_the_stricter_limit(store: Store, per_second: float | None, per_hour: int | None,
                                          interval: float) -> None:
    clock = FakeClock()

    async def main() -> None:
        pacer = Pacer(per_second, per_hour, stored_slots(store), clock=clock, sleep=clock.sleep)
        for _ in range(4):
            await pacer.wait()

    asyncio.run(main())
    assert clock.sleeps == pytest.approx([interval] * 3)
    assert clock.now == pytest.approx(100.0 + 3 * interval)


def test_pacer_without_limits_never_sleeps(store: Store) -> None:
    clock = FakeClock()

    async def main() -> None:
        pacer = Pacer(None, None, stored_slots(store), clock=clock, sleep=clock.sleep)
        await asyncio.gather(*(pacer.wait() for _ in range(20)))

    asyncio.run(main())
    assert clock.sleeps == []


@pytest.mark.parametrize("waiters", [2, 5, 12])
def test_concurrent_waiters_never_share_a_slot(store: Store, waiters: int) -> None:
    clock = FakeClock()
    started: list[float] = []

    async def main() -> None:
        pacer = Pacer(10, None, stored_slots(store), clock=clock, sleep=clock.sleep)

        async def one() -> None:
            await pacer.wait()
            started.append(clock())

        await asyncio.gather(*(one() for _ in range(waiters)))

    asyncio.run(main())
    assert sorted(clock.sleeps) == pytest.approx([0.1 * n for n in range(1, waiters)])
    slots = sorted(started)
    assert len(slots) == waiters
    assert all(later - earlier >= 0.1 - 1e-9 for earlier, later in zip(slots, slots[1:], strict=False))


def test_pacer_holds_the_rate_over_a_real_event_loop(store: Store) -> None:
    async def main() -> list[float]:
        pacer = Pacer(100, None, stored_slots(store))  # the real clock and sleep: 10 ms apart
        started: list[float] = []

        async def one() -> None:
            await pacer.wait()
            started.append(time.time())

        await asyncio.gather(*(one() for _ in range(6)))
        return sorted(started)

    started = asyncio.run(main())
    assert started[-1] - started[0] >= 0.04  # five 10 ms slots; the first starts late by a trip to the database


def test_a_slot_taken_is_taken_for_every_stream_user_and_streams_are_apart(store: Store) -> None:
    assert [store.take_slot("delivery", 0.5, 100.0) for _ in range(3)] == [100.0, 100.5, 101.0]
    assert store.take_slot("delivery", 0.5, 100.2) == 101.5  # another process, later: after those taken
    assert store.take_slot("other", 0.5, 100.2) == 100.2


def at_once(work: Callable[[], T], threads: int = 4, each: int = 10) -> list[T]:
    """What `work` returns, called `each` times by each of `threads` threads running at once."""
    results: list[T] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(each):
            result = work()
            with lock:
                results.append(result)

    running = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return results


def test_threads_taking_slots_at_once_never_share_one(store: Store) -> None:
    taken = at_once(lambda: store.take_slot("delivery", 0.01, 1000.0))
    assert sorted(taken) == pytest.approx([1000.0 + 0.01 * n for n in range(40)])


# windows of requests


def test_requests_are_counted_in_a_window_that_opens_with_the_first(store: Store) -> None:
    assert [store.count_request("10.0.0.1", 600, 1000.0 + n) for n in range(3)] == [1, 2, 3]
    assert store.count_request("10.0.0.2", 600, 1003.0) == 1  # each key its own window
    assert store.count_request("10.0.0.1", 600, 1599.0) == 4  # still the first window
    assert store.count_request("10.0.0.1", 600, 1600.0) == 1  # a new one


def test_ended_windows_are_forgotten(store: Store) -> None:
    for n in range(5):
        store.count_request(f"10.0.0.{n}", 60, 1000.0)
    store.count_request("10.0.1.1", 60, 1060.0)
    with store.session() as session:
        assert [row.key for row in session.exec(select(RequestWindow)).all()] == ["10.0.1.1"]


def test_threads_counting_at_once_count_every_request(store: Store) -> None:
    counts = at_once(lambda: store.count_request("10.0.0.1", 600, 1000.0))
    assert sorted(counts) == list(range(1, 41))
