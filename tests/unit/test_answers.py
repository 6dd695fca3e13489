"""Whose refusal an SMTP reply is: the address's (a hard bounce), nobody's for now, or ours."""

from __future__ import annotations

import pytest

from nurture.errors import Fault
from nurture.send.answers import fault

ADDRESS, TRANSIENT, SENDER = Fault.ADDRESS, Fault.TRANSIENT, Fault.SENDER


@pytest.mark.parametrize(("stage", "code", "text", "expected"), [
    # refused before a recipient is named: always ours, whatever the words
    ("connect", 554, "5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org", SENDER),
    ("connect", 554, "mx.example.com ESMTP not accepting messages", SENDER),
    ("ehlo", 550, "5.1.1 unknown", SENDER),
    ("auth", 535, "5.7.8 Authentication credentials invalid", SENDER),
    ("mail", 530, "5.7.0 Authentication required", SENDER),
    ("mail", 553, "5.1.8 Sender address rejected: Domain not found", SENDER),
    (None, 554, "5.5.1 STARTTLS refused", SENDER),
    # the address, for good (RFC 3463)
    ("rcpt", 550, "5.1.1 <ada@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
     ADDRESS),
    ("rcpt", 550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", ADDRESS),
    ("rcpt", 550, "5.2.1 The email account that you tried to reach is disabled.", ADDRESS),
    ("rcpt", 550, "5.4.1 Recipient address rejected: Access denied. AS(201806281)", ADDRESS),
    ("data", 550, "5.1.1 The email account that you tried to reach does not exist.", ADDRESS),
    # for later: full, busy, 4xx, no answer
    ("rcpt", 552, "5.2.2 The email account that you tried to reach is over quota.", TRANSIENT),
    ("data", 552, "5.2.2 Mailbox full", TRANSIENT),
    ("rcpt", 450, "4.2.0 Greylisted, please try again in 300 seconds", TRANSIENT),
    ("data", 451, "4.3.0 Temporary system failure", TRANSIENT),
    ("connect", 421, "4.7.0 Too many connections, try later", TRANSIENT),
    ("mail", 451, "4.7.1 Please try again later", TRANSIENT),
    ("rcpt", None, "", TRANSIENT),
    ("rcpt", 550, "4.2.2 mailbox full", TRANSIENT),  # the enhanced code is the more precise
    # policy, content, protocol, our message: ours
    ("data", 554, "5.7.1 Message rejected as spam by Content Filtering.", SENDER),
    ("data", 550, "5.7.1 [IPTS04] Messages from 203.0.113.9 weren't sent. Please contact your Internet service "
                  "provider since part of their network is on our block list.", SENDER),
    ("rcpt", 550, "5.7.1 <ada@example.com>: Relay access denied", SENDER),
    ("rcpt", 554, "5.7.606 Access denied, banned sending IP [203.0.113.9]", SENDER),
    ("data", 552, "5.3.4 Message size exceeds fixed maximum message size", SENDER),
    ("data", 554, "5.6.0 Message contains invalid header", SENDER),
    ("rcpt", 550, "5.1.7 Invalid address (the sender's)", SENDER),
    # bare codes: the words, else the code
    ("rcpt", 550, "No such user here", ADDRESS),
    ("rcpt", 550, "Requested action not taken: mailbox unavailable", ADDRESS),
    ("rcpt", 554, "delivery error: dd This user doesn't have a yahoo.com account", ADDRESS),
    ("rcpt", 554, "Relay access denied", SENDER),
    ("data", 554, "Transaction failed: spam message rejected", SENDER),
    ("rcpt", 553, "sorry, that domain isn't in my list of allowed rcpthosts", ADDRESS),
    ("rcpt", 552, "Requested mail action aborted: exceeded storage allocation", TRANSIENT),
    ("data", 554, "Transaction failed", SENDER),
])
def test_a_refusal_is_read_by_its_stage_its_enhanced_code_and_then_its_words(
        stage: str | None, code: int | None, text: str, expected: Fault) -> None:
    assert fault(stage, code, text) is expected
