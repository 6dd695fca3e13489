"""Storing opens and clicks as they arrive: the tracking server's write path.

A hit is answered only once it is committed, so none is lost; but concurrent hits share one
transaction (a group commit), written with the driver's own executemany and nothing else, so that the
pixel answers at nearly the speed of a bare endpoint. Judging the stored hits (machine or person,
points, hand-offs) is nurture.score.judge's work, after the answer.

A click must redirect to the link's URL, which comes from the stored message, never from the request;
messages that went out never change, so their links are kept in memory.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from random import getrandbits
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select

from nurture.models import Send, SendState, link_at
from nurture.store import Store, make_engine
from nurture.store.base import journal_url
from nurture.store.groupcommit import GroupCommit

SENDS = Send.__table__  # type: ignore[attr-defined]
LINKS = select(SENDS.c.id, SENDS.c.links, SENDS.c.state).where(SENDS.c.id.in_(bindparam("ids", expanding=True)))
ATTEMPTS = 3
log = logging.getLogger(__name__)
COLUMNS = ("key", "kind", "send_id", "link", "method", "user_agent", "client", "at")


class Arrival(NamedTuple):
    """One hit as it is stored: the columns of the journal (models.PENDING_HITS), its key aside."""

    kind: str  # "open" or "click"
    send_id: int
    link: int | None
    method: str
    user_agent: str | None
    client: str | None
    at: float  # seconds since the epoch


class Journal(GroupCommit[Arrival, str | None]):
    """Group-commits arrivals; `put` returns once its hit is stored, with the URL of a click.

    One group is written at a time; the hits that arrive meanwhile form the next. On SQLite the journal
    is a database file of its own (store.base.journal_url), so a judge's long transactions on the main
    database never hold it up, and the write is made on the event loop; while a judge deletes judged
    hits, the loop serves requests (see nurture.store.groupcommit). A write that fails otherwise is tried
    twice more.
    """

    def __init__(self, store: Store, max_sends: int = 200_000):
        self.sqlite = store.engine.dialect.name == "sqlite"
        super().__init__(self.write, on_loop=self.sqlite, attempts=ATTEMPTS)
        # on SQLite, a journal file of its own, and reads that take no lock: no wait on the event loop
        self.engine = make_engine(journal_url(store.url), busy_seconds=0) if self.sqlite else store.engine
        self.reader = make_engine(store.url, busy_seconds=0, reads_only=True) if self.sqlite else store.engine
        marker = "?" if self.sqlite else "%s"
        self.sql = f"INSERT INTO pendinghit ({', '.join(COLUMNS)}) VALUES ({', '.join([marker] * len(COLUMNS))})"
        self.links: OrderedDict[int, list[dict[str, Any]]] = OrderedDict()
        self.max_sends = max_sends
        self.after: Callable[[], None] | None = None

    def follow_with(self, after: Callable[[], None] | None) -> None:
        """Call `after` after each commit (an inline judge), in a thread; None: no longer."""
        self.after = after
        self.on_loop = self.sqlite and after is None

    def write(self, arrivals: Sequence[Arrival]) -> list[str | None]:
        """Store the hits in one transaction; the URL of each click (None: no such link, not stored)."""
        clicks = {arrival.send_id for arrival in arrivals if arrival.kind == "click"}
        links = self._links(clicks) if clicks else {}
        urls = [_url(links, arrival) for arrival in arrivals]
        rows = [arrival for arrival, url in zip(arrivals, urls, strict=True) if url or arrival.kind == "open"]
        if rows:
            keyed = [(getrandbits(63), *row) for row in rows]
            with self.engine.begin() as connection:
                connection.exec_driver_sql(self.sql, keyed)
            if self.after is not None:
                try:
                    self.after()
                except Exception:  # the hits are stored: a judge takes them up later
                    log.exception("hits stored but not judged")
        return urls

    def _links(self, send_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
        found = {send_id: self.links[send_id] for send_id in send_ids if send_id in self.links}
        missing = send_ids - found.keys()
        if missing:
            with self.reader.connect() as connection:
                for send_id, links, state in connection.execute(LINKS, {"ids": sorted(missing)}):
                    found[send_id] = links or []
                    if state is SendState.SENT:  # final: safe to keep
                        self.links[send_id] = found[send_id]
            while len(self.links) > self.max_sends:
                self.links.popitem(last=False)
        return found


def _url(links: dict[int, list[dict[str, Any]]], arrival: Arrival) -> str | None:
    if arrival.kind != "click":
        return None
    link = link_at(links.get(arrival.send_id), arrival.link)
    return None if link is None else str(link["url"])
