"""The hand-off summary lists what makes the score (people's clicks that have not expired) and why the lead
qualified: the event that crossed its threshold first, what it asked for, how earlier cycles ended."""

from datetime import UTC, datetime, timedelta

from nurture.handoff.summary import context
from nurture.models import Event, EventKind, Handoff, Outcome
from nurture.render.variables import sample_lead
from nurture.score.history import history, why
from nurture.settings import Settings

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PRICING = "https://a.example/pricing"


def test_an_expired_click_is_not_listed_as_what_the_lead_clicked() -> None:
    settings = Settings()
    settings = settings.model_copy(update={"scoring": settings.scoring.model_copy(update={"expiry_days": 30.0})})
    events = [Event(id=1, lead_id=1, cycle=0, kind=EventKind.CLICK, occurred_at=NOW - timedelta(days=40), points=12,
                    counted=True, send_id=7, link=0, url="https://a.example/old"),
              Event(id=2, lead_id=1, cycle=0, kind=EventKind.CLICK, occurred_at=NOW, points=8, counted=True,
                    send_id=7, link=1, url="https://a.example/new", action="callback"),
              Event(id=3, lead_id=1, cycle=0, kind=EventKind.CLICK, occurred_at=NOW, points=12, counted=True,
                    send_id=7, link=0)]  # a click that kept no link is not listed
    handoff = Handoff(id=1, lead_id=1, cycle=0, score=8, created_at=NOW)
    shown = context(settings, sample_lead(), handoff, events, "https://t.example/sales/x", NOW)
    assert [(click.url, click.action, click.points) for click in shown["clicks"]] == [
        ("https://a.example/new", "callback", 8)]


def event(number: int, kind: EventKind, points: int, minutes: int, cycle: int = 1, **fields: object) -> Event:
    return Event(id=number, lead_id=1, cycle=cycle, kind=kind, occurred_at=NOW + timedelta(minutes=minutes),
                 points=points, counted=fields.pop("counted", True), **fields)


def test_why_puts_the_event_that_crossed_the_threshold_first_and_lists_what_was_asked() -> None:
    settings = Settings()
    events = [event(1, EventKind.OPEN, 1, 0), event(2, EventKind.SENT, -1, 1),
              event(3, EventKind.EXTERNAL, 4, 2, action="download", detail="/whitepaper.pdf"),
              event(4, EventKind.CLICK, 12, 3, send_id=7, link=0, url=PRICING, counted=False, reason="scanner"),
              event(5, EventKind.EXTERNAL, 1, 4, action="web_visit", detail="/pricing"),
              event(6, EventKind.CLICK, 8, 5, send_id=7, link=0, url=PRICING, action="callback"),  # 13: over 12
              event(7, EventKind.OPEN, 1, 6),
              event(8, EventKind.OPEN, 1, -9000, cycle=0)]  # an earlier cycle's
    earlier = Handoff(id=1, lead_id=1, cycle=0, score=12, created_at=NOW - timedelta(days=90),
                      outcome=Outcome.NO_RESULT, decided_at=NOW - timedelta(days=80))
    shown = context(settings, sample_lead(), Handoff(id=2, lead_id=1, cycle=1, score=13, created_at=NOW), events,
                    "https://t.example/sales/x", NOW + timedelta(hours=1), [earlier])
    why = shown["why"]
    assert why.crossed.event.id == 6
    assert [line.event.id for line in why.reasons] == [6, 3, 1, 5, 7]  # the crossing one, then by points
    assert [(line.event.action, line.event.detail) for line in why.asked] == [("download", "/whitepaper.pdf"),
                                                                           ("web_visit", "/pricing")]
    assert why.earlier == [earlier]


def test_a_request_that_qualifies_at_once_is_why_whatever_the_score() -> None:
    lines = history([event(1, EventKind.OPEN, 1, 0), event(2, EventKind.EXTERNAL, 0, 1, action="contact_form",
                                                        detail="Please call me about pricing for 50 seats")],
                    1, Settings().scoring, NOW)
    found = why(lines, 1, 12, Settings().scoring)
    assert found.crossed is not None and found.crossed.event.id == 2
    assert [line.event.detail for line in found.asked] == ["Please call me about pricing for 50 seats"]
