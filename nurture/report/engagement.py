"""What people did with the mail: per step and template, and per tracked link and tag. A machine's hit (a
link scanner, a privacy proxy, a prefetch: `Event.machine`) is never a person's; it is counted apart, so
the share the judge filtered out shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, desc, func, select
from sqlalchemy.sql.elements import ColumnElement

from nurture.models import EventKind, SendState
from nurture.report import sql
from nurture.report.funnel import ratio
from nurture.report.sql import EVENTS, SENDS, Window

DONE = (SendState.SENT, SendState.BOUNCED)  # a send that went out, or was refused on the way


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
    """Each step and template, over the sends that went out in `window`."""
    person = EVENTS.c.machine.is_(False)
    hit = EVENTS.c.kind.in_([EventKind.OPEN, EventKind.CLICK])
    per_send = (select(EVENTS.c.send_id,
                       _ever((EVENTS.c.kind == EventKind.OPEN) & person).label("opened"),
                       _ever((EVENTS.c.kind == EventKind.CLICK) & person).label("clicked"),
                       _count((EVENTS.c.kind == EventKind.CLICK) & person).label("clicks"),
                       _ever(EVENTS.c.kind == EventKind.UNSUBSCRIBE).label("unsubscribed"),
                       _ever(EVENTS.c.kind == EventKind.BOUNCE).label("bounced"),
                       _count(hit & EVENTS.c.machine.is_(True)).label("machine_hits"),
                       _count(hit).label("hits"))
                .where(EVENTS.c.send_id.is_not(None)).group_by(EVENTS.c.send_id).subquery("per_send"))
    bounced = (SENDS.c.state == SendState.BOUNCED) | (per_send.c.bounced == 1)
    query = (select(SENDS.c.template, SENDS.c.step, func.count(), func.sum(case((bounced, 1), else_=0)),
                    *(func.coalesce(func.sum(column), 0) for column in (
                        per_send.c.opened, per_send.c.clicked, per_send.c.clicks, per_send.c.unsubscribed,
                        per_send.c.machine_hits, per_send.c.hits)))
             .select_from(SENDS.outerjoin(per_send, per_send.c.send_id == SENDS.c.id))
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


def clicks_by(connection: Connection, window: Window, field: str, limit: int = 25) -> list[Clicks]:
    """People's clicks in `window` by the links' `field`: "url", or "tag" (a link's tag, else its action,
    such as callback), the most clicked first."""
    dialect = connection.dialect.name
    name: Any = sql.link_field(dialect, SENDS.c.links, EVENTS.c.link, "url")
    if field == "tag":
        name = func.coalesce(sql.link_field(dialect, SENDS.c.links, EVENTS.c.link, "tag"),
                             sql.link_field(dialect, SENDS.c.links, EVENTS.c.link, "action"), "(none)")
    clicks = func.count().label("clicks")
    query = (select(name.label("name"), clicks, func.count(EVENTS.c.lead_id.distinct()))
             .select_from(EVENTS.join(SENDS, SENDS.c.id == EVENTS.c.send_id))
             .where(EVENTS.c.kind == EventKind.CLICK, EVENTS.c.machine.is_(False),
                    *window.holds(EVENTS.c.occurred_at))
             .group_by(name).order_by(desc(clicks), name).limit(limit))
    return [Clicks(str(value), int(count), int(people)) for value, count, people in connection.execute(query)]
