"""feeds.yaml -> which feeds a lead reads; feed bytes -> clean items (pure; fetching is in fetch.py)."""

from __future__ import annotations

import calendar
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    title: str = ""
    include: list[str] = []
    exclude: list[str] = []
    max_items: int = Field(30, ge=1)


class Catalog(BaseModel):
    """The marketer's feeds.yaml: feeds by name, and which interests and industries read which."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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


def parse(data: bytes, config: FeedConfig, now: datetime) -> Parsed:
    """Parse feed bytes into sanitized, filtered, capped items; a broken feed yields a problem, not an error."""
    document = feedparser.parse(data, sanitize_html=False, resolve_relative_uris=False)
    entries = document.get("entries") or []
    problem = _problem(document)
    if not entries:
        return Parsed(problem=f"not a usable feed: {problem or 'no items'}")
    usable = [item for entry in entries if (item := _item(entry, now))]
    if not usable:
        return Parsed(problem="not a usable feed: no item has a title and an http(s) link")
    items = sorted((item for item in usable if _wanted(item, config)), key=lambda item: item.published, reverse=True)
    note = f"malformed feed, kept what parsed: {problem}" if problem else None
    return Parsed(items=items[: config.max_items], problem=note)


def _problem(document: Any) -> str | None:
    """Why feedparser found the document broken; encoding guesses that parsed fine are no problem."""
    error = document.get("bozo_exception") if document.get("bozo") else None
    if error is None or isinstance(error, feedparser.CharacterEncodingOverride):
        return None
    return " ".join(str(error).split())[:120] or type(error).__name__


def sanitize(html: str) -> str:
    """Reduce feed HTML to a small allow-list: no scripts, handlers, styles or javascript: URLs."""
    return nh3.clean(
        CONTROL.sub("", html),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",.;:") + "…"


def _item(entry: Any, now: datetime) -> Item | None:
    link = (entry.get("link") or "").strip()
    title = shorten(CONTROL.sub("", _plain(entry.get("title") or "")), TITLE_LIMIT)
    if not title or not link.startswith(("http://", "https://")):
        return None
    published = _published(entry) or now
    guid = (entry.get("id") or entry.get("guid") or link or "").strip()
    if not guid:
        guid = hashlib.sha256(f"{title}|{published.isoformat()}".encode()).hexdigest()
    summary = entry.get("summary") or ""
    return Item(guid=guid[:500], title=title, link=link, summary=_summary(summary), published=published)


def _summary(html: str) -> str:
    clean = sanitize(html)
    if len(_plain(clean)) <= SUMMARY_LIMIT:
        return clean
    return sanitize(shorten(_plain(clean), SUMMARY_LIMIT))


def _plain(html: str) -> str:
    return " ".join(nh3.clean(html, tags=set()).split()).replace("&amp;", "&").replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&quot;", '"').replace("&#39;", "'")


def _published(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = dict.get(entry, key)  # FeedParserDict.get would map updated to published, with a warning
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
    return None


def _wanted(item: Item, config: FeedConfig) -> bool:
    text = f"{item.title} {_plain(item.summary)}".lower()
    if config.include and not any(word.lower() in text for word in config.include):
        return False
    return not any(word.lower() in text for word in config.exclude)
