"""Points, credit keys, thresholds and stage transitions."""

from datetime import UTC, datetime, timedelta

import pytest

from nurture.errors import InputError
from nurture.models import Event, EventKind, Stage, link_at
from nurture.score import rules as scoring
from nurture.score.history import history
from nurture.score.history import score as history_score
from nurture.score.rules import Credit
from nurture.settings import Points, Scoring

DEFAULTS = Scoring()
CUSTOM = Scoring(
    threshold=20,
    customer_threshold=5,
    points=Points(open=2, callback=9, click=3, extra_nurture_email=-4, unsubscribe=-11, bounce=-12, complaint=-13),
    link_tags={"high-intent": 15, "case-study": 6},
)


def link(action="content", tag=None, points=None, url="https://example.com/a"):
    return {"url": url, "action": action, "tag": tag, "points": points}


def test_defaults_match_the_spec():
    assert DEFAULTS.threshold == 12
    assert DEFAULTS.customer_threshold < DEFAULTS.threshold
    assert DEFAULTS.points.open == 1
    assert DEFAULTS.points.callback == 8
    assert DEFAULTS.points.click == 0
    assert DEFAULTS.points.extra_nurture_email == -1
    assert DEFAULTS.link_tags["high-intent"] == 12


# opens


def test_credit_open_points_and_key():
    assert scoring.credit_open(42, DEFAULTS) == Credit(1, "open:42")
    assert scoring.credit_open(7, CUSTOM) == Credit(2, "open:7")


def test_open_keys_differ_per_send_and_repeat_for_one_send():
    assert scoring.credit_open(1, DEFAULTS).key != scoring.credit_open(2, DEFAULTS).key
    assert scoring.credit_open(1, DEFAULTS).key == scoring.credit_open(1, DEFAULTS).key


# clicks


@pytest.mark.parametrize("index", [0, 1, 4])
def test_callback_click_is_keyed_per_send_regardless_of_link_index(index):
    credit = scoring.credit_click(42, index, link(action="callback"), DEFAULTS)
    assert credit == Credit(8, "callback:42")


def test_callback_click_uses_the_callback_points():
    assert scoring.credit_click(3, 0, link(action="callback"), CUSTOM) == Credit(9, "callback:3")


def test_plain_clicks_are_keyed_per_link():
    first = scoring.credit_click(42, 0, link(), DEFAULTS)
    second = scoring.credit_click(42, 1, link(url="https://example.com/b"), DEFAULTS)
    assert first == Credit(0, "click:42:0")
    assert second == Credit(0, "click:42:1")
    assert scoring.credit_click(43, 0, link(), DEFAULTS).key == "click:43:0"


def test_plain_click_uses_configured_click_points():
    assert scoring.credit_click(1, 2, link(), CUSTOM) == Credit(3, "click:1:2")


def test_tagged_link_earns_tag_points():
    assert scoring.credit_click(42, 3, link(tag="high-intent"), DEFAULTS) == Credit(12, "click:42:3")
    assert scoring.credit_click(42, 3, link(tag="case-study"), CUSTOM) == Credit(6, "click:42:3")


def test_unknown_tag_falls_back_to_click_points():
    assert scoring.credit_click(42, 3, link(tag="nobody-knows"), CUSTOM).points == 3
    assert scoring.credit_click(42, 3, link(tag="nobody-knows"), DEFAULTS).points == 0


def test_explicit_link_points_win_over_tag():
    assert scoring.credit_click(1, 0, link(tag="high-intent", points=5), DEFAULTS) == Credit(5, "click:1:0")


def test_explicit_link_points_win_over_action():
    credit = scoring.credit_click(1, 2, link(action="callback", points=2), DEFAULTS)
    assert credit == Credit(2, "callback:1")


def test_explicit_zero_points_still_win():
    assert scoring.click_points(link(action="callback", tag="high-intent", points=0), DEFAULTS) == 0


def test_callback_action_wins_over_tag():
    assert scoring.click_points(link(action="callback", tag="case-study"), CUSTOM) == 9


def test_click_points_accepts_a_link_without_optional_keys():
    assert scoring.click_points({"url": "https://example.com"}, CUSTOM) == 3
    assert scoring.click_points({"url": "https://example.com", "points": "7"}, CUSTOM) == 7


# sends


def test_first_digest_of_a_cycle_costs_nothing():
    assert scoring.credit_send(0, 10, DEFAULTS) == Credit(0, "sent:10")
    assert scoring.credit_send(0, 10, CUSTOM) == Credit(0, "sent:10")


@pytest.mark.parametrize("before", [1, 2, 11])
def test_later_digests_cost_extra_nurture_email(before):
    assert scoring.credit_send(before, 11, DEFAULTS) == Credit(-1, "sent:11")
    assert scoring.credit_send(before, 11, CUSTOM) == Credit(-4, "sent:11")


# suppression


@pytest.mark.parametrize(
    ("kind", "default", "custom"),
    [(EventKind.UNSUBSCRIBE, -25, -11), (EventKind.BOUNCE, -30, -12), (EventKind.COMPLAINT, -30, -13)],
)
def test_credit_suppression(kind, default, custom):
    assert scoring.credit_suppression(kind, 5, 2, DEFAULTS) == Credit(default, f"{kind.value}:5:2")
    assert scoring.credit_suppression(kind, 5, 2, CUSTOM) == Credit(custom, f"{kind.value}:5:2")


def test_suppression_keys_differ_per_lead_cycle_and_kind():
    keys = {
        scoring.credit_suppression(kind, lead, cycle, DEFAULTS).key
        for kind in (EventKind.UNSUBSCRIBE, EventKind.BOUNCE, EventKind.COMPLAINT)
        for lead in (1, 2)
        for cycle in (0, 1)
    }
    assert len(keys) == 12


def test_all_credit_keys_of_one_send_are_distinct():
    keys = [
        scoring.credit_open(1, DEFAULTS).key,
        scoring.credit_click(1, 0, link(), DEFAULTS).key,
        scoring.credit_click(1, 1, link(action="callback"), DEFAULTS).key,
        scoring.credit_send(1, 1, DEFAULTS).key,
    ]
    assert len(set(keys)) == len(keys)


# thresholds and qualification


def test_threshold_per_segment():
    assert scoring.threshold(DEFAULTS, customer=False) == 12
    assert scoring.threshold(DEFAULTS, customer=True) == 8
    assert scoring.threshold(CUSTOM, customer=False) == 20
    assert scoring.threshold(CUSTOM, customer=True) == 5


@pytest.mark.parametrize(
    ("score", "customer", "expected"),
    [(11, False, False), (12, False, True), (13, False, True), (7, True, False), (8, True, True), (-5, True, False)],
)
def test_qualifies_at_or_above_the_threshold(score, customer, expected):
    assert scoring.qualifies(Stage.MQL, score, DEFAULTS, customer) is expected


@pytest.mark.parametrize("stage", [Stage.SQL, Stage.WON])
def test_only_mqls_qualify(stage):
    assert scoring.qualifies(stage, 100, DEFAULTS, False) is False
    assert scoring.qualifies(stage, 100, DEFAULTS, True) is False


# stage moves


@pytest.mark.parametrize(
    ("stage", "to"), [(Stage.MQL, Stage.SQL), (Stage.SQL, Stage.WON), (Stage.SQL, Stage.MQL)]
)
def test_legal_moves(stage, to):
    assert scoring.move(stage, to) is to


@pytest.mark.parametrize(
    ("stage", "to"),
    [
        (Stage.WON, Stage.MQL),
        (Stage.WON, Stage.SQL),
        (Stage.MQL, Stage.WON),
        (Stage.MQL, Stage.MQL),
        (Stage.SQL, Stage.SQL),
        (Stage.WON, Stage.WON),
    ],
)
def test_illegal_moves_raise_input_error(stage, to):
    with pytest.raises(InputError) as error:
        scoring.move(stage, to)
    assert stage.value in str(error.value)
    assert to.value in str(error.value)


def test_refusal_gives_each_reason_in_its_order() -> None:
    assert scoring.refusal(EventKind.OPEN, Stage.MQL, "open:1", set()) is None
    assert scoring.refusal(EventKind.OPEN, Stage.MQL, "open:1", {"open:1"}) == "already credited"
    assert scoring.refusal(EventKind.CLICK, Stage.SQL, "click:1:0", {"click:1:0"}) == "lead is sql"
    assert scoring.refusal(EventKind.EXTERNAL, Stage.SQL, "form:1", set()) is None  # not an MQL-only kind
    assert scoring.refusal(EventKind.OPEN, Stage.SQL, "open:1", set(), ignored="scanner") == "scanner"


def test_the_scope_of_a_score_leaves_out_earlier_cycles_and_expired_points() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    rules = DEFAULTS.model_copy(update={"expiry_days": 30.0, "reset_on_recycle": True})
    within = scoring.scope(rules, 2, now)
    assert within.excludes(2, now - timedelta(days=29)) is None
    assert within.excludes(2, now - timedelta(days=31)) == "expired after 30 days"
    assert within.excludes(2, (now - timedelta(days=31)).replace(tzinfo=None)) == "expired after 30 days"
    assert within.excludes(1, now) == "an earlier cycle"
    kept = scoring.scope(DEFAULTS.model_copy(update={"reset_on_recycle": False}), 2, now)
    assert kept.excludes(0, now - timedelta(days=3650)) is None


def test_a_link_is_looked_up_by_its_index_or_not_at_all() -> None:
    links = [{"url": "https://a.example/"}, {"url": "https://b.example/"}]
    assert link_at(links, 1) == {"url": "https://b.example/"}
    assert [link_at(links, index) for index in (None, -1, 2)] == [None, None, None]
    assert link_at(None, 0) is None


def test_the_history_says_why_points_do_not_count_and_sums_to_the_score() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    rules = DEFAULTS.model_copy(update={"expiry_days": 30.0})
    events = [Event(id=1, lead_id=1, cycle=0, kind=EventKind.OPEN, occurred_at=now - timedelta(days=40), points=1,
                    counted=True, send_id=7),
              Event(id=2, lead_id=1, cycle=0, kind=EventKind.CLICK, occurred_at=now, points=12, counted=True,
                    send_id=7, link=0, url="https://a.example/"),
              Event(id=3, lead_id=1, cycle=0, kind=EventKind.OPEN, occurred_at=now, points=1, counted=False,
                    reason="HEAD request", send_id=7)]
    lines = history(events, 0, rules, now)
    assert [(line.counts, line.reason, line.url) for line in lines] == [
        (False, "expired after 30 days", None), (True, None, "https://a.example/"), (False, "HEAD request", None)]
    assert history_score(lines) == 12
