"""Templates to messages: a Jinja environment per locale, compiled (and CSS-inlined) once per run.

`Renderer.render` is pure: given a template, a context and a way to spell a tracked URL for link
number N, it returns the subject, preheader, HTML and text of one email plus the links it tracked.
Nothing is written anywhere while a template renders; the caller stores the links with the send.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from nurture.errors import TemplateProblem
from nurture.inline import inline_blocks, inline_document, inline_fragment, stylesheet
from nurture.textpart import html_to_text

LAYOUT = "layout.html"
EXTENDS = re.compile(r"\{%-?\s*extends\s")
HEADER_BREAKS = re.compile(r"[\r\n\t]+")


@dataclass(frozen=True)
class TrackedLink:
    url: str
    action: str = "content"
    tag: str | None = None
    points: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "action": self.action, "tag": self.tag, "points": self.points}


@dataclass(frozen=True)
class Rendered:
    subject: str
    preheader: str
    html: str
    text: str
    links: tuple[TrackedLink, ...] = ()


@dataclass
class LinkTracker:
    """The `track()` template helper: numbers each distinct link and spells its tracked URL."""

    url_for: Callable[[int], str] | None
    links: list[TrackedLink] = field(default_factory=list)

    def __call__(self, url: str, action: str = "content", tag: str | None = None,
                 points: int | None = None) -> str:
        if self.url_for is None:
            return url
        link = TrackedLink(str(url), action, tag, points)
        if link not in self.links:
            self.links.append(link)
        return self.url_for(self.links.index(link))


class InliningLoader(jinja2.FileSystemLoader):
    """Loads templates with the layout's CSS already inlined (see nurture.inline)."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if not template.endswith(".html"):
            return source, filename, uptodate
        if template == LAYOUT:
            return inline_document(source), filename, uptodate
        css = stylesheet(super().get_source(environment, LAYOUT)[0])
        if EXTENDS.search(source):
            return inline_blocks(source, css), filename, uptodate
        return inline_fragment(source, css), filename, uptodate


class Renderer:
    """Compiles each template once per locale and renders it for many leads."""

    def __init__(self, templates_dir: Path, default_locale: str = "en", inline_css: bool = True):
        self.templates_dir = templates_dir
        self.default_locale = default_locale
        self.inline_css = inline_css
        self._environments: dict[str, jinja2.Environment] = {}
        self._templates: dict[tuple[str, str], jinja2.Template] = {}

    def locales(self) -> list[str]:
        return sorted(path.name for path in self.templates_dir.iterdir() if path.is_dir())

    def environment(self, locale: str) -> jinja2.Environment:
        if locale not in self._environments:
            search = [self.templates_dir / locale, self.templates_dir / self.default_locale]
            paths = [str(path) for path in dict.fromkeys(search) if path.is_dir()]
            loader_class = InliningLoader if self.inline_css else jinja2.FileSystemLoader
            self._environments[locale] = jinja2.Environment(
                loader=loader_class(paths),
                autoescape=jinja2.select_autoescape(["html"]),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                auto_reload=False,
            )
        return self._environments[locale]

    def template(self, name: str, locale: str) -> jinja2.Template:
        key = (name, locale)
        if key not in self._templates:
            try:
                self._templates[key] = self.environment(locale).get_template(f"{name}.html")
            except jinja2.TemplateNotFound:
                raise TemplateProblem(f"template '{name}' not found in {self.templates_dir}") from None
            except jinja2.TemplateSyntaxError as error:
                if self.inline_css:  # inlining moves lines: name the line of the marketer's file
                    self._raw().template(name, locale)
                raise TemplateProblem(f"{error.filename}:{error.lineno}: {error.message}") from None
        return self._templates[key]

    def _raw(self) -> Renderer:
        return Renderer(self.templates_dir, self.default_locale, inline_css=False)

    def render(self, name: str, locale: str, context: Mapping[str, Any],
               url_for: Callable[[int], str] | None = None, pixel_url: str | None = None) -> Rendered:
        """Render one email. Raises TemplateProblem naming the file and line when a template fails."""
        template = self.template(name, locale)
        tracker = LinkTracker(url_for)
        variables = {**context, "track": tracker, "pixel_url": pixel_url}
        try:
            body = template.render(variables)
            blocks = template.new_context(variables)
            subject = _block(template, "subject", blocks)
            preheader = _block(template, "preheader", blocks)
            text = _block(template, "text", blocks) if "text" in template.blocks else ""
        except jinja2.TemplateError as error:
            if self.inline_css:
                self._raw().render(name, locale, context, url_for, pixel_url)
            raise TemplateProblem(_describe(name, error)) from None
        if pixel_url and pixel_url not in body and html.escape(pixel_url) not in body:
            body = _add_pixel(body, pixel_url)
        return Rendered(
            subject=HEADER_BREAKS.sub(" ", html.unescape(subject)).strip(),
            preheader=html.unescape(preheader).strip(),
            html=body,
            text=html.unescape(text).strip() + "\n" if text.strip() else html_to_text(body),
            links=tuple(tracker.links),
        )


def _block(template: jinja2.Template, name: str, context: jinja2.runtime.Context) -> str:
    if name not in template.blocks:
        if name == "subject":
            raise TemplateProblem(f"{template.filename}: has no subject block")
        return ""
    return "".join(template.blocks[name](context))


def _add_pixel(body: str, pixel_url: str) -> str:
    """Add the open pixel a template forgot, just before </body>."""
    tag = f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" style="display:block;border:0">'
    index = body.lower().rfind("</body>")
    return str(body) + tag if index < 0 else str(body[:index]) + tag + str(body[index:])


def _describe(name: str, error: jinja2.TemplateError) -> str:
    """'file:line: message', the line taken from the error or else from its traceback's template frames."""
    filename, lineno = getattr(error, "filename", None), getattr(error, "lineno", None)
    if lineno is None:
        filename, lineno = _template_frame(error) or (filename, None)
    where = f"{filename or name}:{lineno}" if lineno else name
    return f"{where}: {error.message or error}"


def _template_frame(error: BaseException) -> tuple[str, int] | None:
    """The innermost frame of a template (Jinja rewrites tracebacks to template lines)."""
    found = None
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename.endswith(".html"):
            found = (traceback.tb_frame.f_code.co_filename, traceback.tb_lineno)
        traceback = traceback.tb_next
    return found
