"""One copy of each rule: the threshold a lead qualified at, and which of its points count, are the same
in the store, `leads show`, the profile pages and the hand-off mail."""

from __future__ import annotations

import asyncio
import email
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import EventKind, Stage
from nurture.score.rules import Credit
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from nurture.settings import Settings
from nurture.store import NewEvent, Store
from tests.conftest import SECRET, make_lead

NOW = datetime.now(UTC)  # the pages and `leads show` read the wall clock


@pytest.fixture
def rules_settings(settings: Settings) -> Settings:
    scoring = settings.scoring.model_copy(update={"industry_thresholds": {"finance": 6}, "expiry_days": 30.0})
    return settings.model_copy(update={"scoring": scoring})


@pytest.fixture
def engine(rules_settings: Settings, store: Store, mailer: MemoryMailer) -> Engine:
    return Engine(rules_settings, store, mailer)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        yield client


def qualify_at_the_industry_threshold(engine: Engine) -> int:
    make_lead(engine.store, industry="finance", cycle_started_at=NOW - timedelta(days=60))
    recorded = engine.store.record(NewEvent(1, EventKind.EXTERNAL, NOW, Credit(6, "form:1"), action="contact"),
                                   engine.settings.scoring)
    assert recorded.handoff_id is not None and engine.store.lead(1).stage is Stage.SQL
    return recorded.handoff_id


def expire_an_open(engine: Engine) -> None:
    """Two opens: one 40 days old (expired after 30), one of yesterday; the score is 1."""
    make_lead(engine.store, industry="", cycle_started_at=NOW - timedelta(days=60))
    rules = engine.settings.scoring
    for days, send in ((40, 1), (1, 2)):
        engine.store.record(NewEvent(1, EventKind.OPEN, NOW - timedelta(days=days), Credit(1, f"open:{send}")), rules)
    engine.store.rescore(1, rules, NOW)
    assert engine.store.lead(1).score == 1


def test_the_profile_page_shows_the_threshold_the_lead_qualified_at(engine: Engine, client: TestClient) -> None:
    handoff_id = qualify_at_the_industry_threshold(engine)
    page = client.get(engine.composer.urls.profile(handoff_id).removeprefix(engine.settings.base_url))
    assert page.status_code == 200
    assert '<strong id="score">6</strong> of <span id="threshold">6</span>' in page.text
    admin = client.get("/admin/leads/1", auth=("admin", engine.settings.admin_key))
    assert '<span id="threshold">6</span>' in admin.text


def test_the_hand_off_mail_shows_the_threshold_the_lead_qualified_at(engine: Engine, mailer: MemoryMailer) -> None:
    qualify_at_the_industry_threshold(engine)
    asyncio.run(engine.deliver_handoffs(NOW))
    [sent] = mailer.sent
    message = email.message_from_bytes(sent.data, policy=policy.default)
    text, html = (message.get_body((kind,)).get_content() for kind in ("plain", "html"))  # type: ignore[union-attr]
    assert "reached 6 points (6 qualify" in " ".join(text.split())
    assert '<span id="threshold">6</span>' in html


def test_expired_points_are_marked_not_counted_on_the_profile_page(engine: Engine, client: TestClient) -> None:
    expire_an_open(engine)
    page = client.get("/admin/leads/1", auth=("admin", engine.settings.admin_key))
    assert page.text.count("not counted: expired after 30 days") == 1
    assert '<strong id="score">1</strong>' in page.text


def test_leads_show_marks_expired_points_and_its_counted_points_sum_to_the_score(
        engine: Engine, tmp_path: Path) -> None:
    expire_an_open(engine)
    config = tmp_path / "nurture.yaml"
    config.write_text("scoring:\n  expiry_days: 30\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config), "leads", "show", "ada@example.com", "--json"],
                                env={"NURTURE_DATABASE_URL": engine.store.url, "NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    old, new = shown["history"]
    assert (old["counted"], old["reason"]) == (False, "expired after 30 days")
    assert (new["counted"], new["reason"]) == (True, None)
    assert sum(row["points"] for row in shown["history"] if row["counted"]) == shown["score"] == 1
    text = CliRunner().invoke(main, ["--config", str(config), "leads", "show", "ada@example.com"],
                              env={"NURTURE_DATABASE_URL": engine.store.url, "NURTURE_SECRET_KEY": SECRET})
    assert "(not counted, expired after 30 days)" in text.output
