"""Request helpers shared by the server's handlers: the clock, the hit, admin auth, hand-off tasks."""

from __future__ import annotations

import base64
import binascii
import hmac
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


def check_admin(request: Request) -> None:
    """HTTP Basic with the admin key as password; raises 401 otherwise."""
    expected = request.app.state.engine.settings.admin_key
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    try:
        _, _, password = base64.b64decode(encoded).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        password = ""
    if scheme.lower() != "basic" or not expected or not hmac.compare_digest(password.encode(), expected.encode()):
        raise HTTPException(401, headers={"WWW-Authenticate": 'Basic realm="nurture"'})
    origin = request.headers.get("origin")
    if request.method == "POST" and origin and urlsplit(origin).netloc != request.url.netloc:
        # a browser sends remembered Basic credentials along with a form posted from any other site
        raise HTTPException(403, "cross-site request refused")
