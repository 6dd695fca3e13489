"""What a database holds after a demo, counted: the summary `nurture demo` ends with, and what its tests
compare between two runs of one seed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import col, select

from nurture.models import Event, EventKind, Handoff, Lead, Send, SendState
from nurture.store import Store


@dataclass(frozen=True)
class Census:
    leads: int
    stages: dict[str, int]  # leads by stage (erased ones apart)
    erased: int  # sign-ups never confirmed, erased after program.unconfirmed_days
    suppressed: dict[str, int]  # leads by suppression: unsubscribed, bounced
    sends: dict[str, int]  # by state
    people: dict[str, int]  # opens and clicks judged a person's, by kind
    machines: dict[str, int]  # ... and a machine's
    handoffs: int
    outcomes: dict[str, int]  # by outcome; "none": waiting for one

    @property
    def sent(self) -> int:
        return self.sends.get(SendState.SENT.value, 0)

    def line(self) -> str:
        """The whole in one line."""
        decided = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in sorted(self.outcomes.items())
                            if name != "none")
        return (f"{self.leads} leads ({', '.join(f'{count} {stage}' for stage, count in sorted(self.stages.items()))}"
                f", {self.erased} erased unconfirmed), {self.sent} sends, events by people "
                f"{sum(self.people.values())} (opens {self.people.get('open', 0)}, clicks "
                f"{self.people.get('click', 0)}), by machines {sum(self.machines.values())} (not counted), "
                f"{self.handoffs} hand-offs ({decided}, {self.outcomes.get('none', 0)} without outcome)")


def census(store: Store) -> Census:
    with store.reading() as session:
        stages = session.exec(select(Lead.stage, func.count()).where(col(Lead.erased_at).is_(None))
                              .group_by(col(Lead.stage))).all()
        erased = session.exec(select(func.count()).select_from(Lead).where(col(Lead.erased_at).isnot(None))).one()
        suppressed = session.exec(select(Lead.suppressed, func.count()).where(col(Lead.suppressed).isnot(None))
                                  .group_by(col(Lead.suppressed))).all()
        sends = session.exec(select(Send.state, func.count()).group_by(col(Send.state))).all()
        events = session.exec(select(Event.kind, Event.machine, func.count())
                              .where(col(Event.kind).in_([EventKind.OPEN, EventKind.CLICK]))
                              .group_by(col(Event.kind), col(Event.machine))).all()
        outcomes = session.exec(select(Handoff.outcome, func.count()).group_by(col(Handoff.outcome))).all()
    return Census(
        leads=sum(count for _, count in stages) + erased, stages={str(stage): count for stage, count in stages},
        erased=erased, suppressed={str(reason): count for reason, count in suppressed if reason is not None},
        sends={str(state): count for state, count in sends},
        people={str(kind): count for kind, machine, count in events if not machine},
        machines={str(kind): count for kind, machine, count in events if machine},
        handoffs=sum(count for _, count in outcomes),
        outcomes={(str(outcome) if outcome else "none"): count for outcome, count in outcomes})
