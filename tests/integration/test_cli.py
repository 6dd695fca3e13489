"""The command line: bad input names the problem and changes nothing; send-due and rescore report."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture import console
from nurture.cli import main
from nurture.models import SinkMessage
from nurture.render.message import build
from nurture.settings import load_settings
from nurture.store import Store
from tests.conftest import ROOT, SECRET


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("NURTURE_SECRET_KEY", SECRET)
    monkeypatch.setenv("NURTURE_SMTP_SINK", "false")
    monkeypatch.setenv("NURTURE_SMTP_PORT", "9")  # nothing listens: every delivery fails

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), *args])
        return result.exit_code, result.output

    return invoke


def stored_leads(tmp_path: Path) -> list[str]:
    settings = load_settings({"NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
                              "NURTURE_SECRET_KEY": SECRET}, ROOT / "nurture.yaml")
    store = Store(settings.database_url)
    store.create()
    return [lead.email for lead in store.leads()]


def test_bad_input_exits_2_and_stores_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("leads", "add", "ada@example.com", "--interest", "cloud")[0] == 0
    for args, says in [(("leads", "add", "not-an-address"), "not a valid email address"),
                       (("leads", "add", "bob@example.com", "--interest", "knitting"), "unknown interest: knitting"),
                       (("leads", "add", "ada@example.com"), "already exists")]:
        code, output = run(*args)
        assert code == 2 and says in output
    rows = tmp_path / "leads.csv"
    rows.write_text("email,interests\ncy@example.com,cloud\nbad-address,cloud\n")
    code, output = run("leads", "import", str(rows))
    assert code == 2 and ":3:" in output
    assert stored_leads(tmp_path) == ["ada@example.com"]


def test_an_unknown_config_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text("scoring:\n  treshold: 10\n")
    result = CliRunner().invoke(main, ["--config", str(config), "leads", "list"],
                                env={"NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 2 and "scoring.treshold: unknown key" in result.output


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_database_is_refused_by_name(url: str) -> None:
    """Each of nurture's processes and threads would see an empty database of its own."""
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "send-due", "--no-refresh"],
                                env={"NURTURE_SECRET_KEY": SECRET, "NURTURE_DATABASE_URL": url})
    assert result.exit_code == 2 and f"database_url '{url}': an in-memory SQLite database" in result.output


@pytest.mark.parametrize(("environ", "expected"), [
    ({"HOME": "/home/ada"}, "/home/ada/.cache/nurture"),
    ({"HOME": "/home/ada", "XDG_CACHE_HOME": "/var/cache/ada"}, "/var/cache/ada/nurture"),
    ({"HOME": "/home/ada", "NURTURE_CACHE_DIR": "/srv/nurture-cache"}, "/srv/nurture-cache"),
    ({}, None),
])
def test_compiled_templates_are_kept_in_the_users_cache(tmp_path: Path, environ: dict[str, str],
                                                        expected: str | None) -> None:
    settings = load_settings({"NURTURE_SECRET_KEY": SECRET, **environ}, tmp_path / "nurture.yaml")
    assert settings.cache_dir == (None if expected is None else Path(expected))


def test_send_due_reports_a_pause_when_the_server_is_down(run) -> None:  # type: ignore[no-untyped-def]
    for n in range(25):
        run("leads", "add", f"lead{n}@example.com")
    code, output = run("send-due", "--no-refresh")
    assert code == 0
    paused = re.search(r"paused after (2\d) failed deliveries in a row", output)  # 20, and what was in flight
    assert paused
    # the plain line of a batch, off a terminal: what the run tried, not the sends it gave back
    assert f"delivery: {paused.group(1)} of 25 processed" in output
    assert "0 sent" in output


def test_rescore_dry_run_reports_without_changing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("leads", "add", "ada@example.com")
    code, output = run("rescore", "--dry-run")
    assert code == 0 and "0 scores would change; 0 leads would become SQL" in output
    assert "on the stored history, under these rules: 0 of 1 leads would have gone to sales (0 did" in output


def test_leads_show_says_how_many_hits_wait_to_be_judged(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from nurture.track.journal import Arrival, Journal

    assert run("leads", "add", "ada@example.com", "--interest", "cloud")[0] == 0
    assert "not yet judged" not in run("leads", "show", "ada@example.com")[1]
    settings = load_settings({"NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
                              "NURTURE_SECRET_KEY": SECRET}, ROOT / "nurture.yaml")
    Journal(Store(settings.database_url)).write([Arrival("open", 1, None, "GET", "Mozilla/5.0", None, 0.0)] * 2)
    shown = run("leads", "show", "ada@example.com")[1]
    assert "2 opens and clicks (of all leads) are stored and not yet judged" in shown


def test_the_banner_never_prints_the_database_password(capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings({"NURTURE_SECRET_KEY": SECRET,
                              "NURTURE_DATABASE_URL": "postgresql+psycopg://nurture:s3cret@db.internal/nurture"},
                             ROOT / "nurture.yaml")
    console.banner(settings, "127.0.0.1", 8000)
    shown = capsys.readouterr().out
    assert "s3cret" not in shown and "postgresql+psycopg://nurture:***@db.internal/nurture" in shown


def test_config_is_read_after_the_command_too(tmp_path: Path) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text("scoring:\n  treshold: 10\n")
    result = CliRunner().invoke(main, ["rescore", "--dry-run", "--config", str(config)],
                                env={"NURTURE_SECRET_KEY": SECRET, "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert result.exit_code == 2 and "scoring.treshold: unknown key" in result.output


def test_adding_a_lead_again_with_exist_ok_changes_nothing(run) -> None:  # type: ignore[no-untyped-def]
    assert run("leads", "add", "ada@example.com", "--interest", "cloud", "--exist-ok") == (
        0, "added ada@example.com (lead 1)\n")
    assert run("leads", "add", "ada@example.com", "--interest", "security", "--exist-ok") == (
        0, "ada@example.com is lead 1 already; nothing changed\n")
    assert run("leads", "add", "ada@example.com", "--interest", "cloud")[0] == 2  # without it: bad input


def test_a_failed_feed_makes_refresh_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "feeds.yaml").write_text("feeds:\n  gone:\n    url: missing.xml\ninterests:\n  cloud: [gone]\n")
    (tmp_path / "nurture.yaml").write_text("program:\n  default_locale: en\n")
    monkeypatch.setenv("NURTURE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nurture.yaml"), "feeds", "refresh"],
                                env={"NURTURE_SECRET_KEY": SECRET})
    assert result.exit_code == 1 and "feed gone: failed" in result.output


def test_sink_show_decodes_the_message(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    envelope = build(sender="marketing@example.com", to="ada@example.com", subject="Grüße, Ada",
                     html="<p>Hallo</p>", text="Hallo Ada, čaj?\n", message_id="<m1@example.com>",
                     date=datetime(2026, 11, 2, tzinfo=UTC))
    store = Store(f"sqlite:///{tmp_path / 'cli.db'}")
    store.create()
    with store.session() as session:
        session.add(SinkMessage(mail_from=envelope.sender, recipients=[envelope.recipient], subject="Grüße, Ada",
                                received_at=datetime(2026, 11, 2, tzinfo=UTC), data=envelope.data))
    store.close()
    code, output = run("sink", "show", "1")
    assert code == 0
    assert "Subject: Grüße, Ada" in output and "Hallo Ada, čaj?" in output and "base64" not in output


def test_a_port_in_use_is_one_line(run) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run("serve", "--port", str(port))
    assert code == 2
    assert output.splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use; stop what "
                                   "uses it or choose another port with --port"]


def test_keys_rotate_in_the_development_key_file(tmp_path: Path) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text("program:\n  default_locale: en\n")
    env = {"NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    assert CliRunner().invoke(main, ["--config", str(config), "leads", "list"], env=env).exit_code == 0
    first = (tmp_path / ".nurture-secret").read_text().split()
    result = CliRunner().invoke(main, ["--config", str(config), "keys", "rotate"], env=env)
    assert result.exit_code == 0 and "still verify" in result.output
    rotated = (tmp_path / ".nurture-secret").read_text().split()
    assert len(rotated) == 2 and rotated[1:] == first and rotated[0] != first[0]
    settings = load_settings(env, config)
    assert (settings.secret_key, settings.old_secret_keys) == (rotated[0], tuple(first))


def test_keys_rotate_says_what_to_set_where_keys_come_from_the_environment(tmp_path: Path) -> None:
    env = {"NURTURE_SECRET_KEY": "current", "NURTURE_OLD_SECRET_KEYS": "older, oldest",
           "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    result = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "keys", "rotate"], env=env)
    assert result.exit_code == 0
    assert "  NURTURE_OLD_SECRET_KEYS=current,older,oldest" in result.output.splitlines()
    assert re.search(r"^  NURTURE_SECRET_KEY=[\w-]{40,}$", result.output, re.M)


def test_logs_can_be_json_lines(tmp_path: Path) -> None:
    config = tmp_path / "nurture.yaml"
    config.write_text("program:\n  default_locale: en\n")
    done = subprocess.run([sys.executable, "-m", "nurture.cli", "--log-json", "--config", str(config), "leads", "list"],
                          env={**os.environ, "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'j.db'}"},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(line) for line in done.stderr.splitlines()]  # the development key was generated
    assert line["level"] == "warning" and line["logger"] == "nurture.settings"
    assert line["message"].startswith("NURTURE_SECRET_KEY is not set") and line["time"].endswith("+00:00")
