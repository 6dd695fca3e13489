"""The pure delivery policies: back-off, the breaker, the pacer, quick retries and group commits.

Clocks and sleeps are fakes, so nothing here waits for real longer than a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from nurture.errors import DeliveryError
from nurture.models import SendState
from nurture.render.message import Envelope
from nurture.send.policy import Breaker, Pacer, attempt, backoff
from nurture.settings import Delivery

ENVELOPE = Envelope("marketing@example.com", "ada@example.com", b"Subject: hi\r\n\r\nhello\r\n", "<m.1@example.com>")
TEMPORARY = DeliveryError("421 try later", code=421)
PERMANENT = DeliveryError("550 no such user", permanent=True, code=550)


class FakeClock:
    """A monotonic clock that only moves when the fake sleep says so."""

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


class Recorder:
    """A sleep that only records what it was asked for."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class ScriptedMailer:
    """Raises the scripted errors one per call, then accepts every message."""

    def __init__(self, *errors: DeliveryError):
        self.errors = list(errors)
        self.calls = 0
        self.sent: list[Envelope] = []

    async def send(self, envelope: Envelope) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(envelope)

    async def close(self) -> None:
        return None


# backoff


def test_backoff_doubles_from_the_base() -> None:
    assert [backoff(n, 0.5, 0.5) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize("base", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("number", range(8))
def test_backoff_stays_within_the_jitter_band(base: float, number: int) -> None:
    nominal = min(30.0, base * 2**number)
    low, middle, high = backoff(number, base, 0.0), backoff(number, base, 0.5), backoff(number, base, 0.999999)
    assert low == pytest.approx(0.5 * nominal)
    assert middle == pytest.approx(nominal)
    assert 0.5 * nominal <= low <= middle <= high < 1.5 * nominal
    for step in range(11):
        assert 0.5 * nominal <= backoff(number, base, step / 10) <= 1.5 * nominal


def test_backoff_is_capped_however_many_retries() -> None:
    capped = [backoff(n, 1.0, 0.5, cap=10.0) for n in range(3, 40)]
    assert capped[0] == 8.0
    assert set(capped[1:]) == {10.0}
    assert max(backoff(n, 1.0, jitter / 10, cap=10.0) for n in range(40) for jitter in range(10)) < 15.0
    assert backoff(50, 0.5, 0.5) == 30.0  # the default cap, and no overflow on a huge attempt number


def test_backoff_of_a_zero_base_never_waits() -> None:
    assert {backoff(n, 0.0, 0.9) for n in range(10)} == {0.0}


# breaker


def test_breaker_trips_after_limit_consecutive_failures() -> None:
    breaker = Breaker(3)
    for state in (SendState.DEFERRED, SendState.FAILED):
        breaker.record(state)
        assert not breaker.tripped
    breaker.record(SendState.DEFERRED)
    assert breaker.tripped and breaker.failures == 3
    breaker.record(SendState.DEFERRED)
    assert breaker.tripped


@pytest.mark.parametrize("good", [SendState.SENT, SendState.BOUNCED])
def test_breaker_resets_on_a_sent_or_bounced_result(good: SendState) -> None:
    breaker = Breaker(3)
    breaker.record(SendState.DEFERRED)
    breaker.record(SendState.DEFERRED)
    breaker.record(good)  # the server answered: it is alive
    assert breaker.failures == 0
    breaker.record(SendState.DEFERRED)
    breaker.record(SendState.FAILED)
    assert not breaker.tripped
    breaker.record(SendState.DEFERRED)
    assert breaker.tripped
    breaker.record(good)
    assert not breaker.tripped


def test_breaker_with_limit_one_trips_on_the_first_failure() -> None:
    breaker = Breaker(1)
    assert not breaker.tripped
    breaker.record(SendState.DEFERRED)
    assert breaker.tripped


# pacer


def test_pacer_spaces_messages_at_the_per_second_rate() -> None:
    clock = FakeClock()

    async def main() -> list[float]:
        pacer = Pacer(4, None, clock=clock, sleep=clock.sleep)
        started = []
        for _ in range(5):
            await pacer.wait()
            started.append(clock())
        return started

    started = asyncio.run(main())
    assert started == pytest.approx([100.0, 100.25, 100.5, 100.75, 101.0])
    assert clock.sleeps == pytest.approx([0.25] * 4)


def test_pacer_does_not_wait_when_time_has_passed_anyway() -> None:
    clock = FakeClock()

    async def main() -> None:
        pacer = Pacer(2, None, clock=clock, sleep=clock.sleep)
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
def test_pacer_honours_the_stricter_limit(per_second: float | None, per_hour: int | None, interval: float) -> None:
    clock = FakeClock()

    async def main() -> None:
        pacer = Pacer(per_second, per_hour, clock=clock, sleep=clock.sleep)
        for _ in range(4):
            await pacer.wait()

    asyncio.run(main())
    assert clock.sleeps == pytest.approx([interval] * 3)
    assert clock.now == pytest.approx(100.0 + 3 * interval)


def test_pacer_without_limits_never_sleeps() -> None:
    clock = FakeClock()

    async def main() -> None:
        pacer = Pacer(None, None, clock=clock, sleep=clock.sleep)
        await asyncio.gather(*(pacer.wait() for _ in range(20)))

    asyncio.run(main())
    assert clock.sleeps == []


@pytest.mark.parametrize("waiters", [2, 5, 12])
def test_concurrent_waiters_never_share_a_slot(waiters: int) -> None:
    clock = FakeClock()
    started: list[float] = []

    async def main() -> None:
        pacer = Pacer(10, None, clock=clock, sleep=clock.sleep)

        async def one() -> None:
            await pacer.wait()
            started.append(clock())

        await asyncio.gather(*(one() for _ in range(waiters)))

    asyncio.run(main())
    assert sorted(clock.sleeps) == pytest.approx([0.1 * n for n in range(1, waiters)])
    slots = sorted(started)
    assert len(slots) == waiters
    assert all(later - earlier >= 0.1 - 1e-9 for earlier, later in zip(slots, slots[1:], strict=False))


def test_pacer_holds_the_rate_over_a_real_event_loop() -> None:
    async def main() -> list[float]:
        pacer = Pacer(100, None)  # the real clock and sleep: 10 ms apart
        started: list[float] = []

        async def one() -> None:
            await pacer.wait()
            started.append(time.monotonic())

        await asyncio.gather(*(one() for _ in range(6)))
        return sorted(started)

    started = asyncio.run(main())
    assert started[-1] - started[0] >= 0.05 - 0.002


# attempt


def policy(**fields: object) -> Delivery:
    return Delivery(**{"retries": 2, "backoff_seconds": 1.0, **fields})  # type: ignore[arg-type]


def test_attempt_retries_a_temporary_failure_and_sends() -> None:
    mailer, sleep = ScriptedMailer(TEMPORARY), Recorder()
    state, error = asyncio.run(attempt(mailer, ENVELOPE, policy(), sleep=sleep, rand=lambda: 0.5))
    assert (state, error) == (SendState.SENT, None)
    assert mailer.calls == 2 and mailer.sent == [ENVELOPE]
    assert sleep.sleeps == [1.0]


def test_attempt_bounces_a_permanent_failure_without_retrying() -> None:
    mailer, sleep = ScriptedMailer(PERMANENT, PERMANENT), Recorder()
    state, error = asyncio.run(attempt(mailer, ENVELOPE, policy(), sleep=sleep, rand=lambda: 0.5))
    assert state is SendState.BOUNCED
    assert error is not None and "550" in error
    assert mailer.calls == 1 and sleep.sleeps == []


def test_attempt_bounces_a_permanent_failure_after_a_temporary_one() -> None:
    mailer, sleep = ScriptedMailer(TEMPORARY, PERMANENT), Recorder()
    state, _ = asyncio.run(attempt(mailer, ENVELOPE, policy(), sleep=sleep, rand=lambda: 0.5))
    assert state is SendState.BOUNCED and mailer.calls == 2 and mailer.sent == []


@pytest.mark.parametrize("retries", [0, 1, 2, 4])
def test_attempt_defers_when_every_try_fails(retries: int) -> None:
    mailer, sleep = ScriptedMailer(*[TEMPORARY] * 20), Recorder()
    state, error = asyncio.run(attempt(mailer, ENVELOPE, policy(retries=retries), sleep=sleep, rand=lambda: 0.5))
    assert state is SendState.DEFERRED
    assert error is not None and "421" in error
    assert mailer.calls == retries + 1 and mailer.sent == []
    assert sleep.sleeps == [2.0**n for n in range(retries)]  # 1, 2, 4, ... between tries, none after the last


def test_attempt_jitters_each_back_off() -> None:
    mailer, sleep = ScriptedMailer(TEMPORARY, TEMPORARY, TEMPORARY), Recorder()
    draws = iter([0.0, 0.99, 0.5])
    state, _ = asyncio.run(attempt(mailer, ENVELOPE, policy(retries=3), sleep=sleep, rand=lambda: next(draws)))
    assert state is SendState.SENT
    assert sleep.sleeps[0] == pytest.approx(0.5)  # 1 s at 0.5x
    assert sleep.sleeps[1] == pytest.approx(2.98)  # 2 s at 1.49x
    assert sleep.sleeps[2] == pytest.approx(4.0)  # 4 s at 1x


def test_attempt_succeeds_at_once_without_sleeping() -> None:
    mailer, sleep = ScriptedMailer(), Recorder()
    assert asyncio.run(attempt(mailer, ENVELOPE, policy(), sleep=sleep))[0] is SendState.SENT
    assert mailer.calls == 1 and sleep.sleeps == []
