"""The group-commit recorder: what a group of hits sees of itself, and that scores stay exact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from nurture.engine import Engine
from nurture.mailer import MemoryMailer
from nurture.models import EventKind
from nurture.recorder import Hit, Recorder
from tests.conftest import make_lead

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def mailed(engine: Engine) -> tuple[int, dict[str, int]]:
    """A lead sent its confirmation a while ago; the index of each link action of that email."""
    make_lead(engine.store)
    asyncio.run(engine.send_due(datetime.now(UTC) - timedelta(hours=1)))
    send = engine.store.sends_of(1)[0]
    assert send.id is not None
    return send.id, {link["action"]: index for index, link in enumerate(send.links)}


def click(send_id: int, link: int, at: datetime) -> Hit:
    return Hit(EventKind.CLICK, send_id, link, "GET", BROWSER, "192.0.2.7", at)


def exact(engine: Engine) -> None:
    events = engine.store.events_of(1)
    assert engine.store.lead(1).score == sum(e.points for e in events if e.counted)


def test_a_honeypot_hit_in_the_same_group_takes_back_its_neighbours(engine: Engine, mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    now = datetime.now(UTC)
    recorder = Recorder(engine.store, engine.settings.scoring)
    written = recorder.write([click(send_id, links["callback"], now),
                              click(send_id, links["honeypot"], now + timedelta(milliseconds=300))])
    assert [w.counted for w in written] == [False, False]
    assert engine.store.lead(1).score == 0
    exact(engine)


def test_the_score_stays_exact_when_a_burst_takes_back_what_an_admin_already_took(engine: Engine,
                                                                                  mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    rules = engine.settings.scoring
    now = datetime.now(UTC)
    recorder = Recorder(engine.store, rules)
    recorder.write([click(send_id, links["callback"], now)])
    first = engine.store.events_of(1)[-1]
    engine.store.override(first.id or 0, False, "admin", rules, now)
    others = [index for action, index in links.items() if action not in ("callback", "honeypot")]
    extra = [click(send_id, index, now + timedelta(milliseconds=100 * (n + 1))) for n, index in enumerate(others)]
    recorder.write(extra + [click(send_id, links["honeypot"], now + timedelta(milliseconds=500))])
    exact(engine)


def test_a_hit_whose_lead_is_gone_is_answered_unknown_and_the_rest_is_written(engine: Engine,
                                                                             mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    recorder = Recorder(engine.store, engine.settings.scoring)
    written = recorder.write([click(send_id, links["callback"], datetime.now(UTC)),
                              Hit(EventKind.OPEN, 999_999, None, "GET", BROWSER, None, datetime.now(UTC))])
    assert [w.known for w in written] == [True, False]
    assert engine.store.lead(1).score == 8
