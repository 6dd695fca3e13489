"""Limits that hold across every process of a deployment: the pace of delivery (a relay's rate is per
account) and windows of requests (sign-ups per visitor). Each is one atomic upsert, so two processes
never take the same slot or both let the request over the limit through: PostgreSQL locks the row,
SQLite has one writer at a time.

Times are seconds since the epoch from the caller's clock: the processes may run on several hosts,
whose clocks are taken to agree (NTP) to well within a slot.
"""

from __future__ import annotations

from sqlalchemy import text

from nurture.store.base import Base

TAKE_SLOT = text("""
    INSERT INTO paceslot (stream, next_at) VALUES (:stream, :now + :interval)
    ON CONFLICT (stream) DO UPDATE
        SET next_at = CASE WHEN paceslot.next_at > :now THEN paceslot.next_at ELSE :now END + :interval
    RETURNING next_at - :interval
""")

COUNT_REQUEST = text("""
    INSERT INTO requestwindow (key, count, ends_at) VALUES (:key, 1, :now + :window)
    ON CONFLICT (key) DO UPDATE
        SET count = CASE WHEN requestwindow.ends_at > :now THEN requestwindow.count + 1 ELSE 1 END,
            ends_at = CASE WHEN requestwindow.ends_at > :now THEN requestwindow.ends_at ELSE :now + :window END
    RETURNING count
""")

FORGET_WINDOWS = text("DELETE FROM requestwindow WHERE ends_at <= :now")


class Limits(Base):
    def take_slot(self, stream: str, interval: float, now: float) -> float:
        """Take the next free moment to send on `stream`, slots being `interval` seconds apart; return it
        (`now` when the stream has been idle for an interval or more)."""
        with self.engine.begin() as connection:
            return float(connection.execute(TAKE_SLOT, {"stream": stream, "interval": interval, "now": now})
                         .scalar_one())

    def count_request(self, key: str, window: float, now: float) -> int:
        """Count a request by `key`: return how many it has made in its current window, this one included.
        A window opens with a key's first request and lasts `window` seconds; ended windows are dropped."""
        with self.engine.begin() as connection:
            connection.execute(FORGET_WINDOWS, {"now": now})
            return int(connection.execute(COUNT_REQUEST, {"key": key, "window": window, "now": now}).scalar_one())
