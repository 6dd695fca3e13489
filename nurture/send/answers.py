"""What an SMTP server's refusal means, and so whose it is: the address's (a hard bounce), nobody's for
now (try again later), or ours (the server will not take mail from us: pause, suppress nobody).

Read from the stage of the conversation that was refused and the reply: its RFC 3463 enhanced status
code where the server gives one (`550 5.1.1 ...`), else its basic code and, for the few replies that
say nothing more, its words. A refusal before RCPT (the greeting, EHLO, STARTTLS, AUTH, MAIL FROM)
can only be about us: a blocklisted address, missing credentials, a sender the relay will not take.
"""

from __future__ import annotations

import re

from nurture.errors import Fault

STAGES = {"connect": "the greeting", "ehlo": "EHLO", "starttls": "STARTTLS", "auth": "AUTH", "mail": "MAIL FROM",
          "rcpt": "RCPT TO", "data": "DATA"}
SERVER_STAGES = {"connect", "ehlo", "starttls", "auth", "mail"}  # before any recipient is named
ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")

# RFC 3463 subjects of a permanent (5.x.x) code: the addressing (5.1.x) but for our sender address, a
# disabled mailbox, and a host that is not there or cannot be routed to (5.4.1, 5.4.4; 5.4.1 is also how
# Microsoft's servers refuse an unknown recipient); a full mailbox and a busy system are for later
ADDRESS_DETAILS = {(1, d) for d in range(0, 7)} | {(1, 9), (1, 10), (2, 0), (2, 1), (4, 1), (4, 4)}
TRANSIENT_DETAILS = {(2, 2), (3, 0), (3, 1), (3, 2), (3, 5), (4, 0), (4, 2), (4, 3), (4, 5), (4, 6), (4, 7)}
# what is left is ours: 5.1.7 and 5.1.8 (our sender address), 5.2.3 and 5.3.4 (our message's size), 5.5.x
# (the protocol), 5.6.x (the content), 5.7.x (policy, security, blocklists), and any subject unknown

# a bare 5xx on RCPT or DATA (no enhanced code): its words tell a dead mailbox from a block
ABOUT_THE_ADDRESS = re.compile(r"unknown|no such|does ?n[o']t exist|not exist|not found|invalid (recipient|mailbox|"
                               r"address|user)|mailbox (is )?(unavailable|disabled|inactive)|account (is )?"
                               r"(disabled|inactive|closed)|user not|recipient not|not a valid|"
                               r"doesn't have an? [\w. -]*account", re.IGNORECASE)
ABOUT_US = re.compile(r"spam|block|black ?list|listed|policy|reputation|rbl|dnsbl|relay|denied|authenticat|"
                      r"content|virus|refused|rate", re.IGNORECASE)


MAILBOX_FULL = re.compile(r"\b[45]\.2\.2\b")


def mailbox_full(text: str) -> bool:
    """Whether a refusal says the mailbox is full (X.2.2): a soft bounce, which counts towards suppression
    as those heard later do, where a busy server's 4xx does not."""
    return bool(MAILBOX_FULL.search(text))


def fault(stage: str | None, code: int | None, text: str = "") -> Fault:
    """Whose refusal this is. `stage` is a key of STAGES (None: unknown), `code` the basic reply code (None:
    no reply, such as a timeout or a dropped connection), `text` the reply after the code."""
    if code is None or code < 500:
        return Fault.TRANSIENT  # 4xx, or no answer: the next try may pass (a run pauses after many in a row)
    if stage not in ("rcpt", "data"):  # refused before a recipient was named (or we cannot tell when)
        return Fault.SENDER
    enhanced = ENHANCED.match(text)
    if enhanced:
        if enhanced.group(1) != "5":
            return Fault.TRANSIENT
        detail = (int(enhanced.group(2)), int(enhanced.group(3)))
        if detail in ADDRESS_DETAILS:
            return Fault.ADDRESS
        return Fault.TRANSIENT if detail in TRANSIENT_DETAILS else Fault.SENDER
    if ABOUT_THE_ADDRESS.search(text):
        return Fault.ADDRESS
    if ABOUT_US.search(text):
        return Fault.SENDER
    if code == 552:  # RFC 5321: storage exceeded
        return Fault.TRANSIENT
    if stage == "rcpt" and code in (550, 551, 553):  # mailbox unavailable, not local, name not allowed
        return Fault.ADDRESS
    return Fault.SENDER  # a message refused without a reason that names the address: ours to look at
