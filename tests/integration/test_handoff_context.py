"""A hand-off sales can act on: what the lead asked for (a contact form's message) and why it qualified
are in the hand-off mail, on the profile page and in `leads show`."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

from click.testing import CliRunner
from starlette.testclient import TestClient

from nurture.cli import main
from nurture.engine import Engine
from nurture.models import Stage
from nurture.send.mailer import MemoryMailer
from nurture.server import create_app
from tests.conftest import ROOT, environ, make_lead

MESSAGE = "Please call me about pricing for 50 seats"


def test_a_contact_forms_message_reaches_sales_in_the_mail_the_profile_and_the_cli(engine: Engine,
                                                                                  mailer: MemoryMailer) -> None:
    make_lead(engine.store, email="ada@example.com", company="Analytical Engines")
    with TestClient(create_app(engine), base_url="http://testserver") as client:
        posted = client.post("/api/events", headers={"X-API-Key": engine.settings.api_key},
                             json={"email": "ada@example.com", "kind": "contact_form", "detail": MESSAGE})
        assert posted.status_code == 202 and posted.json()["stage"] == Stage.SQL.value
        [handoff] = [envelope for envelope in mailer.sent if envelope.recipient == engine.settings.sales.email]
        mail = message_from_bytes(handoff.data, policy=policy.default)
        html = mail.get_body(("html",)).get_content()
        text = mail.get_body(("plain",)).get_content()
        for body in (html, text):
            assert "What they asked for" in body and "contact_form" in body and "Why they qualified" in body
        assert MESSAGE in html and f'"{MESSAGE}"' in text
        assert "asked for sales at once" in html  # a contact form qualifies whatever the score

        profile = re.search(r'href="[^"]*(/sales/[^"]+)"', html)
        assert profile
        page = client.get(profile.group(1)).text
        assert 'id="asked"' in page and MESSAGE in page and "this one qualified them" in page

    shown = CliRunner().invoke(main, ["--config", str(ROOT / "nurture.yaml"), "leads", "show", "ada@example.com"],
                               env=environ(engine.settings.database_url))
    assert shown.exit_code == 0, shown.output
    assert "asked: " in shown.stdout and f"contact_form: {MESSAGE}" in shown.stdout
    assert "qualified by: " in shown.stdout and "external (contact_form)" in shown.stdout
    assert f'"{MESSAGE}"' in shown.stdout  # the history line carries it too
