"""The hand-off summary lists what makes the score: people's clicks that have not expired."""

from datetime import UTC, datetime, timedelta

from nurture.handoff.summary import context
from nurture.models import Event, EventKind, Handoff, Send
from nurture.render.variables import sample_lead
from nurture.settings import Settings

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_an_expired_click_is_not_listed_as_what_the_lead_clicked() -> None:
    settings = Settings()
    settings = settings.model_copy(update={"scoring": settings.scoring.model_copy(update={"expiry_days": 30.0})})
    send = Send(id=7, lead_id=1, cycle=0, step=1, template="digest", created_at=NOW - timedelta(days=50),
                links=[{"url": "https://a.example/old"}, {"url": "https://a.example/new", "action": "callback"}])
    events = [Event(id=1, lead_id=1, cycle=0, kind=EventKind.CLICK, occurred_at=NOW - timedelta(days=40), points=12,
                    counted=True, send_id=7, link=0),
              Event(id=2, lead_id=1, cycle=0, kind=EventKind.CLICK, occurred_at=NOW, points=8, counted=True,
                    send_id=7, link=1),
              Event(id=3, lead_id=1, cycle=0, kind=EventKind.CLICK, occurred_at=NOW, points=12, counted=True,
                    send_id=7, link=-1)]  # no such link: never the send's last one
    handoff = Handoff(id=1, lead_id=1, cycle=0, score=8, created_at=NOW)
    shown = context(settings, sample_lead(), handoff, events, [send], "https://t.example/sales/x", NOW)
    assert [(click.url, click.points) for click in shown["clicks"]] == [("https://a.example/new", 8)]
