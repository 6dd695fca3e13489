"""Suppression a person can manage: `nurture suppress list|add|remove`, with the reason and date of each;
a lifted suppression no longer counts, and the lead is mailed again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from click.testing import CliRunner, Result

from nurture.cli import main
from nurture.engine import Engine
from nurture.errors import DeliveryError, Fault
from nurture.models import EventKind, Suppression
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import ROOT, T0, environ, make_lead


def nurture(settings: Settings, *arguments: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), *arguments],
                              env=environ(settings.database_url))


def test_a_suppression_added_by_hand_is_listed_with_its_reason_date_and_note(settings: Settings, store: Store) -> None:
    make_lead(store, email="ada@example.com")
    make_lead(store, email="bob@example.com")
    added = nurture(settings, "suppress", "add", "ADA@example.com", "--note", "asked on the phone")
    assert added.exit_code == 0, added.output
    assert added.stdout == "ada@example.com is suppressed (unsubscribed)\n"
    again = nurture(settings, "suppress", "add", "ada@example.com", "--reason", "complained")
    assert again.stdout == "ada@example.com was suppressed already (unsubscribed)\n"

    lead = store.lead(1)
    assert (lead.suppressed, lead.score) == (Suppression.UNSUBSCRIBED, settings.scoring.points.unsubscribe)
    listed = nurture(settings, "suppress", "list")
    assert listed.exit_code == 0
    [row, total] = listed.stdout.splitlines()
    assert row.startswith("ada@example.com") and "unsubscribed" in row and row.endswith(": asked on the phone")
    assert "added by " in row and total == "1 suppressed"
    assert nurture(settings, "suppress", "add", "nobody@example.com").exit_code == 2


def test_a_lifted_bounce_no_longer_counts_and_the_lead_is_mailed_again(settings: Settings, store: Store) -> None:
    mailer = MemoryMailer(fail={"ada@example.com": DeliveryError("RCPT TO refused: 550 5.1.1 user unknown",
                                                                 fault=Fault.ADDRESS, code=550)})
    engine = Engine(settings, store, mailer)
    make_lead(store, email="ada@example.com", cycle_started_at=T0 - timedelta(days=30))
    asyncio.run(engine.send_due(T0))
    lead = store.lead(1)
    assert (lead.suppressed, lead.score) == (Suppression.BOUNCED, settings.scoring.points.bounce)
    [bounce] = [event for event in store.events_of(1) if event.kind is EventKind.BOUNCE]
    assert (bounce.action, bounce.send_id) == ("hard", store.sends_of(1)[0].id)  # refused at SMTP time
    assert bounce.detail and "5.1.1 user unknown" in bounce.detail

    lifted = nurture(settings, "suppress", "remove", "ada@example.com")
    assert lifted.exit_code == 0, lifted.output
    assert lifted.stdout == "ada@example.com is mailed again (was bounced); score 0\n"
    assert nurture(settings, "suppress", "remove", "ada@example.com").stdout == "ada@example.com is not suppressed\n"
    [bounce] = [event for event in store.events_of(1) if event.kind is EventKind.BOUNCE]
    assert not bounce.counted and bounce.reason and bounce.reason.startswith("suppression lifted by ")
    assert nurture(settings, "suppress", "list").stdout == "0 suppressed\n"

    mailer.fail.clear()  # the address works after all
    asyncio.run(engine.refresh_feeds(T0))  # the digest's articles
    report = asyncio.run(engine.send_due(T0 + timedelta(days=7)))
    assert [line.split(":")[0] for line in report.sent] == ["ada@example.com"], report

    mailer.fail["ada@example.com"] = DeliveryError("RCPT TO refused: 550 5.1.1 gone now", fault=Fault.ADDRESS,
                                                   code=550)
    asyncio.run(engine.send_due(T0 + timedelta(days=14)))  # a later bounce suppresses and scores afresh
    lead = store.lead(1)
    assert lead.suppressed is Suppression.BOUNCED
    assert [event.points for event in store.events_of(1) if event.kind is EventKind.BOUNCE and event.counted] == [
        settings.scoring.points.bounce]
