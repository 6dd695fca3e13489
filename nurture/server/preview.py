"""A template previewed for a lead, in the browser, behind the admin key: what `nurture preview` writes."""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from nurture.errors import InputError, TemplateProblem
from nurture.preview import Preview, preview
from nurture.server.admin import SANDBOX
from nurture.server.http import check_admin

TEMPLATE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


def routes() -> list[Route]:
    return [Route("/admin/preview/{template}", show, methods=["GET"])]


async def show(request: Request) -> Response:
    """GET /admin/preview/TEMPLATE?lead=EMAIL[&text=1]: the HTML (sandboxed) or the text part."""
    check_admin(request)
    template, email = request.path_params["template"], request.query_params.get("lead", "").strip()
    if not TEMPLATE_NAME.fullmatch(template):
        raise InputError(f"not a template name: {template[:100]!r}")
    if not email:
        raise InputError("say which lead to preview for: ?lead=EMAIL")
    engine = request.app.state.engine
    try:
        shown: Preview = await run_in_threadpool(preview, engine.settings, engine.store, template, email,
                                                 engine.renderer)
    except TemplateProblem as problem:
        return PlainTextResponse(f"Template problem: {problem}", status_code=422)
    headers = {**SANDBOX, "Cache-Control": "no-store"}
    if shown.note:
        headers["X-Nurture-Note"] = shown.note
    if request.query_params.get("text") in ("1", "true", "yes"):
        return PlainTextResponse(shown.rendered.text, headers=headers)
    return HTMLResponse(shown.rendered.html, headers=headers)
