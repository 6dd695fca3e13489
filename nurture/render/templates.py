"""Templates to messages: a Jinja environment per locale, compiled (and CSS-inlined) once per version.

`Renderer.render` is pure: given a template, a context and a way to spell a tracked URL for link
number N, it returns the subject, preheader, HTML and text of one email plus the links it tracked.
Nothing is written anywhere while a template renders; the caller stores the links with the send.
"""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from markupsafe import Markup, escape

from nurture.errors import TemplateProblem
from nurture.render.cache import TemplateCache
from nurture.render.inline import inline_blocks, inline_document, inline_fragment, stylesheet, track_links
from nurture.render.links import anchors
from nurture.render.textpart import html_to_text

LAYOUT = "layout.html"
EXTENDS = re.compile(r"\{%-?\s*extends\s")
HEADER_BREAKS = re.compile(r"[\r\n\t]+")
RECHECK_SECONDS = 1.0  # how often a long run looks for edited templates


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
    _spelled: dict[TrackedLink, str] = field(default_factory=dict)  # in order of first use

    @property
    def links(self) -> list[TrackedLink]:
        return list(self._spelled)

    def __call__(self, url: str, action: str = "content", tag: str | None = None,
                 points: int | None = None) -> str:
        if self.url_for is None:
            return url
        link = TrackedLink(str(url), action, tag, points)
        spelled = self._spelled.get(link)
        if spelled is None:  # the HTML and the text part ask for the same link: sign it once
            spelled = self._spelled[link] = self.url_for(len(self._spelled))
        return spelled


class TrackedHtml(Markup):
    """Sanitized HTML from outside the templates (a feed summary): printed with its links tracked."""

    links: tuple[tuple[int, int, str], ...] = ()  # (start, end) of each href's value as written, and its URL

    @classmethod
    def of(cls, markup: str) -> TrackedHtml:
        value = cls(markup)
        value.links = _hrefs(markup)
        return value

    def tracked(self, track: Callable[[str], str]) -> Markup:
        out, pieces, last = str(self), [], 0
        for start, end, url in self.links:
            pieces += [out[last:start], f'"{escape(track(url))}"']
            last = end
        return Markup("".join(pieces) + out[last:])


class TrackedText(str):
    """Plain text made from feed HTML, each link's URL in brackets: printed with those URLs tracked."""

    links: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str, links: tuple[str, ...]) -> TrackedText:
        value = cls(text)
        value.links = links
        return value

    def tracked(self, track: Callable[[str], str]) -> str:
        out = str(self)
        for url in self.links:
            out = out.replace(f"({url})", f"({track(url)})")
        return out


_TRACKED = (TrackedHtml, TrackedText)  # a tuple, not a union made again for every `{{ }}`


@lru_cache(maxsize=4096)  # a summary reaches many leads: read its links once
def _hrefs(markup: str) -> tuple[tuple[int, int, str], ...]:
    return tuple((anchor.start + href.value_start, anchor.start + href.value_end, html.unescape(href.value))
                 for anchor in anchors(markup) if (href := anchor.get("href")) is not None and href.value)


@jinja2.pass_context
def _finalize(context: jinja2.runtime.Context, value: Any) -> Any:
    """Every `{{ }}` passes here: feed HTML and text get their links tracked as they are printed."""
    if isinstance(value, _TRACKED) and value.links:
        return value.tracked(context["track"])
    return value


@jinja2.pass_context
def _track_href(context: jinja2.runtime.Context, value: str) -> Markup:
    """`{% filter track_href %}`: an href built with statements, tracked once it is rendered."""
    return escape(context["track"](html.unescape(str(value)).strip()))


class TemplateLoader(jinja2.FileSystemLoader):
    """Loads templates compiled for sending: links tracked, and the layout's CSS inlined (see nurture.render.inline),
    which `cache` keeps from one process to the next."""

    def __init__(self, searchpath: list[str], inline_css: bool, cache: TemplateCache, keep_notrack: bool = False):
        super().__init__(searchpath)
        self.inline_css = inline_css
        self.cache = cache
        self.keep_notrack = keep_notrack  # for lint: see nurture.render.inline.track_links

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if not template.endswith(".html"):
            return source, filename, uptodate

        def tracked() -> str:
            return track_links(source, self.keep_notrack)

        if not self.inline_css:
            return tracked(), filename, uptodate
        marks = ("notrack kept",) if self.keep_notrack else ()
        if template == LAYOUT:
            compiled = self.cache.source(("document", source, *marks), lambda: inline_document(tracked()))
            return compiled, filename, uptodate
        css = stylesheet(super().get_source(environment, LAYOUT)[0])
        inline = inline_blocks if EXTENDS.search(source) else inline_fragment
        compiled = self.cache.source((inline.__name__, source, css, *marks), lambda: inline(tracked(), css))
        return compiled, filename, uptodate


class Environment(jinja2.Environment):
    """Each template's globals in one plain dict rather than a ChainMap over the environment's: every
    context made for a render copies them, and iterating a ChainMap costs more than the copy. Nothing
    changes the globals once a template is loaded (as Jinja asks)."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class Renderer:
    """Compiles each template once per locale and version, and renders it for many leads.

    A template (or the layout whose CSS it carries) edited while nurture runs is compiled again: the
    folder is looked at no more often than every `recheck_seconds`.
    """

    def __init__(self, templates_dir: Path, default_locale: str = "en", inline_css: bool = True,
                 recheck_seconds: float = RECHECK_SECONDS, cache: TemplateCache | None = None,
                 keep_notrack: bool = False):
        self.templates_dir = templates_dir
        self.default_locale = default_locale
        self.inline_css = inline_css
        self.keep_notrack = keep_notrack
        self.cache = cache or TemplateCache(None)
        self.recheck_seconds = recheck_seconds
        self._environments: dict[str, jinja2.Environment] = {}
        self._templates: dict[tuple[str, str], jinja2.Template] = {}
        self._version = self._current_version()
        self._checked = time.monotonic()

    def locales(self) -> list[str]:
        return sorted(path.name for path in self.templates_dir.iterdir() if path.is_dir())

    def environment(self, locale: str) -> jinja2.Environment:
        if locale not in self._environments:
            search = [self.templates_dir / locale, self.templates_dir / self.default_locale]
            paths = [str(path) for path in dict.fromkeys(search) if path.is_dir()]
            environment = Environment(
                loader=TemplateLoader(paths, self.inline_css, self.cache, self.keep_notrack),
                bytecode_cache=self.cache.bytecode,
                autoescape=jinja2.select_autoescape(["html"]),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                auto_reload=False,  # versions are checked by the Renderer, not on every render
                finalize=_finalize,
            )
            environment.filters["track_href"] = _track_href
            self._environments[locale] = environment
        return self._environments[locale]

    def template(self, name: str, locale: str) -> jinja2.Template:
        self._forget_if_edited()
        key = (name, locale)
        if key not in self._templates:
            try:
                self._templates[key] = self.environment(locale).get_template(f"{name}.html")
            except jinja2.TemplateNotFound as error:
                missing = "" if error.name == f"{name}.html" else f" (it needs '{error.name}')"
                raise TemplateProblem(f"template '{name}' not found in {self.templates_dir}{missing}") from None
            except jinja2.TemplateSyntaxError as error:
                if self.inline_css:  # inlining moves lines: name the line of the marketer's file
                    self._raw().template(name, locale)
                raise TemplateProblem(f"{error.filename}:{error.lineno}: {error.message}") from None
        return self._templates[key]

    def warm(self, names: Iterable[str], locale: str) -> None:
        """Compile templates before their first render, and the layout and includes they name, which Jinja
        would load as they render (inlining CSS takes tens of milliseconds a template). A template that
        does not compile is passed over: rendering it reports the problem."""
        environment = self.environment(locale)
        loader = environment.loader
        assert isinstance(loader, TemplateLoader)
        pending, seen = [f"{name}.html" for name in names], set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                environment.get_template(name)
                written = jinja2.FileSystemLoader.get_source(loader, environment, name)[0]  # as written: no inlining
                pending += [found for found in meta.find_referenced_templates(environment.parse(written)) if found]
            except Exception:  # noqa: BLE001, S112 - passed over: its first render tells what is wrong
                continue

    def _forget_if_edited(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_seconds:
            return
        self._checked = now
        version = self._current_version()
        if version != self._version:
            self._version = version
            self._environments.clear()
            self._templates.clear()

    def _current_version(self) -> tuple[tuple[str, int], ...]:
        """Every template file with its modification time: any edit, addition or removal changes it."""
        found = []
        for folder, _, files in os.walk(self.templates_dir):
            found += [(os.path.join(folder, name), os.stat(os.path.join(folder, name)).st_mtime_ns) for name in files]
        return tuple(sorted(found))

    def _raw(self) -> Renderer:
        return Renderer(self.templates_dir, self.default_locale, inline_css=False)

    def render(self, name: str, locale: str, context: Mapping[str, Any],
               url_for: Callable[[int], str] | None = None, pixel_url: str | None = None) -> Rendered:
        """Render one email. Raises TemplateProblem naming the file and line when a template fails."""
        template = self.template(name, locale)
        tracker = LinkTracker(url_for)
        variables = template.new_context({**context, "track": tracker, "pixel_url": pixel_url})
        try:
            try:  # the whole and then its blocks, in one context: what the body set, the blocks see too
                body = template.environment.concat(template.root_render_func(variables))  # type: ignore[attr-defined]
                subject = _block(template, "subject", variables)
                preheader = _block(template, "preheader", variables)
                text = _block(template, "text", variables) if "text" in template.blocks else ""
            except Exception:
                template.environment.handle_exception()  # raises it again with the template's lines
        except TemplateProblem:
            raise
        except Exception as error:  # noqa: BLE001 - whatever a template's expression raises is a template problem
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


def _describe(name: str, error: Exception) -> str:
    """'file:line: message', the line taken from the error or else from its traceback's template frames."""
    filename, lineno = getattr(error, "filename", None), getattr(error, "lineno", None)
    if lineno is None:
        filename, lineno = _template_frame(error) or (filename, None)
    where = f"{filename or name}:{lineno}" if lineno else name
    message = getattr(error, "message", None) or str(error)
    if not isinstance(error, jinja2.TemplateError):
        message = f"{type(error).__name__}: {message}"
    return f"{where}: {message}"


def _template_frame(error: BaseException) -> tuple[str, int] | None:
    """The innermost frame of a template (Jinja rewrites tracebacks to template lines)."""
    found = None
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename.endswith(".html"):
            found = (traceback.tb_frame.f_code.co_filename, traceback.tb_lineno)
        traceback = traceback.tb_next
    return found
