"""Request helpers shared by the server's handlers: the clock, the hit, admin auth, hand-off tasks."""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request

from nurture.engine import Engine


def now() -> datetime:
    return datetime.now(UTC)


def handoff_task(request: Request, handoff_id: int | None) -> BackgroundTask | None:
    """Deliver a new hand-off after the response; the scheduler retries it if this fails."""
    if handoff_id is None:
        return None
    engine: Engine = request.app.state.engine
    return BackgroundTask(engine.deliver_handoff, handoff_id, now())


ADMIN_TRIES = 10  # failed admin logins from one address within ADMIN_WINDOW_SECONDS, then it waits
ADMIN_WINDOW_SECONDS = 600.0


class Throttle:
    """Failures per address in a sliding window: past `tries`, the address is refused until they age out.
    Kept per process: it slows a password guesser down by orders of magnitude, which is its point."""

    def __init__(self, tries: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.tries, self.window, self.clock = tries, window, clock
        self.failures: dict[str, deque[float]] = {}

    def blocked(self, who: str) -> bool:
        seen = self.failures.get(who)
        if not seen:
            return False
        while seen and seen[0] <= self.clock() - self.window:
            seen.popleft()
        if not seen:
            del self.failures[who]
        return len(seen) >= self.tries

    def failed(self, who: str) -> None:
        self.failures.setdefault(who, deque()).append(self.clock())


def check_admin(request: Request) -> None:
    """HTTP Basic with the admin key as password; raises 401 otherwise, and 429 for an address that
    failed too often lately."""
    logins: Throttle = request.app.state.admin_logins
    who = request.client.host if request.client else ""
    if logins.blocked(who):
        raise HTTPException(429, "too many failed logins from this address; try again later")
    expected = request.app.state.engine.settings.admin_key
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    try:
        _, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        password = ""
    if scheme.lower() != "basic" or not expected or not hmac.compare_digest(password.encode(), expected.encode()):
        if encoded:  # a browser's first request carries no credentials: no failure yet
            logins.failed(who)
        raise HTTPException(401, headers={"WWW-Authenticate": 'Basic realm="nurture"'})
    if request.method == "POST" and _cross_site(request):
        # a browser sends remembered Basic credentials along with a form posted from any other site
        raise HTTPException(403, "cross-site request refused")


def _cross_site(request: Request) -> bool:
    """Whether a browser posted this from another site. Its own word (Sec-Fetch-Site) first: under the
    pages' `Referrer-Policy: no-referrer` Chromium posts a same-origin form with `Origin: null`."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return bool(origin) and urlsplit(origin or "").netloc != request.url.netloc
