"""`nurture lint`: what would go wrong in the marketer's files before anything is sent.

Findings, each naming a file and a line: feeds.yaml that is invalid, a feed no interest or industry
reads, an interest or industry with no feed, a local feed file that does not parse; a template with a
syntax error, an undefined variable, an unknown helper, filter or test, a `track()` call with an
unknown argument, action or tag, an email without a subject block, a lead's email without an
unsubscribe link, a link that is not tracked and not marked `notrack`, and any template that fails to
render for a sample lead in any locale.

The checks read files and render templates; nothing is stored or sent.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2 import meta, nodes

from nurture import program
from nurture.content import digest as content
from nurture.content.catalog import load_catalog, parse
from nurture.errors import ConfigError, TemplateProblem
from nurture.handoff import summary as handoff
from nurture.models import Handoff
from nurture.render.cache import TemplateCache
from nurture.render.links import anchors
from nurture.render.templates import LAYOUT, Renderer
from nurture.render.variables import email_variables, sample_lead
from nurture.settings import Settings

HANDOFF = "handoff"
REQUIRED = (program.CONFIRMATION, program.DIGEST, HANDOFF)  # what the engine renders
RENDERER_NAMES = {"track", "pixel_url"}  # added by Renderer.render to every context
TRACK_ARGUMENTS = ("url", "action", "tag", "points")
ACTIONS = {"content", "callback", "honeypot"}  # honeypot: the hidden link only machines follow
UNSUBSCRIBE = "https://lint.invalid/u/unsubscribe"
LINT_URLS = "https://lint.invalid/"  # what lint renders tracked links, the pixel and nurture's own pages as
PROBLEM = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<message>.*)$", re.S)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Finding:
    path: Path
    line: int
    message: str

    def show(self, root: Path | None = None) -> str:
        """`file:line: message`, the file relative to `root` when it lies inside it."""
        path = self.path
        if root is not None and path.is_relative_to(root):
            path = path.relative_to(root)
        return f"{path}:{self.line}: {self.message}"


def lint(settings: Settings) -> list[Finding]:
    """Every finding in feeds.yaml and the templates, in file and line order."""
    return sorted(set(lint_feeds(settings.feeds_file) + lint_templates(settings)))


# feeds.yaml


def lint_feeds(path: Path) -> list[Finding]:
    try:
        lines = _yaml_lines(path)
    except FileNotFoundError:
        return [Finding(path, 1, "feeds file not found")]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        return [Finding(path, mark.line + 1 if mark else 1, f"not valid YAML: {error.problem or error}")]
    try:
        catalog = load_catalog(path)
    except ConfigError as error:
        message = str(error).removeprefix(f"{path}: ")
        keys = sorted((key for key in lines if key in message), key=len, reverse=True)
        return [Finding(path, lines[keys[0]] if keys else 1, message)]
    used = {name for names in [*catalog.interests.values(), *catalog.industries.values()] for name in names}
    findings = [Finding(path, lines[f"feeds.{name}"], f"feed '{name}' is read by no interest or industry")
                for name in catalog.feeds if name not in used]
    for group, label in (("interests", "interest"), ("industries", "industry")):
        findings += [Finding(path, lines[f"{group}.{key}"], f"{label} '{key}' has no feed")
                     for key, names in getattr(catalog, group).items() if not names]
    for name, feed in catalog.feeds.items():
        location = catalog.location(name)
        if not location.startswith(("http://", "https://")):
            findings += _local_feed(path, lines[f"feeds.{name}"], name, Path(location), feed)
    return findings


def _local_feed(path: Path, line: int, name: str, location: Path, feed: Any) -> list[Finding]:
    try:
        parsed = parse(location.read_bytes(), feed, NOW)
    except OSError as error:
        return [Finding(path, line, f"feed '{name}': cannot read {location}: {error.strerror or error}")]
    if not parsed.items:
        return [Finding(path, line, f"feed '{name}': {parsed.problem or 'no items'}")]
    return []


def _yaml_lines(path: Path) -> dict[str, int]:
    """The line of every mapping key, by dotted path (`feeds.cloud.url`)."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                dotted = f"{prefix}{key.value}"
                lines[dotted] = key.start_mark.line + 1
                walk(value, dotted + ".")

    root = yaml.compose(path.read_text(encoding="utf-8"))
    if root is not None:
        walk(root, "")
    return lines


# templates: what the source says


@dataclass(frozen=True)
class Source:
    path: Path
    name: str  # the template name, e.g. "digest.html"
    ast: nodes.Template | None
    finding: Finding | None = None  # a syntax error


def lint_templates(settings: Settings) -> list[Finding]:
    renderer = Renderer(settings.templates_dir, settings.program.default_locale, inline_css=False)
    if not settings.templates_dir.is_dir():
        return [Finding(settings.templates_dir, 1, "templates folder not found")]
    sources = list(_sources(renderer))
    included = {name for source in sources if source.ast for name in _referenced(source.ast)}
    emails = sorted({source.name.removesuffix(".html") for source in sources
                     if source.name != LAYOUT and source.name not in included})
    findings = [source.finding for source in sources if source.finding]
    names = _names(settings)
    for source in sources:
        if source.ast is not None:
            kind = _kind(source.name, included)
            findings += _static(source, names[kind], renderer.environment(settings.program.default_locale), settings)
            if kind != "shared" and "subject" not in {block.name for block in source.ast.find_all(nodes.Block)}:
                findings.append(Finding(source.path, 1, "no subject block: every email needs {% block subject %}"))
    default = settings.templates_dir / settings.program.default_locale
    findings += [Finding(default, 1, f"template '{name}.html' is missing: nurture sends it")
                 for name in REQUIRED if not (default / f"{name}.html").is_file()]
    compiled = Renderer(settings.templates_dir, settings.program.default_locale,
                        cache=TemplateCache.under(settings.cache_dir), keep_notrack=True)
    rendered = [finding for locale in renderer.locales() for name in emails
                for finding in _rendered(compiled, settings, name, locale)]
    # a render that fails on a line already reported says nothing new
    seen = {(finding.path, finding.line) for finding in findings}
    return findings + [finding for finding in rendered if (finding.path, finding.line) not in seen]


def _sources(renderer: Renderer) -> Iterator[Source]:
    for locale in renderer.locales():
        environment = renderer.environment(locale)
        for path in sorted((renderer.templates_dir / locale).glob("*.html")):
            text = path.read_text(encoding="utf-8")
            try:
                yield Source(path, path.name, environment.parse(text, path.name, str(path)))
            except jinja2.TemplateSyntaxError as error:
                yield Source(path, path.name, None, Finding(path, error.lineno, f"syntax error: {error.message}"))


def _referenced(ast: nodes.Template) -> set[str]:
    """Templates that this one includes or imports (their own emails are not sent on their own)."""
    found: set[str] = set()
    for node in ast.find_all((nodes.Include, nodes.Import, nodes.FromImport)):
        template = getattr(node, "template", None)
        if isinstance(template, nodes.Const):
            found.add(str(template.value))
    return found


def _kind(name: str, included: set[str]) -> str:
    if name == LAYOUT or name in included:
        return "shared"  # seen by every email: it may use what any of them is given
    return "handoff" if name == f"{HANDOFF}.html" else "lead"


def _names(settings: Settings) -> dict[str, set[str]]:
    """The variables each kind of email is given, asked of the code that builds them."""
    lead = set(email_variables(settings, sample_lead(), [], unsubscribe_url="", preferences_url="",
                                   confirm_url=""))
    sales = set(handoff.context(settings, sample_lead(), _sample_handoff(), [], "", NOW))
    return {"lead": lead | RENDERER_NAMES, "handoff": sales | RENDERER_NAMES,
            "shared": lead | sales | RENDERER_NAMES}


def _sample_handoff() -> Handoff:
    return Handoff(id=0, lead_id=0, cycle=0, score=12, created_at=NOW)


def _static(source: Source, known: set[str], environment: jinja2.Environment, settings: Settings) -> list[Finding]:
    assert source.ast is not None
    findings = []
    for node in source.ast.find_all((nodes.Filter, nodes.Test)):
        kind, table = ("filter", environment.filters) if isinstance(node, nodes.Filter) else ("test", environment.tests)
        if node.name not in table:
            findings.append(Finding(source.path, node.lineno, f"unknown {kind} '{node.name}'"))
    for name in sorted(_undeclared(source.ast, environment) - known):
        line, called = _first_use(source.ast, name)
        what = "unknown helper" if called else "undefined variable"
        findings.append(Finding(source.path, line, f"{what} '{name}'"))
    return findings + _track_calls(source, settings)


def _undeclared(ast: nodes.Template, environment: jinja2.Environment) -> set[str]:
    """Names the template reads without setting them; unknown filters are stood in for, reported apart."""
    overlay = environment.overlay()
    for used in ast.find_all(nodes.Filter):
        overlay.filters.setdefault(used.name, lambda value, *args, **kwargs: value)
    for tested in ast.find_all(nodes.Test):
        overlay.tests.setdefault(tested.name, lambda value, *args, **kwargs: False)
    return meta.find_undeclared_variables(_with_environment(ast, overlay)) - set(environment.globals)


def _with_environment(ast: nodes.Template, environment: jinja2.Environment) -> nodes.Template:
    ast.set_environment(environment)
    return ast


def _first_use(ast: nodes.Template, name: str) -> tuple[int, bool]:
    called = {id(node.node) for node in ast.find_all(nodes.Call)}
    uses = [node for node in ast.find_all(nodes.Name) if node.name == name and node.ctx == "load"]
    line = min((node.lineno for node in uses), default=1)
    return line, any(id(node) in called for node in uses)


def _track_calls(source: Source, settings: Settings) -> list[Finding]:
    assert source.ast is not None
    findings = []
    for call in source.ast.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "track":
            findings += [Finding(source.path, call.lineno, problem) for problem in _track_problems(call, settings)]
    return findings


def _track_problems(call: nodes.Call, settings: Settings) -> Iterator[str]:
    if not call.args and not any(keyword.key == "url" for keyword in call.kwargs):
        yield "track() needs the URL to track"
    if len(call.args) > len(TRACK_ARGUMENTS):
        yield f"track() takes at most {len(TRACK_ARGUMENTS)} arguments"
    given = dict(zip(TRACK_ARGUMENTS, call.args, strict=False))
    for keyword in call.kwargs:
        if keyword.key not in TRACK_ARGUMENTS:
            yield f"track() has no argument '{keyword.key}' (it takes {', '.join(TRACK_ARGUMENTS)})"
        given[keyword.key] = keyword.value
    action, tag = given.get("action"), given.get("tag")
    if isinstance(action, nodes.Const) and action.value not in ACTIONS:
        yield f"track() action '{action.value}' is not one of {', '.join(sorted(ACTIONS))}"
    if isinstance(tag, nodes.Const) and tag.value is not None and tag.value not in settings.scoring.link_tags:
        yield f"track() tag '{tag.value}' is not in scoring.link_tags of nurture.yaml, so it scores nothing"


# templates: what they make for a sample lead


def _rendered(renderer: Renderer, settings: Settings, name: str, locale: str) -> list[Finding]:
    """Render an email for a sample lead, with and without items, confirmed and not (double opt-in); it must
    work and, for a lead, unsubscribe."""
    findings = []
    for items, confirmed in itertools.product((content.sample_items(NOW), []), (True, False)):
        try:
            rendered = renderer.render(name, locale, _context(settings, name, locale, items, confirmed),
                                       url_for=lambda link: f"https://lint.invalid/c/{link}",
                                       pixel_url="https://lint.invalid/o.gif")
        except TemplateProblem as problem:
            return [_problem(problem, renderer, name, locale)]
        path = Path(renderer.template(name, locale).filename or name)
        if name != HANDOFF and f'href="{UNSUBSCRIBE}"' not in rendered.html:  # its own footer may have lost it
            findings.append(Finding(path, _block_line(path, "footer"), "no unsubscribe link in the HTML"))
        if name != HANDOFF and UNSUBSCRIBE not in rendered.text:
            findings.append(Finding(path, _block_line(path, "text"), "no unsubscribe URL in the text part"))
        if not rendered.subject:
            findings.append(Finding(path, _block_line(path, "subject"), "the subject is empty for a sample lead"))
        findings += [Finding(path, _line_naming(renderer, name, locale, url),
                             f"a link to {url} is not tracked: its clicks score nothing (write it as <a href> "
                             "in the template, or mark it notrack if that is meant)")
                     for url in _untracked(rendered.html)]
    return list(dict.fromkeys(findings))


def _untracked(markup: str) -> list[str]:
    """The web links of a rendered email that go neither through track() nor to a page of nurture's, and
    are not marked notrack: a link a template printed from a string, say, which the compile step never saw."""
    found = []
    for anchor in anchors(markup):
        href = anchor.get("href")
        url = html.unescape(href.value or "").strip() if href is not None else ""
        if url.lower().startswith(("http:", "https:", "//")) and not url.startswith(LINT_URLS) \
                and anchor.get("notrack") is None:
            found.append(url)
    return list(dict.fromkeys(found))


def _line_naming(renderer: Renderer, name: str, locale: str, url: str) -> int:
    """The line of the email's template that names `url`, or 1 when it is built from pieces."""
    path = Path(renderer.template(name, locale).filename or name)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return next((number for number, line in enumerate(lines, 1) if url in line), 1)


def _context(settings: Settings, name: str, locale: str, items: list[Any], confirmed: bool = True) -> dict[str, Any]:
    lead = sample_lead()
    lead.locale = locale
    lead.confirmed_at = NOW if confirmed else None
    if name == HANDOFF:
        return handoff.context(settings, lead, _sample_handoff(), [], "https://lint.invalid/sales/profile", NOW)
    return email_variables(settings, lead, items, unsubscribe_url=UNSUBSCRIBE,
                           preferences_url="https://lint.invalid/p/preferences",
                           confirm_url="https://lint.invalid/confirm/token")


def _problem(problem: TemplateProblem, renderer: Renderer, name: str, locale: str) -> Finding:
    """A render failure as a finding; the renderer says 'file:line: message' when it knows the line."""
    found = PROBLEM.match(str(problem))
    if found:
        return Finding(Path(found["path"]), int(found["line"]), f"fails for a sample lead: {found['message']}")
    try:
        path = Path(renderer.template(name, locale).filename or name)
    except TemplateProblem:
        path = renderer.templates_dir / locale / f"{name}.html"
    message = str(problem).removeprefix(f"{path}: ")
    return Finding(path, 1, f"fails for a sample lead: {message}")


def _block_line(path: Path, block: str) -> int:
    pattern = re.compile(r"\{%-?\s*block\s+" + block + r"\b")
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if pattern.search(line):
            return number
    return 1
