"""The whole story on one machine: a real SMTP sink, the real server, the real command line.

A lead is added, gets the confirmation and (a cadence later) a digest, opens and clicks them over
HTTP, reaches 12 points, and sales receives exactly one hand-off mail whose link opens the profile
page, where "No result" returns the lead to nurture.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from nurture.engine import Engine
from nurture.models import Stage
from nurture.runtime import smtp_mailer
from nurture.send.sink import start_sink
from nurture.server import create_app
from nurture.settings import load_settings
from nurture.store import Store
from tests.conftest import ROOT, environ, free_port
from tests.servers import serving

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
SALES = "sales@example.com"


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "nurture.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def received(sink: Store, to: str) -> list[EmailMessage]:
    messages = [message_from_bytes(m.data, policy=policy.default) for m in sink.sink_messages(1000, to)]
    return [m for m in reversed(messages) if isinstance(m, EmailMessage)]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def link_labelled(html: str, label: str) -> str:
    found = re.search(r'<a [^>]*href="([^"]+)"[^>]*>\s*' + re.escape(label), html)
    assert found, f"no link labelled {label!r}"
    return found.group(1)


def pixel_of(html: str) -> str:
    found = re.search(r'<img src="([^"]+\.gif)"', html)
    assert found, "no tracking pixel"
    return found.group(1)


def wait_for(condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_a_lead_goes_from_trial_to_sales_and_back(database_url: str, tmp_path: Path) -> None:
    start = datetime.now(UTC) - timedelta(days=10)  # hits and the sales decision happen at the real now
    sink_store = Store(f"sqlite:///{tmp_path / 'sink.db'}")
    sink_store.create()
    smtp_port, http_port = free_port(), free_port()
    env = environ(database_url, NURTURE_SMTP_PORT=str(smtp_port), NURTURE_SMTP_SINK="false",
                  NURTURE_BASE_URL=f"http://127.0.0.1:{http_port}", NURTURE_CONFIG=str(ROOT / "nurture.yaml"))
    settings = load_settings(env, ROOT / "nurture.yaml")
    store = Store(settings.database_url)
    store.create()
    sink = start_sink(sink_store, "127.0.0.1", smtp_port)
    try:
        engine = Engine(settings, store, smtp_mailer(settings))
        with serving(create_app(engine), http_port) as base, httpx.Client(headers={"User-Agent": BROWSER}) as web:
            cli(env, "leads", "add", "ada@example.com", "--first-name", "Ada", "--company", "Analytical Engines",
                "--interest", "cloud", "--industry", "finance")
            cli(env, "send-due", "--at", start.isoformat())
            cli(env, "send-due", "--at", (start + timedelta(days=3)).isoformat())  # nothing due yet
            cli(env, "send-due", "--at", (start + timedelta(days=7)).isoformat())
            mails = received(sink_store, "ada@example.com")
            assert [m["Subject"].startswith("Welcome") for m in mails] == [True, False]
            confirmation, digest = (html_of(m) for m in mails)
            assert mails[1]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert mails[0]["Message-ID"] != mails[1]["Message-ID"]

            for html in (confirmation, digest):
                assert web.get(pixel_of(html)).headers["content-type"] == "image/gif"
                assert web.get(pixel_of(html)).status_code == 200  # a reload earns nothing
            wait_for(lambda: store.pending_hits() == 0)  # judged by the server's judge process
            assert store.lead_by_email("ada@example.com").score == 2

            callback = web.get(link_labelled(confirmation, "Call me back"))
            assert callback.status_code == 302
            assert callback.headers["location"] == "https://example.com/thanks-we-will-call"
            wait_for(lambda: store.pending_hits() == 0)
            assert store.lead_by_email("ada@example.com").stage is Stage.MQL  # 1 + 1 + 8 = 10
            web.get(link_labelled(digest, "Call me back"))
            for _ in range(3):
                web.get(link_labelled(digest, "Call me back"))  # repeated: no more points, no new hand-off
            wait_for(lambda: store.pending_hits() == 0)
            assert store.lead_by_email("ada@example.com").score == 18
            wait_for(lambda: store.lead_by_email("ada@example.com").stage is Stage.SQL)  # after settle_seconds
            wait_for(lambda: len(received(sink_store, SALES)) >= 1)
            time.sleep(0.3)
            handoffs = received(sink_store, SALES)
            assert len(handoffs) == 1
            assert "ada@example.com" in handoffs[0].get_body(("plain",)).get_content()

            profile_url = link_labelled(html_of(handoffs[0]), "Open the lead's profile")
            assert profile_url.startswith(base + "/sales/")
            profile = web.get(profile_url)
            assert profile.status_code == 200
            assert "ada@example.com" in profile.text and "SQL" in profile.text and "callback" in profile.text
            assert web.get(profile_url[:-3] + "AAA").status_code == 404

            cli(env, "send-due", "--at", (start + timedelta(days=14)).isoformat())
            assert len(received(sink_store, "ada@example.com")) == 2  # an SQL gets no nurture mail

            decided = web.post(profile_url, data={"outcome": "no_result"}, follow_redirects=False)
            assert decided.status_code == 303
            lead = store.lead_by_email("ada@example.com")
            assert (lead.stage, lead.score, lead.cycle) == (Stage.MQL, 0, 1)
            assert web.post(profile_url, data={"outcome": "won"}).status_code == 400  # already decided

            cli(env, "send-due", "--at", (start + timedelta(days=18)).isoformat())
            back = received(sink_store, "ada@example.com")
            assert len(back) == 3, "the lead is back in nurture"
            assert "Call me back" in html_of(back[2])
            shown = cli(env, "leads", "show", "ada@example.com")
            assert "stage mql" in shown and "cycle 1" in shown
    finally:
        sink.stop()
        store.close()
        sink_store.close()
