"""Pages for the team behind HTTP Basic auth (any user name, the admin key as password)."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from nurture.errors import TokenError
from nurture.server import admin_leads, feeds_page, outbox_page
from nurture.server.http import check_admin, handoff_task, now
from nurture.server.pages import page
from nurture.track.actions import Tracking

# no image from anywhere: a mail's images, any pixel among them, would tell their server that it was read
SANDBOX = {"Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"}


def routes() -> list[Route]:
    return [
        Route("/admin", admin_leads.leads, methods=["GET"]),
        Route("/admin/leads/{lead_id:int}", lead_profile, methods=["GET", "POST"]),
        Route("/admin/leads/{lead_id:int}/events/{event_id:int}", override, methods=["POST"]),
        Route("/admin/outbox", outbox_page.outbox, methods=["GET"]),
        Route("/admin/outbox/retry", outbox_page.retry_all, methods=["POST"]),
        Route("/admin/outbox/{send_id:int}/retry", outbox_page.retry_one, methods=["POST"]),
        Route("/admin/feeds", feeds_page.feeds, methods=["GET"]),
        Route("/admin/sink", sink, methods=["GET"]),
        Route("/admin/sink/{message_id:int}", sink_message, methods=["GET"]),
        Route("/admin/sink/{message_id:int}/html", sink_html, methods=["GET"]),
    ]


async def lead_profile(request: Request) -> Response:
    check_admin(request)
    tracking: Tracking = request.app.state.tracking
    lead_id = request.path_params["lead_id"]
    profile = await run_in_threadpool(tracking.profile, lead_id)
    if request.method == "POST":
        if profile.handoff is None or profile.handoff.id is None:
            raise TokenError("no open hand-off")
        form = await request.form()
        await run_in_threadpool(tracking.decide, profile.handoff.id, str(form.get("outcome", "")), now(),
                                str(form.get("note", "")))
        return RedirectResponse(request.url.path, status_code=303)
    handoffs = await run_in_threadpool(tracking.store.handoffs_of, lead_id)
    return page(request, "profile.html", profile=profile, action=request.url.path, admin=True, handoffs=handoffs)


async def override(request: Request) -> Response:
    """A person's judgment on one event of a lead: count it after all, or not."""
    check_admin(request)
    form = await request.form()
    counted = str(form.get("counted", "")) == "yes"
    engine = request.app.state.engine
    event_id, lead_id = request.path_params["event_id"], request.path_params["lead_id"]
    events = await run_in_threadpool(engine.store.events_of, lead_id)
    if all(event.id != event_id for event in events):
        raise TokenError("no such event for this lead")
    _, handoff_id = await run_in_threadpool(engine.store.override, event_id, counted, "admin",
                                            engine.settings.scoring, now())
    return RedirectResponse(f"/admin/leads/{lead_id}", status_code=303, background=handoff_task(request, handoff_id))


async def sink(request: Request) -> Response:
    check_admin(request)
    messages = await run_in_threadpool(request.app.state.engine.store.sink_messages, 200)
    return page(request, "sink.html", messages=messages)


async def sink_message(request: Request) -> Response:
    check_admin(request)
    found, parsed = await _parsed(request)
    text = parsed.get_body(("plain",))
    return page(request, "sink_message.html", message=found, headers=list(parsed.items()),
                text=text.get_content() if text else "")


async def sink_html(request: Request) -> Response:
    """The HTML part of a sunk message, sandboxed so it runs nothing in the admin's origin."""
    check_admin(request)
    _, parsed = await _parsed(request)
    part = parsed.get_body(("html",))
    tracking: Tracking = request.app.state.tracking
    html = await run_in_threadpool(tracking.untracked, part.get_content()) if part else ""
    return HTMLResponse(html, headers=SANDBOX)


async def _parsed(request: Request) -> tuple[object, EmailMessage]:
    found = await run_in_threadpool(request.app.state.engine.store.sink_message, request.path_params["message_id"])
    if found is None:
        raise TokenError("no such message")
    parsed = message_from_bytes(found.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return found, parsed
