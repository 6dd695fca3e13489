"""Compile steps on template source, run once per template version, never per recipient.

Tracking: every `<a href>` becomes `href="{{ track(...) }}"` unless it already calls `track()`, points
at the unsubscribe, preference or profile URL, is a `mailto:`/`tel:`/`#` link, or carries the
`notrack` attribute (which is removed). An href that mixes text and `{% %}` statements is wrapped in
`{% filter track_href %}`. Links are found with an HTML tokenizer (nurture.render.links), never a regex
over tags. Lines never move, so errors still name the marketer's line.

CSS: premailer would percent-encode Jinja syntax inside attributes (`href="{{%20x%20}}"`), so every
`{{ }}`, `{% %}` and `{# #}` is swapped for an inert placeholder first and put back afterwards. The
layout is inlined as a whole document; in a template that extends it, each HTML block (every block but
subject, preheader and text) is inlined with the layout's stylesheet, and so is a whole template that
the layout includes (a footer); the body of premailer's result is taken back. Selectors must therefore
match within one block (`.card a`, not `.content .card`).
"""

from __future__ import annotations

import html
import logging
import re

from premailer import Premailer

from nurture.render.links import Anchor, anchors

JINJA_SYNTAX = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
PLACEHOLDER = re.compile(r"JINJAx(\d+)x")
STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)
HTML_BLOCK = re.compile(
    r"(\{%-?\s*block\s+(?!subject\b|preheader\b|text\b)(\w+)\s*-?%\})(.*?)(\{%-?\s*endblock(?:\s+\2)?\s*-?%\})",
    re.S,
)
EXPRESSION = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
# their pages must work without a click record
UNTRACKED = {"unsubscribe_url", "preferences_url", "confirm_url", "profile_url"}
NOT_WEB = ("#", "mailto:", "tel:", "sms:")


def track_links(source: str, keep_notrack: bool = False) -> str:
    """Route every link of a template through `track()`, except those marked or known not to be tracked.
    The `notrack` mark is removed, unless `keep_notrack` (for lint, which reports unmarked untracked links)."""
    protected, saved = _protect(source)
    pieces, last = [], 0
    for anchor in anchors(protected):
        pieces += [protected[last : anchor.start], _track_link(anchor, saved, keep_notrack)]
        last = anchor.end
    return _restore("".join(pieces) + protected[last:], saved)


def _track_link(anchor: Anchor, saved: list[str], keep_notrack: bool) -> str:
    tag = anchor.text
    notrack = anchor.get("notrack")
    if notrack is not None:
        return tag if keep_notrack else tag[: notrack.start] + tag[notrack.end :]
    href = anchor.get("href")
    if href is None or href.value is None:
        return tag
    tracked = _tracked(_restore(href.value, saved))
    if tracked is None:
        return tag
    stash = len(saved)
    saved.append(tracked)
    return tag[: href.value_start] + f'"JINJAx{stash}x"' + tag[href.value_end :]


def _tracked(value: str) -> str | None:
    """The Jinja that spells `value` as a tracked URL, or None when it stays as it is."""
    if not value.strip() or value.strip().lower().startswith(NOT_WEB):
        return None
    pieces = JINJA_SYNTAX.split(value)
    tags = JINJA_SYNTAX.findall(value)
    if any(not tag.startswith("{{") for tag in tags):
        return "{% filter track_href %}" + value + "{% endfilter %}"
    expressions = [EXPRESSION.fullmatch(tag).group(1).strip() for tag in tags]  # type: ignore[union-attr]
    if len(tags) == 1 and not "".join(pieces).strip():
        if expressions[0] in UNTRACKED or expressions[0].startswith("track("):
            return None
    terms = []
    for index, piece in enumerate(pieces):
        if piece:
            terms.append(repr(html.unescape(piece)))
        if index < len(expressions):
            terms.append(f"({expressions[index]})")
    return "{{ track(" + " ~ ".join(terms) + ")" + "\n" * value.count("\n") + " }}"


def stylesheet(layout_source: str) -> str:
    """The CSS of a layout's <style> blocks."""
    return "\n".join(STYLE.findall(layout_source))


def inline_document(source: str) -> str:
    """Inline a whole HTML document's <style> into its elements, keeping Jinja syntax intact."""
    protected, saved = _protect(source)
    return _restore(premailer(protected), saved)


def inline_blocks(source: str, css: str) -> str:
    """Inline `css` into the HTML blocks of a template that extends the layout."""
    return HTML_BLOCK.sub(lambda match: match.group(1) + inline_fragment(match.group(3), css) + match.group(4), source)


def inline_fragment(source: str, css: str) -> str:
    """Inline `css` into a piece of HTML (a block, or a template the layout includes)."""
    protected, saved = _protect(source)
    body = BODY.search(premailer(protected, css))
    return _restore(body.group(1).strip("\n") if body else protected, saved)


def premailer(html_text: str, css_text: str | None = None) -> str:
    """premailer with nurture's options: what the compile step runs, and what it stands in for."""
    return Premailer(
        html_text,
        css_text=css_text,
        keep_style_tags=False,
        remove_classes=False,
        disable_validation=True,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def _protect(source: str) -> tuple[str, list[str]]:
    saved: list[str] = []

    def stash(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        return f"JINJAx{len(saved) - 1}x"

    return JINJA_SYNTAX.sub(stash, source), saved


def _restore(text: str, saved: list[str]) -> str:
    return PLACEHOLDER.sub(lambda match: saved[int(match.group(1))], text)
