"""What the website talks to: the events and leads API (API key) and the public subscribe form."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nurture.engine import Engine
from nurture.errors import InputError, LeadExists, NurtureError
from nurture.intake import mailbox_of, new_lead
from nurture.models import EventKind, Lead
from nurture.score import rules as scoring
from nurture.server.http import now
from nurture.server.pages import page
from nurture.store import NewEvent

LEAD_FIELDS = {"email", "first_name", "last_name", "company", "industry", "interests", "locale", "country", "customer",
               "consent"}
EVENT_FIELDS = {"email", "kind", "key", "detail"}


def routes() -> list[Route]:
    return [
        Route("/api/events", post_event, methods=["POST"]),
        Route("/api/leads", post_lead, methods=["POST"]),
        Route("/api/handoffs/{handoff_id:int}/outcome", post_outcome, methods=["POST"]),
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
    ]


def with_api_key(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Answer 401 unless the request carries the API key (X-API-Key, or Authorization: Bearer)."""

    @wraps(handler)
    async def checked(request: Request) -> Response:
        expected = request.app.state.engine.settings.api_key
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not expected or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            return JSONResponse({"error": "a valid API key is required"}, status_code=401)
        return await handler(request)

    return checked


async def json_body(request: Request, allowed: set[str]) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InputError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InputError("the body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return body


def _text(body: dict[str, Any], name: str, required: bool = False) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise InputError(f"{name} must be a {'non-empty ' if required else ''}string")
    return value


@with_api_key
async def post_event(request: Request) -> Response:
    """Score a website event (a visit, a download, a contact form) for a lead, by the same rules."""
    body = await json_body(request, EVENT_FIELDS)
    engine: Engine = request.app.state.engine
    recorded = await run_in_threadpool(record_external, engine, _text(body, "email", True), _text(body, "kind", True),
                                       _text(body, "key") or None, _text(body, "detail")[:300] or None, now())
    lead = await run_in_threadpool(engine.store.lead, recorded.event.lead_id)
    background = None
    if recorded.handoff_id is not None:
        background = BackgroundTask(engine.deliver_handoff, recorded.handoff_id, now())
    return JSONResponse({"lead": lead.id, "score": recorded.score, "stage": lead.stage.value,
                         "counted": recorded.event.counted, "reason": recorded.event.reason},
                        status_code=202, background=background)


def record_external(engine: Engine, email: str, kind: str, key: str | None, detail: str | None, at: datetime) -> Any:
    rules = engine.settings.scoring
    lead = engine.store.lead_by_email(email)
    assert lead.id is not None
    credit = scoring.credit_external(kind, lead.id, lead.cycle, rules, key)
    hit = NewEvent(lead.id, EventKind.EXTERNAL, at, credit, action=kind, qualify=rules.external[kind].qualify,
              detail=detail)
    return engine.store.record(hit, rules)


@with_api_key
async def post_outcome(request: Request) -> Response:
    """A CRM closes the loop: the outcome of a hand-off (won, lost, no_result, not_a_fit) and a note."""
    body = await json_body(request, {"outcome", "note"})
    tracking = request.app.state.tracking
    lead = await run_in_threadpool(tracking.decide, request.path_params["handoff_id"], _text(body, "outcome", True),
                                   now(), _text(body, "note"))
    return JSONResponse({"lead": lead.id, "stage": lead.stage.value, "cycle": lead.cycle})


@with_api_key
async def post_lead(request: Request) -> Response:
    """Create a lead (the trial download form) and send its confirmation."""
    body = await json_body(request, LEAD_FIELDS)
    interests = body.get("interests", [])
    if not isinstance(interests, list) or not all(isinstance(i, str) for i in interests):
        raise InputError("interests must be a list of strings")
    for flag in ("customer", "consent"):
        if not isinstance(body.get(flag, False), bool):
            raise InputError(f"{flag} must be true or false")
    fields = {name: _text(body, name) for name in ("first_name", "last_name", "company", "industry", "country")}
    consented = body.get("consent", False)  # the caller collected consent itself: no double opt-in
    lead = await _create(request, "api (consent collected by the caller)" if consented else "api", consented,
                         email=_text(body, "email", True), interests=interests, locale=_text(body, "locale") or "en",
                         customer=body.get("customer", False), **fields)
    if lead is None:
        return JSONResponse({"error": "this mailbox was sent confirmations enough today"}, status_code=429)
    return JSONResponse({"lead": lead.id, "email": lead.email}, status_code=201,
                        background=BackgroundTask(_welcome, request.app.state.engine, lead.id))


async def _create(request: Request, how: str, confirmed: bool, **fields: Any) -> Lead | None:
    """A new lead and its consent: `how` it came, from the request's address; `confirmed` when the caller
    collected consent already, else it gets its confirmation only until it confirms (double opt-in).
    None, and nothing stored, when its mailbox was sent confirmations enough today (every server process
    counts them together)."""
    engine: Engine = request.app.state.engine
    at = now()
    lead = new_lead(engine.catalog, at, **fields)
    lead.confirmed_at = at if confirmed else None
    if not confirmed:
        sent = await run_in_threadpool(engine.store.count_request, f"confirm:{mailbox_of(lead.email)}",
                                       CONFIRMATION_WINDOW_SECONDS, time.time())
        if sent > CONFIRMATIONS_PER_MAILBOX:
            return None
    return await run_in_threadpool(engine.store.add_lead, lead, how, request.client.host if request.client else None)


async def _welcome(engine: Engine, lead_id: int | None) -> None:
    if lead_id is not None:
        await engine.welcome(lead_id, now())


CONFIRMATIONS_PER_MAILBOX = 3  # unconfirmed sign-ups of one mailbox (+tags are the same mailbox) per day
CONFIRMATION_WINDOW_SECONDS = 86_400.0
SUBSCRIBE_LIMIT = 5  # sign-ups from one address per SUBSCRIBE_WINDOW_SECONDS, counted by every server process
SUBSCRIBE_WINDOW_SECONDS = 600.0


async def subscribe(request: Request) -> Response:
    """The public form: a honeypot field for bots, a per-address rate limit, the same checks as the API."""
    engine: Engine = request.app.state.engine
    choices: dict[str, Any] = {"interests": sorted(engine.catalog.interests),
                               "industries": sorted(engine.catalog.industries)}
    if request.method == "GET":
        return page(request, "subscribe.html", branded=True, **choices, error=None, values={})
    form = await request.form()
    values = {name: str(form.get(name, "")) for name in ("email", "first_name", "company", "industry")}
    client = request.client.host if request.client else "unknown"
    count = await run_in_threadpool(engine.store.count_request, f"subscribe:{client}", SUBSCRIBE_WINDOW_SECONDS,
                                    time.time())
    if count > SUBSCRIBE_LIMIT:
        return page(request, "subscribe.html", 429, branded=True, **choices, values=values,
                    error="Too many sign-ups from your address; please try again in a few minutes.")
    if form.get("website"):  # the hidden honeypot: a person never fills it in
        return page(request, "message.html", branded=True, title="Thanks!", text="Check your inbox to confirm.")
    try:
        lead = await _create(request, "form", False, interests=[str(i) for i in form.getlist("interest")], **values)
    except LeadExists:  # the same answer as for a new address: whether one is known is nobody's business
        known = await run_in_threadpool(engine.store.lead_by_email, values["email"])
        return page(request, "message.html", branded=True, title="Thanks!", text="Check your inbox to confirm.",
                    background=BackgroundTask(engine.reconfirm, known.id, now()) if known.id else None)
    except NurtureError as error:
        return page(request, "subscribe.html", 400, branded=True, **choices, values=values, error=str(error))
    return page(request, "message.html", branded=True, title="Thanks!", text="Check your inbox to confirm.",
                background=None if lead is None else BackgroundTask(_welcome, engine, lead.id))
