"""Who is due for which email, and when."""

from datetime import UTC, datetime, timedelta

import pytest

from nurture.models import Stage
from nurture.program import CONFIRMATION, DIGEST, Due, History, confirmation, due, due_all, next_digest_at
from nurture.settings import Program

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PROGRAM = Program(digest_every_days=7, max_digests_per_cycle=3)
WEEK = timedelta(days=7)
SECOND = timedelta(seconds=1)


def history(lead_id=1, stage=Stage.MQL, suppressed=False, cycle=0, cycle_started_at=START, last_step=None,
            last_send_at=None, confirmed=True) -> History:
    return History(lead_id, stage, suppressed, cycle, cycle_started_at, last_step, last_send_at, confirmed)


def test_fresh_lead_gets_the_confirmation_at_once():
    assert due(history(), START, PROGRAM) == Due(1, 0, 0, CONFIRMATION, START + WEEK)


def test_fresh_lead_gets_the_confirmation_even_much_later():
    assert due(history(lead_id=9), START + 30 * WEEK, PROGRAM) == Due(9, 0, 0, CONFIRMATION, START + 31 * WEEK)


def test_no_second_confirmation_once_step_zero_exists():
    sent = START + timedelta(minutes=1)
    assert due(history(last_step=0, last_send_at=sent), sent, PROGRAM) is None
    assert due(history(last_step=0, last_send_at=sent), sent + timedelta(days=1), PROGRAM) is None


def test_first_digest_due_exactly_digest_every_days_after_the_last_send():
    sent = START + timedelta(hours=3)
    lead = history(last_step=0, last_send_at=sent)
    assert due(lead, sent + WEEK - SECOND, PROGRAM) is None
    assert due(lead, sent + WEEK, PROGRAM) == Due(1, 0, 1, DIGEST, sent + 2 * WEEK)
    later = sent + WEEK + timedelta(days=3)
    assert due(lead, later, PROGRAM) == Due(1, 0, 1, DIGEST, later + WEEK)


def test_cadence_counts_from_the_last_send_not_the_cycle_start():
    sent = START + timedelta(days=20)
    lead = history(last_step=1, last_send_at=sent)
    assert due(lead, START + WEEK * 3, PROGRAM) is None  # 21 days after the cycle began, 1 after the send
    assert due(lead, sent + WEEK, PROGRAM) == Due(1, 0, 2, DIGEST, sent + 2 * WEEK)


def test_fractional_days():
    program = Program(digest_every_days=0.5)
    lead = history(last_step=0, last_send_at=START)
    assert due(lead, START + timedelta(hours=12) - SECOND, program) is None
    assert due(lead, START + timedelta(hours=12), program) is not None


@pytest.mark.parametrize("last_step", [0, 1, 2])
def test_step_numbers_increase(last_step):
    lead = history(last_step=last_step, last_send_at=START)
    step = due(lead, START + WEEK, PROGRAM)
    assert step == Due(1, 0, last_step + 1, DIGEST, START + 2 * WEEK if last_step + 2 <= 3 else None)
    assert step.digests_before == last_step


def test_digests_before_of_confirmation_and_first_digest_is_zero():
    assert Due(1, 0, 0, CONFIRMATION, None).digests_before == 0
    assert Due(1, 0, 1, DIGEST, None).digests_before == 0
    assert Due(1, 0, 4, DIGEST, None).digests_before == 3


def test_max_digests_per_cycle_stops_the_program():
    lead = history(last_step=3, last_send_at=START)
    assert due(lead, START + WEEK, PROGRAM) is None
    assert due(lead, START + 100 * WEEK, PROGRAM) is None
    assert due(history(last_step=2, last_send_at=START), START + WEEK, PROGRAM).step == 3


@pytest.mark.parametrize("stage", [Stage.SQL, Stage.WON])
def test_sql_and_won_leads_get_nothing(stage):
    assert due(history(stage=stage), START, PROGRAM) is None
    assert due(history(stage=stage, last_step=1, last_send_at=START), START + 10 * WEEK, PROGRAM) is None


def test_suppressed_leads_get_nothing():
    assert due(history(suppressed=True), START, PROGRAM) is None
    assert due(history(suppressed=True, last_step=0, last_send_at=START), START + 10 * WEEK, PROGRAM) is None


def test_recycled_lead_gets_digest_one_after_cycle_start_not_a_confirmation():
    restarted = START + 10 * WEEK
    lead = history(lead_id=4, cycle=1, cycle_started_at=restarted, last_step=None, last_send_at=None)
    assert due(lead, restarted, PROGRAM) is None
    assert due(lead, restarted + WEEK - SECOND, PROGRAM) is None
    assert due(lead, restarted + WEEK, PROGRAM) == Due(4, 1, 1, DIGEST, restarted + 2 * WEEK)


def test_recycled_lead_continues_its_cycle():
    restarted = START + 10 * WEEK
    sent = restarted + WEEK
    lead = history(cycle=2, cycle_started_at=restarted, last_step=1, last_send_at=sent)
    assert due(lead, sent + WEEK, PROGRAM) == Due(1, 2, 2, DIGEST, sent + 2 * WEEK)


def test_due_all_keeps_only_leads_that_are_due_in_order():
    now = START + WEEK
    histories = [
        history(lead_id=1),  # confirmation
        history(lead_id=2, last_step=0, last_send_at=START),  # digest 1
        history(lead_id=3, last_step=0, last_send_at=now),  # too soon
        history(lead_id=4, stage=Stage.SQL),
        history(lead_id=5, suppressed=True),
        history(lead_id=6, last_step=3, last_send_at=START),  # done for this cycle
        history(lead_id=7, cycle=1, last_step=None, last_send_at=None),  # recycled, a week in
    ]
    assert due_all(histories, now, PROGRAM) == [
        Due(1, 0, 0, CONFIRMATION, now + WEEK),
        Due(2, 0, 1, DIGEST, now + WEEK),
        Due(7, 1, 1, DIGEST, now + WEEK),
    ]
    assert due_all([], now, PROGRAM) == []


def test_an_unconfirmed_lead_has_no_next_step_after_its_confirmation():
    assert confirmation(1, False, START, PROGRAM).next_at is None
    assert confirmation(1, True, START, PROGRAM).next_at == START + WEEK


def test_the_last_digest_of_a_cycle_has_no_next_step():
    assert due(history(last_step=2, last_send_at=START), START + WEEK, PROGRAM).next_at is None


@pytest.mark.parametrize("lead", [
    history(),  # new: its confirmation is due first, not a digest
    history(last_step=0, last_send_at=START),
    history(last_step=0, last_send_at=START, confirmed=False),
    history(last_step=2, last_send_at=START),
    history(last_step=3, last_send_at=START),  # the cycle is over
    history(cycle=1, cycle_started_at=START + WEEK),
    history(cycle=1, cycle_started_at=START, last_step=1, last_send_at=START + WEEK),
    history(stage=Stage.SQL, last_step=0, last_send_at=START),
    history(suppressed=True, last_step=0, last_send_at=START),
])
def test_next_digest_at_is_the_first_moment_due_says_a_digest_is_due(lead):
    """The database's prefilter (Lead.due_at <= now) finds every lead `due` would give a digest."""
    at = next_digest_at(lead, PROGRAM)
    moments = [START + n * timedelta(hours=12) for n in range(60)]
    digest_due = [now for now in moments if (step := due(lead, now, PROGRAM)) and step.template == DIGEST]
    assert (at is None) == (not digest_due)
    if at is not None:
        assert digest_due[0] == at and all(now >= at for now in digest_due)


def test_next_at_of_a_step_is_next_digest_at_once_it_is_recorded():
    lead = history(last_step=0, last_send_at=START)
    now = START + WEEK + timedelta(hours=5)
    step = due(lead, now, PROGRAM)
    recorded = history(last_step=step.step, last_send_at=now)
    assert step.next_at == next_digest_at(recorded, PROGRAM) == now + WEEK
