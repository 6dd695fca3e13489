"""The ASGI app. Handlers are thin: parse, verify, record, answer; the logic lives in the core."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from nurture.engine import Engine
from nurture.errors import InputError, TokenError, UnknownLead
from nurture.inbound.webhooks import Forged
from nurture.server import admin, api, dashboard, pages, preview, webhooks
from nurture.server.headers import SecurityHeaders
from nurture.server.hot import HotPath
from nurture.server.http import ADMIN_TRIES, ADMIN_WINDOW_SECONDS, Throttle
from nurture.server.judge_loop import Judging, Supervisor
from nurture.server.metrics import metrics, registry_for
from nurture.track.actions import Tracking

log = logging.getLogger(__name__)

PAGES = Path(__file__).parent / "pages"


def create_app(engine: Engine) -> HotPath:
    """The tracking server over one engine (its settings, store and mailer)."""
    tracking = Tracking(engine.settings, engine.store, engine.catalog)
    engine.serving = True  # a delivery run on this loop does its blocking store work in threads
    templates = Jinja2Templates(env=Environment(autoescape=True, loader=ChoiceLoader([
        FileSystemLoader(str(engine.settings.templates_dir)),  # <locale>/pages/*.html: a marketer's, per language
        FileSystemLoader(str(PAGES)),
    ])))
    app = Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/readyz", ready, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/u/{token}", pages.unsubscribe, methods=["GET", "POST"]),
            Route("/p/{token}", pages.preferences, methods=["GET", "POST"]),
            Route("/confirm/{token}", pages.confirm, methods=["GET", "POST"]),
            Route("/sales/{token}", pages.sales_profile, methods=["GET", "POST"]),
            *admin.routes(),
            *dashboard.routes(),
            *api.routes(),
            *preview.routes(),
            *webhooks.routes(),
        ],
        exception_handlers={TokenError: not_found, InputError: bad_input, UnknownLead: unknown_lead,
                            Forged: forbidden},
        middleware=[Middleware(SecurityHeaders)],
        lifespan=partial(judging_while_serving, engine, tracking),
    )
    app.state.engine = engine
    app.state.metrics = registry_for(engine.store)
    app.state.admin_logins = Throttle(ADMIN_TRIES, ADMIN_WINDOW_SECONDS)
    app.state.tracking = tracking
    app.state.templates = templates
    app.state.brands = {}  # locale -> the mail layout's stylesheet (nurture.server.pages.brand_of)
    return HotPath(app, tracking)


@asynccontextmanager
async def judging_while_serving(engine: Engine, tracking: Tracking, app: Starlette) -> AsyncIterator[None]:
    """While the server runs, stored hits are judged: by a process of its own, or inline, before each answer."""
    gc.collect()
    gc.freeze()  # what was loaded to start is never garbage: the collector's pauses stay short under load
    if engine.settings.server.judge == "process":
        supervisor = Supervisor(engine.settings)
        watching = asyncio.create_task(supervisor.watch())
        try:
            yield
        finally:
            watching.cancel()
            await supervisor.stop()
        return
    inline = Judging(engine, asyncio.get_running_loop())
    tracking.journal.follow_with(inline.judge_now)
    await run_in_threadpool(inline.judge_now)  # what an earlier run stored and did not judge
    try:
        yield
    finally:
        tracking.journal.follow_with(None)
        await asyncio.gather(*inline.tasks, return_exceptions=True)


async def health(request: Request) -> Response:
    """Alive: the process answers and the database answers a ping (nothing it costs grows with the data)."""
    try:
        await run_in_threadpool(request.app.state.engine.store.ping)
    except Exception as error:  # noqa: BLE001 - health reports any failure
        return PlainTextResponse(f"database unavailable: {type(error).__name__}", status_code=503)
    return PlainTextResponse("ok")


async def ready(request: Request) -> Response:
    """Ready for traffic: the database and the journal of hits answer, and the schema is this release's."""
    try:
        problem = await run_in_threadpool(request.app.state.engine.store.unready)
    except Exception as error:  # noqa: BLE001 - readiness reports any failure
        problem = f"database unavailable: {type(error).__name__}"
    return PlainTextResponse(problem or "ready", status_code=503 if problem else 200)


async def not_found(request: Request, error: Exception) -> Response:
    return PlainTextResponse("Not found", status_code=404)


async def unknown_lead(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"Not found: {error}", status_code=404)


async def forbidden(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"Forbidden: {error}", status_code=403)


async def bad_input(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"Bad request: {error}", status_code=400)
