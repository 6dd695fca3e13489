"""Who is due for which email, and when."""

from datetime import UTC, datetime, timedelta

import pytest

from nurture.models import Stage
from nurture.program import CONFIRMATION, DIGEST, Due, History, due, due_all
from nurture.settings import Program

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
PROGRAM = Program(digest_every_days=7, max_digests_per_cycle=3)
WEEK = timedelta(days=7)
SECOND = timedelta(seconds=1)


def history(lead_id=1, stage=Stage.MQL, suppressed=False, cycle=0, cycle_started_at=START, last_step=None,
            last_send_at=None) -> History:
    return History(lead_id, stage, suppressed, cycle, cycle_started_at, last_step, last_send_at)


def test_fresh_lead_gets_the_confirmation_at_once():
    assert due(history(), START, PROGRAM) == Due(1, 0, 0, CONFIRMATION)


def test_fresh_lead_gets_the_confirmation_even_much_later():
    assert due(history(lead_id=9), START + 30 * WEEK, PROGRAM) == Due(9, 0, 0, CONFIRMATION)


def test_no_second_confirmation_once_step_zero_exists():
    sent = START + timedelta(minutes=1)
    assert due(history(last_step=0, last_send_at=sent), sent, PROGRAM) is None
    assert due(history(last_step=0, last_send_at=sent), sent + timedelta(days=1), PROGRAM) is None


def test_first_digest_due_exactly_digest_every_days_after_the_last_send():
    sent = START + timedelta(hours=3)
    lead = history(last_step=0, last_send_at=sent)
    assert due(lead, sent + WEEK - SECOND, PROGRAM) is None
    assert due(lead, sent + WEEK, PROGRAM) == Due(1, 0, 1, DIGEST)
    assert due(lead, sent + WEEK + timedelta(days=3), PROGRAM) == Due(1, 0, 1, DIGEST)


def test_cadence_counts_from_the_last_send_not_the_cycle_start():
    sent = START + timedelta(days=20)
    lead = history(last_step=1, last_send_at=sent)
    assert due(lead, START + WEEK * 3, PROGRAM) is None  # 21 days after the cycle began, 1 after the send
    assert due(lead, sent + WEEK, PROGRAM) == Due(1, 0, 2, DIGEST)


def test_fractional_days():
    program = Program(digest_every_days=0.5)
    lead = history(last_step=0, last_send_at=START)
    assert due(lead, START + timedelta(hours=12) - SECOND, program) is None
    assert due(lead, START + timedelta(hours=12), program) is not None


@pytest.mark.parametrize("last_step", [0, 1, 2])
def test_step_numbers_increase(last_step):
    lead = history(last_step=last_step, last_send_at=START)
    step = due(lead, START + WEEK, PROGRAM)
    assert step == Due(1, 0, last_step + 1, DIGEST)
    assert step.digests_before == last_step


def test_digests_before_of_confirmation_and_first_digest_is_zero():
    assert Due(1, 0, 0, CONFIRMATION).digests_before == 0
    assert Due(1, 0, 1, DIGEST).digests_before == 0
    assert Due(1, 0, 4, DIGEST).digests_before == 3


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
    assert due(lead, restarted + WEEK, PROGRAM) == Due(4, 1, 1, DIGEST)


def test_recycled_lead_continues_its_cycle():
    restarted = START + 10 * WEEK
    sent = restarted + WEEK
    lead = history(cycle=2, cycle_started_at=restarted, last_step=1, last_send_at=sent)
    assert due(lead, sent + WEEK, PROGRAM) == Due(1, 2, 2, DIGEST)


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
        Due(1, 0, 0, CONFIRMATION),
        Due(2, 0, 1, DIGEST),
        Due(7, 1, 1, DIGEST),
    ]
    assert due_all([], now, PROGRAM) == []
