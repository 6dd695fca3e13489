"""Security headers on every answer of the app (the hot path sets its own): no framing by other sites,
no sniffing, no Referer that could carry a token, and a content policy that lets a page load nothing
but its own inline styles and same-origin frames, forms and images."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
          "frame-src 'self'; frame-ancestors 'self'; base-uri 'none'")
HEADERS = {
    "content-security-policy": POLICY,  # a handler that sets its own (the sandboxed sink viewer) keeps it
    "x-frame-options": "SAMEORIGIN",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
