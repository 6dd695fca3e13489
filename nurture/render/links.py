"""The links of a piece of HTML, found with a tokenizer: each `<a>` start tag and its attributes, where
they stand, so that an href can be rewritten in place.

A regex over tags stops at the first `>`, which may stand inside a quoted attribute (`title="Q&A > FAQ"`):
the link after it was left untracked, and its clicks scored nothing. The stdlib's HTML tokenizer reads
the tag whole; its attributes are then walked in order, as the tokenizer itself reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from itertools import accumulate

# an attribute as html.parser reads one (its attrfind_tolerant): a name, then an optional value
ATTRIBUTE = re.compile(r"""((?<=['"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*))?(?:\s|/(?!>))*""")
NAME_END = re.compile(r"<[a-zA-Z][^\t\n\r\f />\x00]*(?:\s|/(?!>))*")


@dataclass(frozen=True)
class Attribute:
    name: str  # in lower case
    value: str | None  # as written, without its quotes (None: a bare attribute)
    start: int  # of the attribute in its tag, the blanks before it included
    end: int
    value_start: int  # of the value as written, quotes included
    value_end: int


@dataclass(frozen=True)
class Anchor:
    start: int  # of the start tag in the markup
    text: str  # the start tag as written
    attributes: tuple[Attribute, ...]

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    def get(self, name: str) -> Attribute | None:
        return next((attribute for attribute in self.attributes if attribute.name == name), None)


@lru_cache(maxsize=4096)  # a feed summary reaches many leads, a template is compiled once: read each once
def anchors(markup: str) -> tuple[Anchor, ...]:
    """Every `<a>` start tag of `markup`, in order."""
    tokenizer = _Tokenizer()
    tokenizer.feed(markup)
    tokenizer.close()
    lines = [0, *accumulate(len(line) for line in markup.splitlines(keepends=True))]
    return tuple(Anchor(lines[line - 1] + column, text, _attributes(text)) for (line, column), text in tokenizer.found)


class _Tokenizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.found: list[tuple[tuple[int, int], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.found.append((self.getpos(), self.get_starttag_text() or ""))


def _attributes(tag: str) -> tuple[Attribute, ...]:
    found = []
    head = NAME_END.match(tag)
    position = head.end() if head else len(tag)
    while (match := ATTRIBUTE.match(tag, position)) and match.end() > position:
        found.append(_attribute(tag, match))
        position = match.end()
    return tuple(found)


def _attribute(tag: str, match: re.Match[str]) -> Attribute:
    name, written = match.group(1).lower(), match.group(3)
    start = _blank_before(tag, match.start())
    if written is None:  # a bare attribute (notrack)
        return Attribute(name, None, start, match.end(1), match.end(1), match.end(1))
    value = written[1:-1] if written[:1] in ("'", '"') else written
    return Attribute(name, value, start, match.end(2), *match.span(3))


def _blank_before(tag: str, start: int) -> int:
    """Where the blanks before an attribute begin, so that removing it leaves the tag as if never written."""
    while start > 0 and tag[start - 1].isspace():
        start -= 1
    return start
