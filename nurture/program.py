"""Who is due for which email: pure over a lead's send history and the clock.

Step 0 of cycle 0 is the confirmation mail, sent as soon as a lead exists. After that, once the lead
has confirmed (double opt-in) and while it is an MQL and not suppressed, a digest is due every
`digest_every_days` after the lead's last send of the cycle (or after the cycle began), up to
`max_digests_per_cycle`.

What `due` reads of a lead is kept on the lead too (`Lead.last_step`, `last_mailed_at`, `due_at`), so
that the database answers who may be due through an index. `due_at` is written by the rule here, never
by a copy of it: `Due.next_at` when a step is recorded, `next_digest_at` when a fact changes (a
confirmation, a new cycle, a suppression lifted). `due` stays the final judge; the query only narrows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nurture.models import Stage
from nurture.settings import Program

CONFIRMATION = "confirmation"
DIGEST = "digest"


@dataclass(frozen=True)
class History:
    lead_id: int
    stage: Stage
    suppressed: bool
    cycle: int
    cycle_started_at: datetime
    last_step: int | None  # highest step recorded in this cycle
    last_send_at: datetime | None
    confirmed: bool = True  # the lead confirmed its address (or was imported with consent)


@dataclass(frozen=True)
class Due:
    lead_id: int
    cycle: int
    step: int
    template: str
    next_at: datetime | None  # when the lead's next step is due once this one is recorded (Lead.due_at)

    @property
    def digests_before(self) -> int:
        return max(self.step - 1, 0)


def due(history: History, now: datetime, program: Program) -> Due | None:
    """The step a lead is due for now, or None."""
    if history.stage is not Stage.MQL or history.suppressed:
        return None
    if history.last_step is None and history.cycle == 0:
        return confirmation(history.lead_id, history.confirmed, now, program)
    if not history.confirmed:
        return None
    step = (history.last_step or 0) + 1
    if step > program.max_digests_per_cycle:
        return None
    since = history.last_send_at or history.cycle_started_at
    if now - since < timedelta(days=program.digest_every_days):
        return None
    return Due(history.lead_id, history.cycle, step, DIGEST, after(step, history.confirmed, now, program))


def confirmation(lead_id: int, confirmed: bool, now: datetime, program: Program) -> Due:
    """A new lead's first mail, recorded at `now` (by the program, or at once on sign-up)."""
    return Due(lead_id, 0, 0, CONFIRMATION, after(0, confirmed, now, program))


def after(step: int, confirmed: bool, now: datetime, program: Program) -> datetime | None:
    """When the step after `step` will be due, if `step` is recorded at `now`: a digest every
    `digest_every_days` while the cycle has digests left and the lead has confirmed; otherwise None
    (confirming sets it then, through `next_digest_at`)."""
    if not confirmed or step + 1 > program.max_digests_per_cycle:
        return None
    return now + timedelta(days=program.digest_every_days)


def next_digest_at(history: History, program: Program) -> datetime | None:
    """When the lead's next digest is due, from its facts; None while none can be (not an MQL, suppressed,
    not confirmed, the cycle's digests all sent) and for a new lead, whose confirmation is due first."""
    if history.stage is not Stage.MQL or history.suppressed:
        return None
    if history.last_step is None and history.cycle == 0:
        return None
    since = history.last_send_at or history.cycle_started_at
    return after(history.last_step or 0, history.confirmed, since, program)


def due_all(histories: Iterable[History], now: datetime, program: Program) -> list[Due]:
    return [step for history in histories if (step := due(history, now, program))]
