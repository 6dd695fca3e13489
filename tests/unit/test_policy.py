"""The pure delivery policies: back-off, the breaker, quick retries and group commits (the pacer, which
keeps its slots in the database, is in tests/integration/test_limits.py).

Clocks and sleeps are fakes, so nothing here waits for real longer than a few tens of milliseconds.
"""

from __future__ import annotations

import asyncio

import pytest

from nurture.errors import DeliveryError, Fault
from nurture.models import SendState
from nurture.render.message import Envelope
from nurture.send.policy import Breaker, attempt, backoff
from nurture.settings import Delivery

ENVELOPE = Envelope("marketing@example.com", "ada@example.com", b"Subject: hi\r\n\r\nhello\r\n", "<m.1@example.com>")
TEMPORARY = DeliveryError("421 try later", code=421)
PERMANENT = DeliveryError("550 no such user", fault=Fault.ADDRESS, code=550)
OURS = DeliveryError("MAIL FROM refused: 530 5.7.0 Authentication required", fault=Fault.SENDER, code=530)


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


def test_breaker_trips_at_once_when_the_server_refuses_us_and_keeps_the_first_reason() -> None:
    breaker = Breaker(10)
    breaker.refused("the greeting refused: 554 5.7.1 blocked")
    breaker.refused("MAIL FROM refused: 530 5.7.0 Authentication required")  # another lane, at the same time
    breaker.record(SendState.SENT)
    assert breaker.tripped and breaker.refusal == "the greeting refused: 554 5.7.1 blocked"


def test_breaker_with_limit_one_trips_on_the_first_failure() -> None:
    breaker = Breaker(1)
    assert not breaker.tripped
    breaker.record(SendState.DEFERRED)
    assert breaker.tripped




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
    assert error is PERMANENT
    assert mailer.calls == 1 and sleep.sleeps == []


def test_attempt_gives_back_a_send_the_server_refuses_to_take_from_us_without_retrying() -> None:
    mailer, sleep = ScriptedMailer(OURS, OURS), Recorder()
    state, error = asyncio.run(attempt(mailer, ENVELOPE, policy(), sleep=sleep, rand=lambda: 0.5))
    assert (state, error) == (SendState.QUEUED, OURS)
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
    assert error is TEMPORARY
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
