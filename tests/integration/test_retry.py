"""Failures that heal: a digest that cannot be built gives its items back, and once the template is
fixed, `nurture sends retry` has it delivered whole."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import EventKind, SendState
from nurture.send.mailer import MemoryMailer
from nurture.settings import Settings
from nurture.store import Store
from tests.conftest import ROOT, SECRET, T0, make_lead

WEEK = timedelta(days=7)


def engine_over(settings: Settings, store: Store, mailer: MemoryMailer, templates: Path) -> Engine:
    return Engine(settings.model_copy(update={"templates_dir": templates}), store, mailer)


def test_a_digest_that_cannot_be_built_heals_once_retried(settings: Settings, store: Store, mailer: MemoryMailer,
                                                          tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    digest = templates / "en" / "digest.html"
    good = digest.read_text(encoding="utf-8")
    engine = engine_over(settings, store, mailer, templates)
    assert {status for _, status, _ in asyncio.run(engine.refresh_feeds(T0))} == {"ok"}
    make_lead(store, interests=["cloud"], industry="finance")
    asyncio.run(engine.send_due(T0))  # the confirmation
    digest.write_text(good.replace("{% block content %}", "{% block content %}{{ lead.nickname }}", 1))

    broken = engine_over(settings, store, mailer, templates)
    report = asyncio.run(broken.send_due(T0 + WEEK))
    assert len(report.failed) == 1 and "nickname" in report.failed[0]
    [failed] = [send for send in store.sends_of(1) if send.template == "digest"]
    assert failed.state is SendState.FAILED
    assert broken.outbox.items([failed.id or 0]) == {failed.id: []}  # its items are given back

    digest.write_text(good)
    env = {"NURTURE_DATABASE_URL": store.url, "NURTURE_SECRET_KEY": SECRET, "NURTURE_SMTP_SINK": "false",
           "NURTURE_TEMPLATES_DIR": str(templates)}
    listed = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "sends", "list"], env=env)
    assert listed.exit_code == 0 and f"{failed.id:>7}  failed" in listed.output and "nickname" in listed.output
    retried = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "sends", "retry", "--template",
                                        "digest"], env=env)
    assert retried.exit_code == 0 and "1 failed send queued again" in retried.output

    fixed = engine_over(settings, store, mailer, templates)
    report = asyncio.run(fixed.send_due(T0 + WEEK))
    assert len(report.sent) == 1 and report.failed == []
    carried = fixed.outbox.items([failed.id or 0])[failed.id or 0]
    assert len(carried) == settings.program.items_per_digest  # delivered whole
    assert [event.points for event in store.events_of(1) if event.kind is EventKind.SENT] == [0]  # the first digest


def test_retry_says_which_sends(settings: Settings, store: Store) -> None:
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "sends", "retry"],
                                env={"NURTURE_DATABASE_URL": store.url, "NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 2
    assert result.output == "error: say which failed sends to retry: --id N, --template NAME or --all\n"
