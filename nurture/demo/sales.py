"""What sales makes of a hand-off, and when it says so (pure).

Leads that asked to be called back, customers and leads that fit win more often; most outcomes come
within days, in office hours; some hand-offs are never given one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random

from nurture.demo.population import Person
from nurture.models import Outcome

UNDECIDED = 0.12  # of hand-offs, those sales never gives an outcome
BASE = {Outcome.WON: 0.16, Outcome.LOST: 0.22, Outcome.NO_RESULT: 0.34, Outcome.NOT_A_FIT: 0.28}
NOTES = {
    Outcome.WON: ("Signed a 12-month subscription.", "Trial converted after a demo.", "Closed with a pilot team."),
    Outcome.LOST: ("Went with a competitor.", "No budget this year.", "Chose to build it in-house."),
    Outcome.NO_RESULT: ("No answer after three calls.", "Interested, not yet ready: try again next quarter.", ""),
    Outcome.NOT_A_FIT: ("A student project.", "Too small for our plans.", "Looking for a product we do not make."),
}


@dataclass(frozen=True)
class Decision:
    outcome: Outcome | None  # None: never decided
    after: timedelta  # from the hand-off mail
    note: str


def decide(person: Person, called_back: bool, rng: Random) -> Decision:
    """Sales' outcome for a hand-off of `person`, which asked to be called back (`called_back`) or not."""
    after = timedelta(hours=min(24 * 30, max(2.0, rng.lognormvariate(math.log(60), 0.9))))
    if rng.random() < UNDECIDED:
        return Decision(None, after, "")
    weights = dict(BASE)
    if called_back:  # a person who asked to talk: more often a deal, seldom not a fit
        weights[Outcome.WON] *= 3.0
        weights[Outcome.NOT_A_FIT] *= 0.4
    weights[Outcome.WON] *= (1.6 if person.fields["customer"] else 1.0) * (0.4 + 1.6 * person.fit)
    weights[Outcome.NOT_A_FIT] *= 1.6 - 1.2 * person.fit
    outcome = rng.choices(list(weights), list(weights.values()))[0]
    return Decision(outcome, after, rng.choice(NOTES[outcome]))


def office_hours(moment: datetime) -> datetime:
    """The moment, or the start of the next office hours (9:00 to 18:00) after it."""
    if moment.hour < 9:
        return moment.replace(hour=9, minute=0, second=0)
    if moment.hour >= 18:
        return (moment + timedelta(days=1)).replace(hour=9, minute=0, second=0)
    return moment
