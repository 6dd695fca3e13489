"""feeds.yaml -> which feeds a lead reads; feed bytes -> clean items (pure; fetching is in fetch.py)."""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import feedparser
import nh3
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nurture.errors import ConfigError

TITLE_LIMIT = 140
SUMMARY_LIMIT = 400
ALLOWED_TAGS = {"p", "br", "strong", "b", "em", "i", "a", "ul", "ol", "li", "blockquote", "code"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What the HTTP layer would say, so feedparser resolves relative links and trusts the XML declaration
# (with text/xml and no charset, RFC 3023 would make it read UTF-8 feeds as ASCII).
AS_XML = {"content-type": "application/xml"}
# feedparser reports these for documents it read fine: an encoding guessed, a lax content type
HARMLESS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)
CLEANER = nh3.Cleaner(
    tags=ALLOWED_TAGS,
    attributes=ALLOWED_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",  # a relative link leads nowhere from a mailbox
    link_rel="noopener noreferrer",
)
TEXT_ONLY = nh3.Cleaner(tags=set())


class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    title: str = ""
    include: list[str] = []
    exclude: list[str] = []
    max_items: int = Field(30, ge=1)


class FetchConfig(BaseModel):
    """How feeds are fetched: `fetch:` at the top of feeds.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: float = Field(15, gt=0)  # seconds for one whole fetch: connect, headers and body
    max_bytes: int = Field(5 * 1024 * 1024, ge=1)
    concurrency: int = Field(8, ge=1, le=64)
    max_redirects: int = Field(5, ge=0, le=20)


class Catalog(BaseModel):
    """The marketer's feeds.yaml: feeds by name, and which interests and industries read which."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fetch: FetchConfig = FetchConfig()
    feeds: dict[str, FeedConfig] = {}
    interests: dict[str, list[str]] = {}
    industries: dict[str, list[str]] = {}
    base: Path = Path(".")

    def feeds_for(self, interests: Iterable[str], industry: str) -> list[str]:
        names = [name for interest in interests for name in self.interests.get(interest, [])]
        names += self.industries.get(industry, [])
        return list(dict.fromkeys(names))

    def location(self, name: str) -> str:
        """The feed's URL, or an absolute local path for a file next to feeds.yaml."""
        url = self.feeds[name].url
        if url.startswith(("http://", "https://")):
            return url
        path = Path(url.removeprefix("file://"))
        return str(path if path.is_absolute() else self.base / path)


def load_catalog(path: Path) -> Catalog:
    """Read and check feeds.yaml: every interest and industry must name feeds that exist."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping with feeds, interests and industries")
        catalog = Catalog.model_validate({**raw, "base": path.resolve().parent})
    except FileNotFoundError:
        raise ConfigError(f"{path}: feeds file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except ValidationError as error:
        where = "; ".join(".".join(map(str, e["loc"])) + ": " + e["msg"] for e in error.errors())
        raise ConfigError(f"{path}: {where}") from None
    for group in ("interests", "industries"):
        for key, names in getattr(catalog, group).items():
            for name in names:
                if name not in catalog.feeds:
                    raise ConfigError(f"{path}: {group}.{key} names feed '{name}', which is not defined")
    return catalog


@dataclass(frozen=True)
class Item:
    guid: str
    title: str
    link: str
    summary: str
    published: datetime


@dataclass
class Parsed:
    items: list[Item] = field(default_factory=list)
    problem: str | None = None


def parse(data: bytes, config: FeedConfig, now: datetime, base_url: str | None = None) -> Parsed:
    """Parse feed bytes into sanitized, filtered, capped items; a broken feed yields a problem, not an error.

    `base_url` is where the feed came from; relative item links are resolved against it.
    """
    headers = {**AS_XML, "content-location": base_url} if base_url else AS_XML
    document = feedparser.parse(_trimmed(data), sanitize_html=True, resolve_relative_uris=True,
                                response_headers=headers)
    entries = document.get("entries") or []
    problem = _problem(document)
    if not entries:
        return Parsed(problem=f"not a usable feed: {problem or 'no items'}")
    shared = _shared_links(entries)
    usable = [item for entry in entries if (item := _item(entry, now, shared))]
    if not usable:
        return Parsed(problem="not a usable feed: no item has a title and an http(s) link")
    newest = sorted(usable, key=lambda item: item.published, reverse=True)
    unique = list({item.guid: item for item in reversed(newest)}.values())[::-1]  # first (newest) guid wins
    items = [item for item in unique if _wanted(item, config)]
    note = f"malformed feed, kept what parsed: {problem}" if problem else None
    return Parsed(items=items[: config.max_items], problem=note)


def _trimmed(data: bytes) -> bytes:
    """Drop blank lines before the XML declaration (a common plugin bug that makes the XML invalid)."""
    stripped = data.removeprefix(b"\xef\xbb\xbf").lstrip()
    return stripped if stripped.startswith(b"<?xml") and stripped != data else data


def _problem(document: Any) -> str | None:
    """Why feedparser found the document broken; encoding guesses that parsed fine are no problem."""
    error = document.get("bozo_exception") if document.get("bozo") else None
    if error is None or isinstance(error, HARMLESS):
        return None
    return " ".join(str(error).split())[:120] or type(error).__name__


def sanitize(markup: str) -> str:
    """Reduce feed HTML to a small allow-list: no scripts, handlers, styles or javascript: URLs."""
    return CLEANER.clean(CONTROL.sub("", markup))


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def _item(entry: Any, now: datetime, shared: set[str]) -> Item | None:
    link = (entry.get("link") or "").strip()
    title = shorten(CONTROL.sub("", _title(entry)), TITLE_LIMIT)
    if not title or not link.startswith(("http://", "https://")):
        return None
    published = min(_published(entry) or now, now)  # a date in the future would top every digest
    return Item(guid=_guid(entry, link, title, shared)[:500], title=title, link=link,
                summary=_summary(entry.get("summary") or ""), published=published)


def _title(entry: Any) -> str:
    """The title as text: feedparser says whether the feed meant it as HTML (`&lt;b&gt;`) or as text."""
    title = entry.get("title") or ""
    kind = (entry.get("title_detail") or {}).get("type", "")
    return plain(title) if "html" in kind else title


def _guid(entry: Any, link: str, title: str, shared: set[str]) -> str:
    """What identifies an item across refreshes: its guid, else its link, else a hash of title and date.

    A link that several guid-less items share (a feed that points every item at its home page) does
    not identify one item; the feed's own date string does not change between refreshes, `now` would.
    """
    guid = _own_guid(entry)
    if guid:
        return guid
    if link not in shared:
        return link
    date = entry.get("published") or entry.get("updated") or ""
    return "sha256:" + hashlib.sha256(f"{title}|{date}".encode()).hexdigest()


def _own_guid(entry: Any) -> str:
    return str(entry.get("id") or entry.get("guid") or "").strip()


def _shared_links(entries: Sequence[Any]) -> set[str]:
    counts = Counter((entry.get("link") or "").strip() for entry in entries if not _own_guid(entry))
    return {link for link, count in counts.items() if count > 1}


def _summary(markup: str) -> str:
    clean = sanitize(markup)
    text = plain(clean)
    if len(text) <= SUMMARY_LIMIT:
        return clean
    return html.escape(shorten(text, SUMMARY_LIMIT), quote=False)


def plain(markup: str) -> str:
    """The text of some HTML, whitespace collapsed and entities decoded."""
    return html.unescape(" ".join(TEXT_ONLY.clean(markup).split()))


def _published(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = dict.get(entry, key)  # FeedParserDict.get would map updated to published, with a warning
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
    return None


def _wanted(item: Item, config: FeedConfig) -> bool:
    text = f"{item.title} {plain(item.summary)}".lower()
    if config.include and not any(word.lower() in text for word in config.include):
        return False
    return not any(word.lower() in text for word in config.exclude)


class Dated(Protocol):
    @property
    def feed(self) -> str: ...
    @property
    def link(self) -> str: ...
    @property
    def published(self) -> datetime: ...


D = TypeVar("D", bound=Dated)


def mix(items: Sequence[D], feeds: Sequence[str], limit: int) -> list[D]:
    """Choose a digest's items: each feed in turn gives its newest item, round by round, until `limit`.

    A busy feed cannot crowd out a quiet one. Within a round the newer item goes first, and on equal
    dates the feed named first (the lead's interests in order, then its industry). An article that two
    feeds carry (same link) is taken once. The result is newest first, ties again in feed order.
    """
    order = {feed: index for index, feed in enumerate(feeds)}
    ranked = []
    for feed in feeds:
        own = sorted((item for item in items if item.feed == feed), key=lambda item: item.published, reverse=True)
        ranked += [(turn, -item.published.timestamp(), order[feed], item) for turn, item in enumerate(own)]
    ranked.sort(key=lambda entry: entry[:3])
    chosen: dict[str, tuple[float, int, D]] = {}
    for _, newest, feed_index, item in ranked:
        if len(chosen) < limit and item.link not in chosen:
            chosen[item.link] = (newest, feed_index, item)
    return [item for _, _, item in sorted(chosen.values(), key=lambda entry: entry[:2])]
