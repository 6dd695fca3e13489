"""Who is due for which email: pure over a lead's send history and the clock.

Step 0 of cycle 0 is the confirmation mail, sent as soon as a lead exists. After that, once the lead
has confirmed (double opt-in) and while it is an MQL and not suppressed, a digest is due every
`digest_every_days` after the lead's last send of the cycle (or after the cycle began), up to
`max_digests_per_cycle`.
"""

from __future__ import annotations

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

    @property
    def digests_before(self) -> int:
        return max(self.step - 1, 0)


def due(history: History, now: datetime, program: Program) -> Due | None:
    """The step a lead is due for now, or None."""
    if history.stage is not Stage.MQL or history.suppressed:
        return None
    if history.last_step is None and history.cycle == 0:
        return Due(history.lead_id, 0, 0, CONFIRMATION)
    if not history.confirmed:
        return None
    step = (history.last_step or 0) + 1
    if step > program.max_digests_per_cycle:
        return None
    since = history.last_send_at or history.cycle_started_at
    if now - since < timedelta(days=program.digest_every_days):
        return None
    return Due(history.lead_id, history.cycle, step, DIGEST)


def due_all(histories: list[History], now: datetime, program: Program) -> list[Due]:
    return [step for history in histories if (step := due(history, now, program))]
