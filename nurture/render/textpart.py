"""The text part of an email, made from its HTML when a template gives none."""

from __future__ import annotations

import re
from functools import lru_cache
from html.parser import HTMLParser

BLOCKS = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "li", "table", "hr"}
SKIP = {"style", "script", "head", "title"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TextMaker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.href: str | None = None
        self.links: list[str] = []
        self.skipping = 0
        self.hidden: list[str] = []  # open elements no reader sees (the honeypot link, the preheader)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID and (self.hidden or _hidden(dict(attrs))):
            return
        if self.hidden or _hidden(dict(attrs)):
            self.hidden.append(tag)
        elif tag in SKIP:
            self.skipping += 1
        elif tag in BLOCKS:
            self.parts.append("\n")
        elif tag == "a":
            self.href = dict(attrs).get("href")
        elif tag == "li":
            self.parts.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if self.hidden:
            if tag in self.hidden:
                del self.hidden[len(self.hidden) - 1 - self.hidden[::-1].index(tag):]
        elif tag in SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag == "a" and self.href:
            self.parts.append(f" ({self.href})")
            self.links.append(self.href)
            self.href = None
        elif tag in BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping and not self.hidden:
            self.parts.append(re.sub(r"\s+", " ", data))


def _hidden(attrs: dict[str, str | None]) -> bool:
    style = (attrs.get("style") or "").replace(" ", "").lower()
    return attrs.get("aria-hidden") == "true" or "display:none" in style


def html_to_text(html: str) -> str:
    """Readable plain text: block elements become line breaks, links keep their URL in brackets."""
    return _text(html)[0]


@lru_cache(maxsize=4096)  # feed summaries reach many leads: read each once
def text_and_links(html: str) -> tuple[str, tuple[str, ...]]:
    """The text of a piece of HTML without a final line break, and the URLs it shows in brackets."""
    text, links = _text(html)
    return text.strip(), links


def _text(html: str) -> tuple[str, tuple[str, ...]]:
    maker = _TextMaker()
    maker.feed(html)
    maker.close()
    lines = (line.strip() for line in "".join(maker.parts).splitlines())
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n", tuple(dict.fromkeys(maker.links))
