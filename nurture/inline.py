"""CSS inlining as a compile step: premailer runs once per template source, never per recipient.

premailer would percent-encode Jinja syntax inside attributes (`href="{{%20x%20}}"`), so every
`{{ }}`, `{% %}` and `{# #}` is swapped for an inert placeholder first and put back afterwards. The
layout is inlined as a whole document; in a template that extends it, each HTML block (every block but
subject, preheader and text) is inlined with the layout's stylesheet, and so is a whole template that
the layout includes (a footer); the body of premailer's result is taken back. Selectors must therefore
match within one block (`.card a`, not `.content .card`).
"""

from __future__ import annotations

import logging
import re

from premailer import Premailer

JINJA_SYNTAX = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
PLACEHOLDER = re.compile(r"JINJAx(\d+)x")
STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S | re.I)
BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)
HTML_BLOCK = re.compile(
    r"(\{%-?\s*block\s+(?!subject\b|preheader\b|text\b)(\w+)\s*-?%\})(.*?)(\{%-?\s*endblock(?:\s+\2)?\s*-?%\})",
    re.S,
)


def stylesheet(layout_source: str) -> str:
    """The CSS of a layout's <style> blocks."""
    return "\n".join(STYLE.findall(layout_source))


def inline_document(source: str) -> str:
    """Inline a whole HTML document's <style> into its elements, keeping Jinja syntax intact."""
    protected, saved = _protect(source)
    return _restore(_premailer(protected, css_text=None), saved)


def inline_blocks(source: str, css: str) -> str:
    """Inline `css` into the HTML blocks of a template that extends the layout."""
    return HTML_BLOCK.sub(lambda match: match.group(1) + inline_fragment(match.group(3), css) + match.group(4), source)


def inline_fragment(source: str, css: str) -> str:
    """Inline `css` into a piece of HTML (a block, or a template the layout includes)."""
    protected, saved = _protect(source)
    body = BODY.search(_premailer(protected, css_text=css))
    return _restore(body.group(1).strip("\n") if body else protected, saved)


def _premailer(html: str, css_text: str | None) -> str:
    return Premailer(
        html,
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
