"""The ASGI app. Handlers are thin: parse, verify, record, answer; the logic lives in the core."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from nurture.engine import Engine
from nurture.errors import InputError, TokenError, UnknownLead
from nurture.server import admin, api, pages
from nurture.server.http import handoff_task, hit_of
from nurture.tracking import Tracking

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache"}
PAGES = Path(__file__).parent / "pages"


def create_app(engine: Engine) -> Starlette:
    """The tracking server over one engine (its settings, store and mailer)."""
    tracking = Tracking(engine.settings, engine.store, engine.catalog)
    templates = Jinja2Templates(directory=str(PAGES))
    app = Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/o/{token}.gif", pixel, methods=["GET", "HEAD"]),
            Route("/c/{token}", click, methods=["GET", "HEAD"]),
            Route("/u/{token}", pages.unsubscribe, methods=["GET", "POST"]),
            Route("/p/{token}", pages.preferences, methods=["GET", "POST"]),
            Route("/sales/{token}", pages.sales_profile, methods=["GET", "POST"]),
            *admin.routes(),
            *api.routes(),
        ],
        exception_handlers={TokenError: not_found, InputError: bad_input, UnknownLead: unknown_lead},
    )
    app.state.engine = engine
    app.state.tracking = tracking
    app.state.templates = templates
    return app


async def health(request: Request) -> Response:
    try:
        await run_in_threadpool(request.app.state.engine.store.histories)
    except Exception as error:  # noqa: BLE001 - health reports any failure
        return PlainTextResponse(f"database unavailable: {type(error).__name__}", status_code=503)
    return PlainTextResponse("ok")


async def pixel(request: Request) -> Response:
    """Always answer with the image; a bad token or a failed write is logged, never shown."""
    tracking: Tracking = request.app.state.tracking
    background = None
    try:
        written = await tracking.open(request.path_params["token"], hit_of(request))
        background = handoff_task(request, written.handoff_id)
    except TokenError:
        pass
    except Exception:  # noqa: BLE001 - the recipient always gets the image
        log.exception("open not recorded")
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE, background=background)


async def click(request: Request) -> Response:
    tracking: Tracking = request.app.state.tracking
    written = await tracking.click(request.path_params["token"], hit_of(request))
    if written.url is None:
        raise TokenError("no such link")
    return RedirectResponse(written.url, status_code=302, headers=NO_CACHE,
                            background=handoff_task(request, written.handoff_id))


async def not_found(request: Request, error: Exception) -> Response:
    return PlainTextResponse("Not found", status_code=404)


async def unknown_lead(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"Not found: {error}", status_code=404)


async def bad_input(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"Bad request: {error}", status_code=400)
