"""The hot path: opens and clicks, answered by a bare ASGI handler in front of the Starlette app.

Every email opened loads the pixel, and scanners fetch every link, so these two routes carry nearly all
the traffic. They skip Starlette's routing and middleware; everything else goes to the app.
"""

from __future__ import annotations

import logging
from time import time
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from nurture.errors import TokenError
from nurture.track.actions import Request, Tracking

log = logging.getLogger(__name__)

PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002014400" "3b")
NO_CACHE = [(b"cache-control", b"no-store, no-cache, must-revalidate, max-age=0"), (b"pragma", b"no-cache")]
NO_REFERRER = (b"referrer-policy", b"no-referrer")  # the token in this URL never travels on as a Referer
GIF = [(b"content-type", b"image/gif"), (b"content-length", str(len(PIXEL)).encode()), *NO_CACHE]
SAFE_IN_URL = ":/%#?=@[]!$&'()*+,;~"


class HotPath:
    """Serves /o/<token>.gif and /c/<token>; hands every other request to `app`."""

    def __init__(self, app: Starlette, tracking: Tracking):
        self.app = app
        self.state = app.state
        self.tracking = tracking

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/o/", "/c/")):
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            return await _answer(send, 405, b"Method Not Allowed", [(b"allow", b"GET, HEAD")])
        if path.startswith("/o/") and path.endswith(".gif"):
            return await self.pixel(scope, send, path[3:-4])
        if path.startswith("/c/"):
            return await self.click(scope, send, path[3:])
        await _answer(send, 404, b"Not found")

    async def pixel(self, scope: Scope, send: Send, token: str) -> None:
        """Always the image; a bad token or a failed write is logged, never shown to the recipient."""
        try:
            await self.tracking.open(token, _request(scope))
        except TokenError:
            pass
        except Exception:  # noqa: BLE001 - the recipient always gets the image
            log.exception("open not stored")
        await send({"type": "http.response.start", "status": 200, "headers": GIF})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else PIXEL})

    async def click(self, scope: Scope, send: Send, token: str) -> None:
        try:
            url = await self.tracking.click(token, _request(scope))
        except TokenError:
            return await _answer(send, 404, b"Not found")
        location = quote(url, safe=SAFE_IN_URL).encode("ascii")
        headers = [(b"location", location), (b"content-length", b"0"), *NO_CACHE, NO_REFERRER]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


async def _answer(send: Send, status: int, text: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    plain = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": plain + (headers or [])})
    await send({"type": "http.response.body", "body": text})


def _request(scope: Scope) -> Request:
    agent = next((value for name, value in scope["headers"] if name == b"user-agent"), b"")
    client = scope.get("client")
    return Request(scope["method"], agent[:300].decode("latin-1") or None, client[0] if client else None, time())
