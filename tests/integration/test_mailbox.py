"""The bounce mailbox polled over IMAP, against a real IMAP server (Debian's dovecot, started by the test
in a folder of its own): every unseen message is taken once, acted on and flagged as seen."""

from __future__ import annotations

import asyncio
import imaplib
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nurture.cli import main
from nurture.engine import Engine
from nurture.inbound.feedback import Feedback
from nurture.inbound.mailbox import poll
from nurture.models import Suppression
from nurture.send.mailer import MemoryMailer
from nurture.settings import Mailbox, Settings
from nurture.store import Store
from tests.conftest import ROOT, T0, environ, free_port, make_lead
from tests.integration.test_bounces import notice
from tests.unit.test_notices import RECOGNIZED, UNRECOGNIZED

DOVECOT = Path("/usr/sbin/dovecot")
USER, PASSWORD = "bounces@example.com", "s3cret"
pytestmark = pytest.mark.skipif(not DOVECOT.exists() or os.geteuid() != 0,
                                reason="an IMAP server to poll needs Debian's dovecot-imapd, started as root")

CONFIG = """
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{folder}/mail/%u
first_valid_uid = 100
default_internal_user = {internal}
default_login_user = {login}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@pytest.fixture
def imap_server() -> Iterator[int]:
    """dovecot in the foreground on a free port, with one mailbox; yields the port. Its folder is one its
    own users (dovecot, nobody) can reach, unlike pytest's."""
    with tempfile.TemporaryDirectory(prefix="nurture-dovecot-") as name:
        yield from _dovecot(Path(name))


def _dovecot(folder: Path) -> Iterator[int]:
    for sub in ("run", "state", "home", "mail"):
        (folder / sub).mkdir(parents=True)
    for path in (folder, folder / "home", folder / "mail"):
        path.chmod(0o777 if path.name in ("home", "mail") else 0o755)
    (folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n", encoding="utf-8")
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    (folder / "dovecot.conf").write_text(CONFIG.format(
        folder=folder, port=port, uid=nobody.pw_uid, gid=nobody.pw_gid, internal="dovecot", login="dovenull"),
        encoding="utf-8")
    server = subprocess.Popen([str(DOVECOT), "-F", "-c", str(folder / "dovecot.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                imaplib.IMAP4("127.0.0.1", port, timeout=2).logout()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (folder / "dovecot.log").read_text()
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def deliver(port: int, *messages: bytes) -> None:
    """What the relay does: put bounces in the mailbox."""
    client = imaplib.IMAP4("127.0.0.1", port, timeout=5)
    client.login(USER, PASSWORD)
    for message in messages:
        client.append("INBOX", None, None, message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    client.logout()


def flags(port: int) -> list[bytes]:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=5)
    client.login(USER, PASSWORD)
    client.select("INBOX")
    _, data = client.fetch("1:*", "(FLAGS)")
    client.logout()
    return [item for item in data if isinstance(item, bytes)]


@pytest.fixture
def polling(settings: Settings, imap_server: int) -> Settings:
    mailbox = Mailbox(host="127.0.0.1", port=imap_server, username=USER, security="none")
    bounces = settings.bounces.model_copy(update={"mailbox": mailbox})
    return settings.model_copy(update={"bounces": bounces, "imap_password": PASSWORD})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_each_unseen_bounce_is_taken_once_and_flagged_seen(polling: Settings, store: Store, imap_server: int) -> None:
    mailer = MemoryMailer()
    make_lead(store, email="ada@example.com")
    make_lead(store, email="bob@example.com")
    asyncio.run(Engine(polling, store, mailer).send_due(T0))
    sent = {envelope.recipient: envelope for envelope in mailer.sent}
    deliver(imap_server, notice("gmail-does-not-exist.eml", sent["ada@example.com"]),
            notice("out-of-office.eml", sent["bob@example.com"]))

    taken = poll(Feedback(polling, store), T0)
    assert [(mail.via, mail.recognized) for mail in taken] == [("mailbox", True), ("mailbox", False)]
    assert store.lead_by_email("ada@example.com").suppressed is Suppression.BOUNCED
    assert store.lead_by_email("bob@example.com").suppressed is None
    assert all(b"\\Seen" in line for line in flags(imap_server))
    assert poll(Feedback(polling, store), T0) == []  # nothing is taken twice
    assert len(store.inbound()) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bounces_poll_on_the_command_line_and_a_wrong_password(polling: Settings, store: Store,
                                                               imap_server: int, tmp_path: Path) -> None:
    make_lead(store, email="ada@example.com")
    config = tmp_path / "nurture.yaml"
    config.write_text((ROOT / "nurture.yaml").read_text(encoding="utf-8") + (
        f"\nbounces:\n  mailbox:\n    host: 127.0.0.1\n    port: {imap_server}\n    username: {USER}\n"
        f"    security: none\n") + f"feeds_file: {ROOT / 'feeds.yaml'}\ntemplates_dir: {ROOT / 'templates'}\n",
        encoding="utf-8")
    deliver(imap_server, notice("qmail-classic.eml", type("E", (), {  # a bounce that names only the address
        "sender": "bounces@example.com", "recipient": "ada@example.com", "message_id": "<x@example.com>"})()))
    env = environ(polling.database_url, NURTURE_IMAP_PASSWORD=PASSWORD)
    result = CliRunner().invoke(main, ["--config", str(config), "bounces", "poll"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "1: bounce (flufl.bounce): hard bounce, lead 1 suppressed\n"
    wrong = CliRunner().invoke(main, ["--config", str(config), "bounces", "poll"],
                               env={**env, "NURTURE_IMAP_PASSWORD": "wrong"})
    assert wrong.exit_code == 1
    assert wrong.output.strip().splitlines()[-1].startswith(
        f"error: the bounce mailbox {USER}@127.0.0.1:{imap_server} cannot be opened:")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_nurture_run_polls_the_mailbox_as_a_job(polling: Settings, store: Store, imap_server: int) -> None:
    from nurture.scheduler import Leadership, mailbox_job

    make_lead(store, email="ada@example.com")
    deliver(imap_server, notice("qmail-classic.eml", type("E", (), {
        "sender": "bounces@example.com", "recipient": "ada@example.com", "message_id": "<x@example.com>"})()))
    asyncio.run(mailbox_job(Engine(polling, store, MemoryMailer()), Leadership(store)))
    assert store.lead_by_email("ada@example.com").suppressed is Suppression.BOUNCED
    broken = polling.model_copy(update={"imap_password": "wrong"})
    asyncio.run(mailbox_job(Engine(broken, store, MemoryMailer()), Leadership(store)))  # logged, not raised


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_whole_corpus_through_the_mailbox(polling: Settings, store: Store, imap_server: int) -> None:
    mailer = MemoryMailer()
    make_lead(store, email="ada@example.com")
    asyncio.run(Engine(polling, store, mailer).send_due(T0))
    names = sorted([*RECOGNIZED, *UNRECOGNIZED])
    deliver(imap_server, *(notice(name, mailer.sent[0]) for name in names))
    taken = poll(Feedback(polling, store), T0)
    assert len(taken) == len(names)
    send_id = store.sends_of(1)[0].id
    for name, mail in zip(names, taken, strict=True):  # IMAP gives them back in the order they came
        if name in RECOGNIZED:  # no return path of its own here: the send by the Message-ID it quotes, else the lead
            quotes = RECOGNIZED[name][3]
            assert (mail.recognized, mail.lead_id, mail.send_id) == (True, 1, send_id if quotes else None), name
        else:
            assert not mail.recognized and UNRECOGNIZED[name] in mail.outcome, (name, mail.outcome)
