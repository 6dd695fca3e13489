"""Delivery over real SMTP: aiosmtpd servers that misbehave on purpose, the real SmtpMailer, a real database.

Each case checks both sides: what the server took (recipient and Message-ID of every accepted message)
and what the outbox says (state, attempts, error), plus what a bounce does to the lead.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtplib.protocol import normalize_message_line_endings
from click.testing import CliRunner

from nurture.cli import main
from nurture.engine import Engine, Report
from nurture.models import EventKind, Lead, SendState, Suppression
from nurture.render.message import Envelope, wire_size
from nurture.runtime import smtp_mailer
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import ROOT, T0, environ, free_port, make_lead

Rule = Callable[[str, int], "str | None"]  # (recipient, how many times it was seen) -> a reply, or None to accept


class Handler:
    """An SMTP server's behaviour: refuse at RCPT or DATA by rule, be slow, or drop the connection mid-DATA."""

    def __init__(self, on_rcpt: Rule | None = None, on_data: Rule | None = None, delay: float = 0.0,
                 delay_at: str = "DATA", drop: Callable[[str, int], bool] | None = None,
                 on_mail: str | None = None):
        self.on_mail = on_mail  # the reply to every MAIL FROM, if not 250
        self.on_rcpt = on_rcpt
        self.on_data = on_data
        self.delay = delay
        self.delay_at = delay_at
        self.drop = drop
        self.rcpt_tries: Counter[str] = Counter()
        self.data_tries: Counter[str] = Counter()
        self.tried_ids: dict[str, set[str]] = {}  # every Message-ID offered for a recipient, taken or not
        self.received: list[tuple[str, str]] = []  # (recipient, Message-ID) of every message taken
        self.lock = threading.Lock()

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.on_mail:
            return self.on_mail
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            self.rcpt_tries[address] += 1
            seen = self.rcpt_tries[address]
        if self.delay and self.delay_at == "RCPT":
            await asyncio.sleep(self.delay)
        reply = self.on_rcpt(address, seen) if self.on_rcpt else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        recipient = envelope.rcpt_tos[0]
        mid = str(message_from_bytes(envelope.original_content)["Message-ID"])
        with self.lock:
            self.data_tries[recipient] += 1
            seen = self.data_tries[recipient]
            self.tried_ids.setdefault(recipient, set()).add(mid)
        if self.delay and self.delay_at == "DATA":
            await asyncio.sleep(self.delay)
        if self.drop and self.drop(recipient, seen):
            server.transport.close()  # the connection breaks before the reply
            return "250 never seen by the client"
        reply = self.on_data(recipient, seen) if self.on_data else None
        if reply:
            return reply
        with self.lock:
            self.received.append((recipient, mid))
        return "250 OK"

    def copies(self) -> Counter[str]:
        return Counter(recipient for recipient, _ in self.received)


@contextmanager
def smtp_server(handler: Handler, port: int | None = None) -> Iterator[int]:
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def refusing_greeting(reply: str) -> Iterator[int]:
    """A server that answers every connection with `reply` instead of 220, then hangs up (a blocklisted
    sending address meets this)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(reply.encode() + b"\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join(5)
        listener.close()


def smtp_engine(settings: Settings, store: Store, port: int, *, timeout: float = 5.0,
                concurrency: int | None = None, **delivery: Any) -> Engine:
    """An engine that delivers over real SMTP to 127.0.0.1:port with these delivery settings."""
    smtp = settings.smtp.model_copy(update={"port": port, "timeout": timeout, "sink": False,
                                            "concurrency": concurrency or settings.smtp.concurrency})
    changed = settings.model_copy(update={"smtp": smtp, "delivery": settings.delivery.model_copy(update=delivery)})
    return Engine(changed, store, smtp_mailer(changed))


def tick(engine: Engine, at: datetime = T0) -> Report:
    """One `send-due` pass, as the command line runs it: a fresh connection pool, closed at the end."""
    engine.mailer = smtp_mailer(engine.settings)

    async def run() -> Report:
        try:
            return await engine.send_due(at)
        finally:
            await engine.mailer.close()

    return asyncio.run(run())


def leads(store: Store, *emails: str) -> dict[str, int]:
    ids = {}
    for email in emails:
        lead = make_lead(store, email=email)
        assert lead.id is not None
        ids[email] = lead.id
    return ids


def states(store: Store, ids: dict[str, int]) -> dict[str, SendState]:
    found = {}
    for email, lead_id in ids.items():
        sends = store.sends_of(lead_id)
        assert len(sends) == 1, f"{email} has {len(sends)} sends"
        found[email] = sends[0].state
    return found


def refuse_first(reply: str) -> Rule:
    return lambda _recipient, seen: reply if seen == 1 else None


MINUTE = timedelta(minutes=1)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("phase", "reply"), [("RCPT", "421 try later"), ("RCPT", "450 mailbox busy"),
                                              ("DATA", "451 local error"), ("DATA", "421 closing")])
def test_a_temporary_refusal_is_retried_at_once_and_sent_once(settings: Settings, store: Store, phase: str,
                                                               reply: str) -> None:
    rule = refuse_first(reply)
    handler = Handler(on_rcpt=rule if phase == "RCPT" else None, on_data=rule if phase == "DATA" else None)
    ids = leads(store, "ada@example.com", "bob@example.com", "cy@example.com")
    with smtp_server(handler) as port:
        report = tick(smtp_engine(settings, store, port))
    assert len(report.sent) == 3 and not report.deferred and not report.failed
    assert handler.copies() == {email: 1 for email in ids}
    tries = handler.rcpt_tries if phase == "RCPT" else handler.data_tries
    assert tries == {email: 2 for email in ids}
    for email, lead_id in ids.items():
        send = store.sends_of(lead_id)[0]
        assert (send.state, send.attempts, send.error) == (SendState.SENT, 1, None)
        assert (email, send.message_id) in handler.received  # the Message-ID the outbox recorded went out
        if phase == "DATA":
            assert handler.tried_ids[email] == {send.message_id}  # the retry carried the same Message-ID


@pytest.mark.timeout(30)
@pytest.mark.parametrize("phase", ["RCPT", "DATA"])
def test_a_permanent_refusal_bounces_and_suppresses_only_that_lead(settings: Settings, store: Store,
                                                                    phase: str) -> None:
    def rule(recipient: str, _seen: int) -> str | None:
        return "550 5.1.1 no such user" if recipient.startswith("gone") else None

    handler = Handler(on_rcpt=rule if phase == "RCPT" else None, on_data=rule if phase == "DATA" else None)
    ids = leads(store, "ada@example.com", "gone1@example.com", "bob@example.com", "gone2@example.com")
    with smtp_server(handler) as port:
        engine = smtp_engine(settings, store, port)
        report = tick(engine)
        assert sorted(handler.copies()) == ["ada@example.com", "bob@example.com"]
        tries = handler.rcpt_tries if phase == "RCPT" else handler.data_tries
        assert tries["gone1@example.com"] == tries["gone2@example.com"] == 1  # a bounce is not retried
        assert len(report.sent) == 2 and len(report.bounced) == 2 and not report.failed and not report.deferred
        assert states(store, ids) == {"ada@example.com": SendState.SENT, "bob@example.com": SendState.SENT,
                                      "gone1@example.com": SendState.BOUNCED, "gone2@example.com": SendState.BOUNCED}
        for email in ("gone1@example.com", "gone2@example.com"):
            send = store.sends_of(ids[email])[0]
            assert send.attempts == 1 and send.error and "550" in send.error
            lead = store.lead(ids[email])
            assert lead.suppressed is Suppression.BOUNCED and lead.score == -30
            bounces = [e for e in store.events_of(ids[email]) if e.kind is EventKind.BOUNCE]
            assert [e.points for e in bounces] == [-30]
        for email in ("ada@example.com", "bob@example.com"):
            lead = store.lead(ids[email])
            assert lead.suppressed is None and lead.score == 0

        later = tick(engine, T0 + timedelta(days=8))  # the digest is due for everybody not suppressed
        assert not any("gone" in line for line in later.enqueued + later.skipped + later.sent + later.failed)
        assert tries["gone1@example.com"] == tries["gone2@example.com"] == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("where", "reply"), [
    ("greeting", "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"),
    ("MAIL", "530 5.7.0 Authentication required"),
    ("DATA", "554 5.7.1 Message rejected as spam by Content Filtering"),
    ("RCPT", "550 5.7.1 Relay access denied"),
])
def test_a_server_that_refuses_us_pauses_the_run_suppresses_nobody_and_a_later_tick_delivers(
        settings: Settings, store: Store, where: str, reply: str) -> None:
    emails = [f"lead{n}@example.com" for n in range(30)]
    ids = leads(store, *emails)
    port = free_port()
    refusing = refusing_greeting(reply) if where == "greeting" else smtp_server(
        Handler(on_mail=reply if where == "MAIL" else None, on_rcpt=(lambda _r, _n: reply) if where == "RCPT" else None,
                on_data=(lambda _r, _n: reply) if where == "DATA" else None), port)
    with refusing as port:
        engine = smtp_engine(settings, store, port, batch_size=10)
        report = tick(engine)
    assert report.sent == report.bounced == report.deferred == report.failed == []
    code = reply.split()[0]
    assert report.refused is not None and reply.split(";")[0] in report.refused
    assert report.paused is not None and "refused to take mail from us" in report.paused and code in report.paused
    for email in emails:  # nobody is blamed: each send waits, untouched, and no lead is suppressed or scored
        send = store.sends_of(ids[email])[0]
        assert (send.state, send.attempts, send.error, send.claimed_by) == (SendState.QUEUED, 0, None, None)
        lead = store.lead(ids[email])
        assert (lead.suppressed, lead.score) == (None, 0)
        assert [event.kind for event in store.events_of(ids[email])] == []

    handler = Handler()
    with smtp_server(handler, free_port()) as fixed:  # the relay is fixed (or the right one is configured)
        report = tick(smtp_engine(settings, store, fixed, batch_size=10))
    assert len(report.sent) == 30 and report.paused is None
    assert handler.copies() == {email: 1 for email in emails}


def test_send_due_says_why_the_server_refused_us_and_exits_1(settings: Settings, store: Store) -> None:
    leads(store, "ada@example.com", "bob@example.com")
    reply = "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
    with refusing_greeting(reply) as port:
        result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "send-due", "--at", T0.isoformat(),
                                           "--no-refresh"],
                                    env=environ(settings.database_url, NURTURE_SMTP_PORT=str(port),
                                                NURTURE_SMTP_SINK="false"))
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == (f"delivery paused: the mail server refused to take mail from us (the "
                                              f"greeting refused: {reply}); nobody was suppressed; the rest stays "
                                              "queued for the next run")


@pytest.mark.timeout(30)
def test_a_full_mailbox_is_deferred_not_bounced(settings: Settings, store: Store) -> None:
    handler = Handler(on_rcpt=lambda recipient, _n: "552 5.2.2 Mailbox full" if recipient.startswith("full") else None)
    ids = leads(store, "ada@example.com", "full@example.com")
    with smtp_server(handler) as port:
        report = tick(smtp_engine(settings, store, port, retries=0))
    assert len(report.sent) == 1 and len(report.deferred) == 1 and report.bounced == [] and report.paused is None
    send = store.sends_of(ids["full@example.com"])[0]
    assert send.state is SendState.DEFERRED and send.error and "5.2.2" in send.error
    assert store.lead(ids["full@example.com"]).suppressed is None



@pytest.mark.timeout(30)
def test_a_mailbox_full_at_every_try_is_a_soft_bounce_each_time_until_the_lead_is_suppressed(
        settings: Settings, store: Store) -> None:
    handler = Handler(on_rcpt=lambda _recipient, _n: "552 5.2.2 Mailbox full")
    lead_id = leads(store, "full@example.com")["full@example.com"]
    limit = settings.scoring.soft_bounces
    with smtp_server(handler) as port:
        engine = smtp_engine(settings, store, port, retries=0, retry_after_minutes=15, max_attempts=limit + 2)
        for number in range(limit):
            tick(engine, T0 + number * 15 * MINUTE)
            soft = [event for event in store.events_of(lead_id) if event.action == "soft" and event.points == 0]
            assert len(soft) == number + 1 and soft[-1].detail and "5.2.2 Mailbox full" in soft[-1].detail
    lead = store.lead(lead_id)
    assert (lead.suppressed, lead.score) == (Suppression.BOUNCED, settings.scoring.points.bounce)
    assert handler.rcpt_tries["full@example.com"] == limit
    later = tick(engine, T0 + limit * 15 * MINUTE)  # suppressed: its deferred send is not tried again
    assert later.sent == later.deferred == [] and handler.rcpt_tries["full@example.com"] == limit


@pytest.mark.timeout(30)
def test_a_server_that_keeps_refusing_defers_and_a_later_tick_delivers(settings: Settings, store: Store) -> None:
    accepting = threading.Event()
    handler = Handler(on_data=lambda _r, _n: None if accepting.is_set() else "451 greylisted, try later")
    ids = leads(store, "ada@example.com", "bob@example.com")
    with smtp_server(handler) as port:
        engine = smtp_engine(settings, store, port, retries=1, retry_after_minutes=15)
        report = tick(engine)
        assert len(report.deferred) == 2 and not report.sent and not report.failed
        assert handler.received == [] and handler.data_tries == {email: 2 for email in ids}
        for lead_id in ids.values():
            send = store.sends_of(lead_id)[0]
            assert (send.state, send.attempts, send.retry_at) == (SendState.DEFERRED, 1, T0 + 15 * MINUTE)
            assert send.error and "451" in send.error and send.claimed_by is None

        assert tick(engine, T0 + 14 * MINUTE).sent == []  # not due yet
        assert handler.data_tries == {email: 2 for email in ids}

        accepting.set()
        report = tick(engine, T0 + 15 * MINUTE)
        assert len(report.sent) == 2
        assert handler.copies() == {email: 1 for email in ids}
        for email, lead_id in ids.items():
            send = store.sends_of(lead_id)[0]
            assert (send.state, send.attempts) == (SendState.SENT, 2)
            assert send.sent_at is not None
            assert handler.tried_ids[email] == {send.message_id}  # every try of the send had one Message-ID
        assert tick(engine, T0 + 30 * MINUTE).sent == []
        assert handler.copies() == {email: 1 for email in ids}


@pytest.mark.timeout(30)
def test_a_send_fails_for_good_after_max_attempts_ticks(settings: Settings, store: Store) -> None:
    handler = Handler(on_rcpt=lambda _r, _n: "421 4.7.0 try again later")
    ids = leads(store, "ada@example.com")
    lead_id = ids["ada@example.com"]
    with smtp_server(handler) as port:
        engine = smtp_engine(settings, store, port, retries=1, retry_after_minutes=15, max_attempts=3)
        for number in range(1, 3):
            tick(engine, T0 + (number - 1) * 15 * MINUTE)
            send = store.sends_of(lead_id)[0]
            assert (send.state, send.attempts) == (SendState.DEFERRED, number)
        tick(engine, T0 + 30 * MINUTE)
        send = store.sends_of(lead_id)[0]
        assert (send.state, send.attempts) == (SendState.FAILED, 3)
        assert send.error and "421" in send.error
        for minutes in (45, 60, 24 * 60):
            tick(engine, T0 + minutes * MINUTE)
        assert handler.rcpt_tries["ada@example.com"] == 3 * 2  # three ticks of two tries, then never again
        assert store.sends_of(lead_id)[0].state is SendState.FAILED
        assert handler.received == []
        assert store.lead(lead_id).suppressed is None  # a temporary failure is no bounce


@pytest.mark.timeout(30)
def test_the_report_says_failed_when_the_last_attempt_is_used_up(settings: Settings, store: Store) -> None:
    handler = Handler(on_rcpt=lambda _r, _n: "421 4.7.0 try again later")
    leads(store, "ada@example.com")
    with smtp_server(handler) as port:
        engine = smtp_engine(settings, store, port, retries=0, max_attempts=1)
        report = tick(engine)
    assert store.sends_of(1)[0].state is SendState.FAILED
    assert len(report.failed) == 1 and report.deferred == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("batch_size", [  # the breaker trips in the last batch, or with batches still to come
    200,
    4,
])
def test_a_refused_connection_defers_and_the_run_pauses_leaving_the_rest_queued(settings: Settings, store: Store,
                                                                                 batch_size: int) -> None:
    emails = [f"lead{n}@example.com" for n in range(10)]
    ids = leads(store, *emails)
    port = free_port()  # nothing listens here
    engine = smtp_engine(settings, store, port, pause_after_failures=3, batch_size=batch_size)
    concurrency = engine.settings.smtp.concurrency
    started = time.monotonic()
    report = tick(engine)
    assert time.monotonic() - started < 10
    assert report.paused is not None and "in a row" in report.paused
    found = states(store, ids)
    deferred = [email for email in emails if found[email] is SendState.DEFERRED]
    queued = [email for email in emails if found[email] is SendState.QUEUED]
    assert len(deferred) + len(queued) == 10
    assert 3 <= len(deferred) <= 3 + concurrency - 1  # at most the sends already in flight when it tripped
    assert len(report.deferred) == len(deferred) and not report.sent
    for email in deferred:
        send = store.sends_of(ids[email])[0]
        assert send.attempts == 1 and send.error and "Connect" in send.error
    for email in queued:
        send = store.sends_of(ids[email])[0]
        assert (send.attempts, send.error, send.claimed_by) == (0, None, None)

    handler = Handler()
    with smtp_server(handler, port):  # the server is back
        report = tick(engine)
        assert report.paused is None
        assert sorted(handler.copies()) == sorted(queued)  # the untried ones go at once
        tick(engine, T0 + 15 * MINUTE)  # the deferred ones at their retry time
    assert handler.copies() == {email: 1 for email in emails}
    assert set(states(store, ids).values()) == {SendState.SENT}


@pytest.mark.timeout(30)
def test_a_connection_dropped_mid_data_is_retried_and_delivered(settings: Settings, store: Store) -> None:
    handler = Handler(drop=lambda _recipient, seen: seen <= 2)  # two broken connections per message
    ids = leads(store, "ada@example.com", "bob@example.com", "cy@example.com")
    with smtp_server(handler) as port:
        report = tick(smtp_engine(settings, store, port, retries=2))
    assert len(report.sent) == 3
    assert handler.data_tries == {email: 3 for email in ids}
    assert handler.copies() == {email: 1 for email in ids}
    for email, lead_id in ids.items():
        send = store.sends_of(lead_id)[0]
        assert (send.state, send.attempts) == (SendState.SENT, 1)
        assert handler.tried_ids[email] == {send.message_id}


@pytest.mark.timeout(30)
def test_a_connection_dropped_on_every_try_defers(settings: Settings, store: Store) -> None:
    handler = Handler(drop=lambda _recipient, _seen: True)
    ids = leads(store, "ada@example.com")
    with smtp_server(handler) as port:
        report = tick(smtp_engine(settings, store, port, retries=2))
    assert len(report.deferred) == 1 and not report.sent
    assert handler.data_tries["ada@example.com"] == 3
    send = store.sends_of(ids["ada@example.com"])[0]
    assert (send.state, send.attempts) == (SendState.DEFERRED, 1)
    assert send.error and "Disconnected" in send.error


@pytest.mark.timeout(30)
@pytest.mark.parametrize("phase", ["RCPT", "DATA"])
def test_a_slow_server_times_out_and_defers_instead_of_hanging(settings: Settings, store: Store,
                                                                phase: str) -> None:
    handler = Handler(delay=3.0, delay_at=phase)
    ids = leads(store, "ada@example.com", "bob@example.com")
    with smtp_server(handler) as port:
        engine = smtp_engine(settings, store, port, timeout=0.3, retries=1)
        started = time.monotonic()
        report = tick(engine)
        elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"the run took {elapsed:.1f} s: it waited for the slow server"
    assert len(report.deferred) == 2 and not report.sent
    for lead_id in ids.values():
        send = store.sends_of(lead_id)[0]
        assert (send.state, send.attempts) == (SendState.DEFERRED, 1)
        assert send.error and "timed out" in send.error.lower()


@pytest.mark.timeout(30)
def test_a_message_that_cannot_be_built_fails_alone(settings: Settings, store: Store) -> None:
    emails = ["ada@example.com", "bob@example.com", "bad@@example.com", "cy@example.com", "dee@example.com"]
    ids = leads(store, *emails)
    handler = Handler()
    with smtp_server(handler) as port:
        report = tick(smtp_engine(settings, store, port))
    good = [email for email in emails if email != "bad@@example.com"]
    assert handler.copies() == {email: 1 for email in good}
    assert len(report.sent) == 4
    assert any("bad@@example.com" in line and "not an email address" in line for line in report.failed)
    send = store.sends_of(ids["bad@@example.com"])[0]
    assert send.state is SendState.FAILED and send.error and "not an email address" in send.error
    assert {email: state for email, state in states(store, ids).items() if email in good} == {
        email: SendState.SENT for email in good}


@pytest.mark.timeout(30)
def test_an_address_the_smtp_client_refuses_fails_alone(settings: Settings, store: Store) -> None:
    emails = ["ada@example.com", "a b@example.com", "bob@example.com"]
    ids = leads(store, *emails)
    handler = Handler()
    with smtp_server(handler) as port:
        report = tick(smtp_engine(settings, store, port))
    assert handler.copies() == {"ada@example.com": 1, "bob@example.com": 1}
    assert len(report.sent) == 2
    assert store.sends_of(ids["a b@example.com"])[0].state in (SendState.FAILED, SendState.BOUNCED)


@pytest.mark.timeout(60)
def test_two_workers_on_one_outbox_deliver_each_mail_exactly_once(settings: Settings,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Two `send-due` workers started at once: each mail goes out once; on PostgreSQL one of them plans
    the pass (Lock.PLAN) and the other only delivers, while on SQLite both plan (one writer at a time)."""
    caplog.set_level(logging.INFO, logger="nurture.engine")
    setup = Store(settings.database_url)
    setup.create()
    emails = [f"lead{n:02}@example.com" for n in range(60)]
    setup.add_leads([Lead(email=email, interests=["cloud"], industry="finance", cycle_started_at=T0, created_at=T0,
                          confirmed_at=T0) for email in emails], "test")
    setup.close()
    handler = Handler(delay=0.005)
    reports: list[Report] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(port: int) -> None:
        store = Store(settings.database_url)
        try:
            engine = smtp_engine(settings, store, port, batch_size=7)
            barrier.wait()
            reports.append(tick(engine))
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            errors.append(error)
        finally:
            store.close()

    with smtp_server(handler) as port:
        threads = [threading.Thread(target=worker, args=(port,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(50)
    assert not errors, errors
    assert len(reports) == 2
    assert handler.copies() == {email: 1 for email in emails}
    sent = [line for report in reports for line in report.sent]
    assert len(sent) == 60 and len(set(sent)) == 60
    enqueued = [line for report in reports for line in report.enqueued]
    assert len(enqueued) == 60  # each confirmation was recorded by exactly one of the two
    planning = [record for record in caplog.records if record.getMessage().startswith("another worker is planning")]
    assert len(planning) == (0 if settings.database_url.startswith("sqlite") else 1)
    check = Store(settings.database_url)
    try:
        for lead in check.leads(100):
            assert lead.id is not None
            sends = check.sends_of(lead.id)
            assert [(s.state, s.step, s.attempts) for s in sends] == [(SendState.SENT, 0, 1)]
        mids = dict(handler.received)
        assert len(set(mids.values())) == 60
    finally:
        check.close()


@pytest.mark.parametrize("data", [b"", b"a\r\nb\r\n", b"a\nb", b"a\rb\r\n\n", b"x\r", b"\r\n\r\r\n", b"\n\n\r"])
def test_the_declared_size_is_the_size_on_the_wire(data: bytes) -> None:
    assert wire_size(data) == len(normalize_message_line_endings(data))
    assert Envelope("a@example.com", "b@example.com", data, "<m@example.com>").size == wire_size(data)
