"""The recipient's and the sales rep's pages, reached through signed links."""

from __future__ import annotations

from jinja2 import Environment, TemplateNotFound
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from nurture.render.inline import stylesheet
from nurture.server.http import now
from nurture.track.actions import Tracking
from nurture.track.tokens import Purpose


def page(request: Request, name: str, status_code: int = 200, background: BackgroundTask | None = None,
         locale: str | None = None, branded: bool = False, **context: object) -> Response:
    """A page, in the lead's language where the context has a lead (or in `locale`): the templates' own
    `<locale>/pages/<name>` where there is one, else the program's default locale's, else the built-in.
    `branded`, for a recipient's page: it looks like the mail, in the stylesheet of that locale's layout."""
    lead = context.get("lead")
    wanted = locale or getattr(lead, "locale", None)
    templates = request.app.state.templates
    if branded:
        context.update(brand_css=brand_of(request, wanted), company=request.app.state.engine.settings.mail.company)
    return templates.TemplateResponse(request, localized(templates.env, name, wanted, request), context,
                                      status_code=status_code, background=background)


def brand_of(request: Request, locale: str | None) -> str:
    """The stylesheet of the mail layout in `locale` (else the default locale's), read once a process: the
    marketer's colours, fonts and header on the pages a recipient sees. Trusted as the templates are; it
    cannot close its <style> element."""
    brands: dict[str | None, str] = request.app.state.brands
    if locale not in brands:
        settings = request.app.state.engine.settings
        found = ""
        for choice in dict.fromkeys(c for c in (locale, settings.program.default_locale) if c):
            layout = settings.templates_dir / choice / "layout.html"
            if layout.is_file():
                found = stylesheet(layout.read_text(encoding="utf-8")).replace("</", "<\\/")
                break
        brands[locale] = found
    return brands[locale]


def localized(env: Environment, name: str, locale: str | None, request: Request) -> str:
    default = request.app.state.engine.settings.program.default_locale
    for candidate in dict.fromkeys(f"{choice}/pages/{name}" for choice in (locale, default) if choice):
        try:
            env.get_template(candidate)
            return candidate
        except TemplateNotFound:
            continue
    return name


async def unsubscribe(request: Request) -> Response:
    """GET shows a confirmation; POST (RFC 8058 one-click, or the button) unsubscribes at once."""
    tracking: Tracking = request.app.state.tracking
    token = request.path_params["token"]
    if request.method == "POST":
        lead = await run_in_threadpool(tracking.unsubscribe, token, now())
        return page(request, "unsubscribed.html", lead=lead, branded=True)
    lead, _ = await run_in_threadpool(tracking.unsubscriber, token)
    return page(request, "unsubscribe.html", lead=lead, branded=True)


async def confirm(request: Request) -> Response:
    """GET asks (a link scanner that fetches it confirms nothing); POST, the button, confirms the address."""
    tracking: Tracking = request.app.state.tracking
    token = request.path_params["token"]
    if request.method == "POST":
        lead = await run_in_threadpool(tracking.confirm, token, client_of(request), now())
        return page(request, "confirmed.html", lead=lead, branded=True)
    lead = await run_in_threadpool(tracking.lead_for, token, Purpose.CONFIRM)
    return page(request, "confirm.html", lead=lead, branded=True)


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


async def preferences(request: Request) -> Response:
    tracking: Tracking = request.app.state.tracking
    token = request.path_params["token"]
    saved = False
    if request.method == "POST":
        form = await request.form()
        interests = [str(value) for value in form.getlist("interest")]
        lead = await run_in_threadpool(tracking.save_preferences, token, interests, str(form.get("industry", "")),
                                       client_of(request), now(), form.get("no_tracking") is None)
        saved = True
    else:
        lead = await run_in_threadpool(tracking.lead_for, token, Purpose.PREFERENCES)
    return page(request, "preferences.html", lead=lead, saved=saved, branded=True,
                interests=sorted(tracking.catalog.interests), industries=sorted(tracking.catalog.industries))


async def sales_profile(request: Request) -> Response:
    """The lead's profile behind the hand-off mail's signed link; POST records the outcome."""
    tracking: Tracking = request.app.state.tracking
    handoff = await run_in_threadpool(tracking.handoff_for, request.path_params["token"])
    assert handoff.id is not None
    if request.method == "POST":
        form = await request.form()
        await run_in_threadpool(tracking.decide, handoff.id, str(form.get("outcome", "")), now(),
                                str(form.get("note", "")))
        return RedirectResponse(request.url.path, status_code=303)
    profile = await run_in_threadpool(tracking.profile, handoff.lead_id)
    return page(request, "profile.html", profile=profile, action=request.url.path)
