"""The judge: stored hits become scored events; what a batch sees of itself, and that scores stay exact."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from nurture.engine import Engine
from nurture.models import EventKind, Lead, Send, SendState, Stage
from nurture.score import machines
from nurture.score.judge import Judge
from nurture.send.mailer import MemoryMailer
from nurture.track.journal import Arrival, Journal
from tests.conftest import make_lead

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def mailed(engine: Engine) -> tuple[int, dict[str, int]]:
    """A lead sent its confirmation a while ago; the index of each link action of that email."""
    make_lead(engine.store)
    asyncio.run(engine.send_due(datetime.now(UTC) - timedelta(hours=1)))
    send = engine.store.sends_of(1)[0]
    assert send.id is not None
    return send.id, {link["action"]: index for index, link in enumerate(send.links)}


def click(send_id: int, link: int, at: datetime) -> Arrival:
    return Arrival("click", send_id, link, "GET", BROWSER, "192.0.2.7", at.timestamp())


def judged(engine: Engine, *arrivals: Arrival) -> list[bool]:
    """Store the hits as the tracking server does, judge them in one batch; whether each was counted."""
    before = len(engine.store.events_of(1))
    Journal(engine.store).write(arrivals)
    Judge(engine.store, engine.settings.scoring).next_batch()
    return [event.counted for event in engine.store.events_of(1)[before:]]


def exact(engine: Engine) -> None:
    """The score is the sum of counted points; each mail's engagement is what its events say; each click keeps
    the link it was on (for the report of links and tags)."""
    events = engine.store.events_of(1)
    assert engine.store.lead(1).score == sum(e.points for e in events if e.counted)
    hits = [e for e in events if e.kind in (EventKind.OPEN, EventKind.CLICK)]
    for send in engine.store.sends_of(1):
        mine = [e for e in hits if e.send_id == send.id]
        assert [(e.url, e.tag, e.action) for e in mine if e.kind is EventKind.CLICK] == [
            (link["url"], link.get("tag"), link.get("action")) for link in
            (send.links[e.link or 0] for e in mine if e.kind is EventKind.CLICK)]
        person = [e for e in mine if not e.machine]
        assert (send.hits, send.machine_hits, send.clicks) == (
            len(mine), len(mine) - len(person), sum(e.kind is EventKind.CLICK for e in person))
        assert send.opened_at == min((e.occurred_at for e in person if e.kind is EventKind.OPEN), default=None)
        assert send.clicked_at == min((e.occurred_at for e in person if e.kind is EventKind.CLICK), default=None)
    assert engine.store.lead(1).engaged_at == min((e.occurred_at for e in hits if not e.machine), default=None)


def test_a_honeypot_hit_in_the_same_batch_takes_back_its_neighbours(engine: Engine, mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    now = datetime.now(UTC)
    counted = judged(engine, click(send_id, links["callback"], now),
                     click(send_id, links["honeypot"], now + timedelta(milliseconds=300)))
    assert counted == [False, False]
    assert [event.machine for event in engine.store.events_of(1)] == [True, True]  # reports count neither
    assert engine.store.lead(1).score == 0
    exact(engine)


def test_a_burst_takes_back_a_hit_judged_earlier_by_another_judge(engine: Engine, mailer: MemoryMailer) -> None:
    """What a burst needs is read from the event log: a second judge (another process) sees the first's hits."""
    send_id, links = mailed(engine)
    now = datetime.now(UTC)
    assert judged(engine, click(send_id, links["callback"], now)) == [True]
    assert engine.store.lead(1).score == 8
    assert judged(engine, click(send_id, links["honeypot"], now + timedelta(milliseconds=400))) == [False]
    first = engine.store.events_of(1)[-2]
    assert (first.counted, first.reason, first.machine) == (False, engine.store.events_of(1)[-1].reason, True)
    assert engine.store.lead(1).score == 0
    exact(engine)


def test_the_score_stays_exact_when_a_burst_takes_back_what_an_admin_already_took(engine: Engine,
                                                                                  mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    rules = engine.settings.scoring
    now = datetime.now(UTC)
    judged(engine, click(send_id, links["callback"], now))
    first = engine.store.events_of(1)[-1]
    engine.store.override(first.id or 0, False, "admin", rules, now)
    assert not engine.store.events_of(1)[-1].machine  # an operator's judgment, not a machine's
    others = [index for action, index in links.items() if action not in ("callback", "honeypot")]
    extra = [click(send_id, index, now + timedelta(milliseconds=100 * (n + 1))) for n, index in enumerate(others)]
    judged(engine, *extra, click(send_id, links["honeypot"], now + timedelta(milliseconds=500)))
    exact(engine)


def test_a_hit_on_a_message_whose_delivery_is_not_recorded_yet_is_a_machine_s(engine: Engine,
                                                                             mailer: MemoryMailer) -> None:
    """Its links are stored when it is built, so a link scanner's click finds its way during delivery."""
    send_id, links = mailed(engine)
    with engine.store.engine.begin() as connection:  # as while the server takes it, or its result is logged
        connection.execute(update(Send).where(col(Send.id) == send_id).values(state=SendState.SENDING, sent_at=None))
    assert judged(engine, click(send_id, links["callback"], datetime.now(UTC))) == [False]
    assert engine.store.events_of(1)[-1].reason == "during delivery"
    assert engine.store.lead(1).score == 0


def test_hits_on_unknown_mail_are_not_judged_and_do_not_hold_up_the_rest(engine: Engine,
                                                                      mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    now = datetime.now(UTC).timestamp()
    journal = Journal(engine.store)
    urls = journal.write([click(send_id, links["callback"], datetime.now(UTC)),
                          Arrival("click", 999_999, 0, "GET", BROWSER, None, now),
                          Arrival("open", 999_999, None, "GET", BROWSER, None, now)])
    assert urls[0] is not None and urls[1:] == [None, None]
    assert pending(engine) == 2, "an unknown link is not stored; an open of an unknown mail is, and judged away"
    judged = Judge(engine.store, engine.settings.scoring).drain()
    assert (judged.taken, judged.judged) == (2, 1)
    assert pending(engine) == 0
    assert [event.counted for event in engine.store.events_of(1)[-1:]] == [True]
    assert engine.store.lead(1).score == 8


def test_stored_hits_outlive_the_server_and_are_judged_once(engine: Engine, mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    Journal(engine.store).write([click(send_id, links["callback"], datetime.now(UTC))])
    before = len(engine.store.events_of(1))
    assert Judge(engine.store, engine.settings.scoring).drain().judged == 1  # a judge started after a crash
    assert Judge(engine.store, engine.settings.scoring).drain().taken == 0
    assert len(engine.store.events_of(1)) == before + 1
    assert engine.store.lead(1).score == 8


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_crash_between_judging_and_forgetting_judges_no_hit_twice(engine: Engine, mailer: MemoryMailer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite the journal is a file of its own, forgotten after the events' commit (on PostgreSQL both
    happen in one transaction)."""
    send_id, links = mailed(engine)
    Journal(engine.store).write([click(send_id, links["callback"], datetime.now(UTC))])
    crashed = Judge(engine.store, engine.settings.scoring)
    monkeypatch.setattr(crashed, "_forget", lambda ids: None)  # the process died right after its commit
    assert crashed.next_batch().judged == 1
    assert pending(engine) == 1 and engine.store.lead(1).score == 8
    events = len(engine.store.events_of(1))
    again = Judge(engine.store, engine.settings.scoring).drain()
    assert (again.taken, again.judged) == (1, 0)  # passed over, and forgotten
    assert pending(engine) == 0
    assert len(engine.store.events_of(1)) == events and engine.store.lead(1).score == 8


def test_a_hit_that_cannot_be_judged_is_dropped_alone(engine: Engine, mailer: MemoryMailer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    send_id, links = mailed(engine)
    classify = machines.classify

    def fragile(hit: machines.Hit, *args: object, **kwargs: object) -> machines.Verdict:
        if hit.user_agent == "poison":
            raise ValueError("cannot judge this one")
        return classify(hit, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(machines, "classify", fragile)
    now = datetime.now(UTC)
    poison = Arrival("open", send_id, None, "GET", "poison", None, now.timestamp())
    counted = judged(engine, poison, click(send_id, links["callback"], now + timedelta(seconds=5)))
    assert counted == [True]
    assert pending(engine) == 0
    assert engine.store.lead(1).score == 8


def pending(engine: Engine) -> int:
    return engine.store.pending_hits()


def test_judges_in_parallel_judge_each_hit_once(engine: Engine, mailer: MemoryMailer) -> None:
    """Every tracking server may run a judge; they take turns, so no hit is judged twice or lost."""
    send_id, links = mailed(engine)
    now = datetime.now(UTC)
    opens = [Arrival("open", send_id, None, "GET", BROWSER, "192.0.2.7", (now + timedelta(seconds=n)).timestamp())
             for n in range(120)]
    Journal(engine.store).write(opens)
    judges = [Judge(engine.store, engine.settings.scoring) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        judged = list(pool.map(lambda judge: judge.next_batch(7) + judge.drain(), judges))
    assert sum(result.judged for result in judged) == 120
    events = [event for event in engine.store.events_of(1) if event.kind is EventKind.OPEN]
    assert len(events) == 120 and pending(engine) == 0
    assert sum(event.counted for event in events) == 1, "one open credited per email"
    exact(engine)


def test_a_credit_taken_back_goes_to_a_later_hit_of_the_same_batch(engine: Engine, mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    now = datetime.now(UTC)
    opened = Arrival("open", send_id, None, "GET", BROWSER, "192.0.2.7", now.timestamp())
    assert judged(engine, opened) == [True]
    trap = click(send_id, links["honeypot"], now + timedelta(seconds=1))  # the first open was a scanner's
    person = opened._replace(at=(now + timedelta(seconds=30)).timestamp())
    assert judged(engine, trap, person) == [False, True]
    assert engine.store.lead(1).score == 1
    exact(engine)


def test_a_mail_keeps_what_people_did_with_it_batch_after_batch(engine: Engine, mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    now = datetime.now(UTC)
    opened = Arrival("open", send_id, None, "GET", BROWSER, "192.0.2.7", now.timestamp())
    scanner = opened._replace(user_agent="Barracuda Sentinel (ESS)", at=(now - timedelta(seconds=5)).timestamp())
    judged(engine, scanner, opened)
    judged(engine, click(send_id, links["callback"], now + timedelta(seconds=40)),
           click(send_id, links["callback"], now + timedelta(seconds=90)))
    send = engine.store.send(send_id)
    assert send is not None and (send.hits, send.machine_hits, send.clicks) == (4, 1, 2)
    assert send.opened_at is not None and send.opened_at.timestamp() == pytest.approx(now.timestamp())
    exact(engine)


def test_an_operator_counting_a_machines_hit_makes_it_a_persons(engine: Engine, mailer: MemoryMailer) -> None:
    send_id, links = mailed(engine)
    now = datetime.now(UTC)
    judged(engine, click(send_id, links["callback"], now)._replace(user_agent="Barracuda Sentinel (ESS)"))
    assert engine.store.lead(1).engaged_at is None
    event = engine.store.events_of(1)[-1]
    engine.store.override(event.id or 0, True, "admin", engine.settings.scoring, now)
    assert engine.store.lead(1).engaged_at is not None
    exact(engine)


def test_a_scanners_clicks_on_a_lead_with_sales_are_a_machines_every_one(engine: Engine,
                                                                        mailer: MemoryMailer) -> None:
    """Its first click earns nothing ("lead is sql") before the honeypot shows what it is: a machine's all
    the same, so no report counts it as a person's click."""
    send_id, links = mailed(engine)
    with engine.store.session() as session:
        session.get_one(Lead, 1).stage = Stage.SQL
    now = datetime.now(UTC)
    assert judged(engine, click(send_id, links["callback"], now)) == [False]
    assert not engine.store.events_of(1)[-1].machine  # not yet known
    send = engine.store.send(send_id)
    assert send is not None and send.clicks == 1
    judged(engine, click(send_id, links["honeypot"], now + timedelta(milliseconds=400)))
    assert [event.machine for event in engine.store.events_of(1)] == [True, True]
    send = engine.store.send(send_id)
    assert send is not None and (send.clicks, send.clicked_at) == (0, None)
    assert engine.store.lead(1).engaged_at is None
    exact(engine)


def test_a_click_on_a_very_long_link_is_stored_with_the_start_of_its_address(engine: Engine,
                                                                             mailer: MemoryMailer) -> None:
    """A feed may link anywhere, at any length; the click keeps 2,000 characters of the address (PostgreSQL
    refused the whole batch: its index of people's clicks takes 2,704 bytes an entry)."""
    send_id, _ = mailed(engine)
    address = "https://example.com/" + secrets.token_urlsafe(4_000)  # 5,334 characters that do not compress
    with engine.store.session() as session:
        send = session.get(Send, send_id)
        assert send is not None
        send.links = [{"url": address, "tag": "t" * 500, "action": None, "points": None}]
        session.add(send)
    assert judged(engine, click(send_id, 0, datetime.now(UTC))) == [True]
    [event] = [e for e in engine.store.events_of(1) if e.kind is EventKind.CLICK]
    assert (event.url, event.tag) == (address[:2000], "t" * 200)
