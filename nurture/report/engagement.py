"""What people did with the mail: per step and template, and per tracked link and tag. A machine's hit (a
link scanner, a privacy proxy, a prefetch: `Event.machine`) is never a person's; it is counted apart, so
the share the judge filtered out shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, desc, func, literal, select, text, union_all
from sqlalchemy.sql.elements import ColumnElement

from nurture import models
from nurture.models import EventKind, SendState
from nurture.report.funnel import ratio
from nurture.report.sql import EVENTS, SENDS, STEP_DAYS, Window, day_sums
from nurture.store.figures import steps as kept

DONE = (SendState.SENT, SendState.BOUNCED)  # a send that went out, or was refused on the way
# as the partial indexes of nurture.models say them, word for word: SQLite uses such an index only then
PERSON_CLICKS = text(str(models.PERSON_CLICKS))
NOTICES = text(str(models.NOTICES))
FORGOTTEN = "(forgotten: its lead was erased)"  # an erased lead's clicks keep no links


@dataclass(frozen=True)
class Step:
    """One email of the program (its step and template) and what people made of it; `opened` and
    `clicked` count sends a person opened or clicked (unique), `clicks` every click by a person."""

    template: str
    step: int
    sent: int
    bounced: int
    opened: int
    clicked: int
    clicks: int
    unsubscribed: int
    machine_hits: int  # opens and clicks judged a machine's
    hits: int  # every open and click

    @property
    def delivered(self) -> int:
        return self.sent - self.bounced

    @property
    def open_rate(self) -> float | None:
        return ratio(self.opened, self.delivered)

    @property
    def click_rate(self) -> float | None:
        return ratio(self.clicked, self.delivered)

    @property
    def machine_share(self) -> float | None:
        return ratio(self.machine_hits, self.hits)


def steps(connection: Connection, window: Window) -> list[Step]:
    """Each step and template, over the sends that went out (or were refused) in `window`. On SQLite, for
    a window of whole days, read off the figures it keeps a day at a time (nurture.store.figures); else off
    the sends themselves (`live_steps`)."""
    if connection.dialect.name != "sqlite" or not window.whole_days:
        return live_steps(connection, window)
    query = day_sums(STEP_DAYS, kept.FIGURES, window, STEP_DAYS.c.step, STEP_DAYS.c.template)
    return [Step(template, int(step), *(int(value or 0) for value in rest))
            for step, template, *rest in connection.execute(query)]


def live_steps(connection: Connection, window: Window) -> list[Step]:
    """`steps` read off the sends, where the judge keeps what people did with each (nurture.store.engagement);
    unsubscribes and later bounces from the few events that name a send (a partial index holds them)."""
    notices = (select(EVENTS.c.send_id, _ever(EVENTS.c.kind == EventKind.UNSUBSCRIBE).label("unsubscribed"),
                      _ever(EVENTS.c.kind == EventKind.BOUNCE).label("bounced"))
               .where(NOTICES).group_by(EVENTS.c.send_id).subquery("notices"))
    bounced = (SENDS.c.state == SendState.BOUNCED) | (notices.c.bounced == 1)
    query = (select(SENDS.c.template, SENDS.c.step, func.count(), _count(bounced),
                    _count(SENDS.c.opened_at.is_not(None)), _count(SENDS.c.clicked_at.is_not(None)),
                    func.sum(SENDS.c.clicks), func.coalesce(func.sum(notices.c.unsubscribed), 0),
                    func.sum(SENDS.c.machine_hits), func.sum(SENDS.c.hits))
             .select_from(SENDS.outerjoin(notices, notices.c.send_id == SENDS.c.id))
             .where(SENDS.c.state.in_(DONE), *window.holds(func.coalesce(SENDS.c.sent_at, SENDS.c.created_at)))
             .group_by(SENDS.c.step, SENDS.c.template).order_by(SENDS.c.step, SENDS.c.template))
    return [Step(template, int(step), *(int(value or 0) for value in rest))
            for template, step, *rest in connection.execute(query)]


def _ever(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.max(case((condition, 1), else_=0))


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


@dataclass(frozen=True)
class Clicks:
    """People's clicks on one link (by its address) or on the links of one tag."""

    name: str
    clicks: int
    people: int


def clicks(connection: Connection, window: Window, limit: int = 25) -> tuple[list[Clicks], list[Clicks]]:
    """People's clicks in `window` by link (its address) and by tag (a link's tag, else its action, such as
    callback), the most clicked first. Each click keeps its link as the judge found it; the partial index of
    a person's clicks holds all this reads of them (no mail is looked up: that was 330-400 ms of
    PostgreSQL's 1.1 s report at 100,000 leads), and the links are grouped as that index orders them (on
    SQLite a grouping by the address as read, NULL for an erased lead's, takes no sort: 100,000 clicks,
    76 -> 58 ms for both)."""
    named = {"url": EVENTS.c.url,  # NULL: its lead was erased
             "tag": case((EVENTS.c.url.is_(None), FORGOTTEN),
                         else_=func.coalesce(EVENTS.c.tag, EVENTS.c.action, "(none)"))}

    def most_clicked(field: str) -> Any:
        name, total = named[field], func.count().label("clicks")
        return (select(literal(field).label("field"), name.label("name"), total,
                       func.count(EVENTS.c.lead_id.distinct()).label("people"))
                .where(PERSON_CLICKS, *window.holds(EVENTS.c.occurred_at))
                .group_by(name).order_by(desc(total), func.coalesce(name, FORGOTTEN)).limit(limit).subquery())

    found: dict[str, list[Clicks]] = {"url": [], "tag": []}
    query = union_all(select(most_clicked("url")), select(most_clicked("tag")))
    for field, name, count, people in connection.execute(query):
        found[field].append(Clicks(FORGOTTEN if name is None else str(name), int(count), int(people)))
    for rows in found.values():
        rows.sort(key=lambda c: (-c.clicks, c.name))
    return found["url"], found["tag"]
