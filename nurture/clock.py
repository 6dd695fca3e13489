"""The wall clock as a port: read through a callable that is passed in, so a test can set the time.

Program time (`now`, handed down by the caller of a tick, `send-due --at`) is another thing: leases,
claims and delivery times run on the wall clock whatever time the program runs at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)
