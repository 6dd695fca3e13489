"""Fetching and refreshing feeds against a real HTTP server on 127.0.0.1.

The server counts what it was asked and how many body bytes it sent, so conditional GET is proven by
bytes on the wire, not by reading the client's code. Broken feeds are served after good ones, and the
store must still hold the good items afterwards.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import nurture
from nurture.content.catalog import Catalog, FeedConfig, FetchConfig
from nurture.content.refresh import FeedResult, refresh
from nurture.store import Store
from tests.conftest import free_port

SAMPLES = Path(nurture.__file__).parent / "samples" / "feeds"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
TIMEOUT = 0.5  # short, so the slow feeds are quick to give up on


def rss(*items: str, encoding: str = "utf-8") -> str:
    return (f'<?xml version="1.0" encoding="{encoding}"?>\n<rss version="2.0"><channel><title>T</title>'
            f"<link>https://example.com/</link><description>d</description>{''.join(items)}</channel></rss>")


def item(title: str, link: str, guid: str | None = None, date: str | None = "Mon, 02 Nov 2026 10:00:00 +0000") -> str:
    guid_tag = f"<guid isPermaLink='false'>{guid}</guid>" if guid else ""
    date_tag = f"<pubDate>{date}</pubDate>" if date else ""
    return f"<item><title>{title}</title><link>{link}</link>{guid_tag}{date_tag}<description>x</description></item>"


GOOD = rss(item("One", "https://example.com/1", "g1"), item("Two", "https://example.com/2", "g2")).encode()


# a feed server


@dataclass
class Page:
    """What the server answers for one path."""

    body: bytes = GOOD
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # answer 304 to a matching If-None-Match
    modified: str | None = None  # answer 304 to a matching If-Modified-Since
    length: bool = True  # send Content-Length; without it the body ends when the connection closes
    delay: float = 0  # seconds before the status line
    trickle: float = 0  # seconds between 64-byte chunks of the body


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0


class FeedServer:
    """ThreadingHTTPServer on a free port of 127.0.0.1; `pages` maps paths to answers."""

    def __init__(self) -> None:
        self.pages: dict[str, Page] = {}
        self.seen: list[Seen] = []
        self.active: list[str] = []
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.httpd = _Server(("127.0.0.1", self.port), _Handler)
        self.httpd.feeds = self

    def url(self, path: str) -> str:
        return self.base + path

    def body_bytes(self) -> int:
        return sum(seen.body_bytes for seen in self.seen)

    def forget(self) -> None:
        self.seen.clear()
        self.most_in_flight = 0

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        page = self.pages.get(handler.path.split("?")[0])
        seen = Seen(handler.path, {k.lower(): v for k, v in handler.headers.items()})
        with self.lock:
            self.seen.append(seen)
        self._answer(handler, page, seen)

    def _answer(self, handler: BaseHTTPRequestHandler, page: Page | None, seen: Seen) -> None:
        if page is None:
            page = Page(body=b"no such feed", status=404)
        self._wait(page.delay, seen.path)
        if _not_modified(page, seen.headers):
            seen.status = 304
            handler.send_response(304)
            if page.etag:
                handler.send_header("ETag", page.etag)
            handler.end_headers()
            return
        seen.status = page.status
        handler.send_response(page.status)
        headers = {"Content-Type": "application/rss+xml", **page.headers}
        if page.length:
            headers["Content-Length"] = str(len(page.body))
        if page.etag:
            headers["ETag"] = page.etag
        if page.modified:
            headers["Last-Modified"] = page.modified
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        step = 64 if page.trickle else len(page.body) or 1
        for start in range(0, len(page.body), step):
            handler.wfile.write(page.body[start : start + step])
            handler.wfile.flush()
            seen.body_bytes += len(page.body[start : start + step])
            time.sleep(page.trickle)


    def _wait(self, delay: float, path: str) -> None:
        """Sleep before answering; the requests asleep at once are the ones the client has in flight."""
        with self.lock:
            self.active.append(path)
            # only this test's pages: a slow answer from an earlier test may still be asleep
            self.most_in_flight = max(self.most_in_flight, sum(path in self.pages for path in self.active))
        time.sleep(delay)
        with self.lock:
            self.active.remove(path)


def _not_modified(page: Page, headers: dict[str, str]) -> bool:
    if page.etag and "if-none-match" in headers:
        return headers["if-none-match"] == page.etag
    return bool(page.modified) and headers.get("if-modified-since") == page.modified


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 would drop connections when every feed is asked at once
    feeds: FeedServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client gave up on a slow or huge feed: a broken pipe here is expected


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.server.feeds.answer(self)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
        pass


@pytest.fixture(scope="module")
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def server(feed_server: FeedServer) -> FeedServer:
    feed_server.pages.clear()
    feed_server.forget()
    return feed_server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'feeds.db'}")
    store.create()
    yield store
    store.close()


def catalog(urls: dict[str, str], **fetch: float) -> Catalog:
    settings = FetchConfig(**{"timeout": TIMEOUT, **fetch})
    return Catalog(fetch=settings, feeds={name: FeedConfig(url=url) for name, url in urls.items()})


def run(store: Store, feeds: Catalog, now: datetime = NOW) -> dict[str, FeedResult]:
    return {result.feed: result for result in asyncio.run(refresh(store, feeds, now))}


def guids(store: Store, feed: str) -> list[str]:
    return sorted(item.guid for item in store.items([feed], limit=10_000))


# conditional GET


def test_a_second_refresh_transfers_no_bodies(server: FeedServer, store: Store) -> None:
    stamp = "Mon, 02 Nov 2026 10:00:00 GMT"
    server.pages = {"/etag.xml": Page(etag='"v1"'), "/modified.xml": Page(modified=stamp),
                    "/both.xml": Page(etag='W/"v1"', modified=stamp)}
    feeds = catalog({name: server.url(f"/{name}.xml") for name in ("etag", "modified", "both")})
    first = run(store, feeds)
    assert {result.status for result in first.values()} == {"ok"}
    assert first["etag"].detail == "2 items, 2 new"
    assert server.body_bytes() == 3 * len(GOOD)
    server.forget()
    second = run(store, feeds, NOW + timedelta(hours=1))
    assert {name: result.status for name, result in second.items()} == dict.fromkeys(first, "not modified")
    assert server.body_bytes() == 0
    assert sorted(seen.status for seen in server.seen) == [304, 304, 304]
    asked = {seen.path: seen.headers for seen in server.seen}
    assert asked["/etag.xml"]["if-none-match"] == '"v1"' and "if-modified-since" not in asked["/etag.xml"]
    assert asked["/modified.xml"]["if-modified-since"] == stamp and "if-none-match" not in asked["/modified.xml"]
    assert asked["/both.xml"]["if-none-match"] == 'W/"v1"'
    assert guids(store, "etag") == ["g1", "g2"]


def test_a_changed_feed_is_fetched_again_and_only_its_new_items_are_kept(server: FeedServer, store: Store) -> None:
    server.pages = {"/news.xml": Page(etag='"v1"')}
    feeds = catalog({"news": server.url("/news.xml")})
    run(store, feeds)
    newer = rss(item("Three", "https://example.com/3", "g3"), item("One", "https://example.com/1", "g1"))
    server.pages["/news.xml"] = Page(body=newer.encode(), etag='"v2"')
    server.forget()
    result = run(store, feeds)["news"]
    assert (result.status, result.detail) == ("ok", "2 items, 1 new")
    assert server.seen[0].headers["if-none-match"] == '"v1"' and server.seen[0].status == 200
    assert guids(store, "news") == ["g1", "g2", "g3"]
    server.forget()
    assert run(store, feeds)["news"].status == "not modified"  # the new ETag was kept
    assert server.seen[0].headers["if-none-match"] == '"v2"'


def test_a_server_that_ignores_validators_duplicates_nothing(server: FeedServer, store: Store) -> None:
    server.pages = {"/plain.xml": Page()}
    feeds = catalog({"plain": server.url("/plain.xml")})
    assert run(store, feeds)["plain"].detail == "2 items, 2 new"
    assert run(store, feeds)["plain"].detail == "2 items, 0 new"
    assert guids(store, "plain") == ["g1", "g2"]


def test_local_files_are_not_read_again_until_they_change(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "local.xml"
    path.write_bytes(GOOD)
    feeds = catalog({"local": str(path)})
    assert run(store, feeds)["local"].status == "ok"
    assert run(store, feeds)["local"].status == "not modified"
    path.write_bytes(rss(item("Three", "https://example.com/3", "g3")).encode())
    assert run(store, feeds)["local"].detail == "1 items, 1 new"
    assert guids(store, "local") == ["g1", "g2", "g3"]


def test_the_bundled_samples_refresh_from_local_files(store: Store) -> None:
    feeds = catalog({path.stem: str(path) for path in SAMPLES.glob("*.xml")})
    assert {result.status for result in run(store, feeds).values()} == {"ok"}
    assert {result.status for result in run(store, feeds).values()} == {"not modified"}


# dedupe across refreshes


def test_a_reordered_or_republished_feed_never_duplicates(server: FeedServer, store: Store) -> None:
    server.pages = {"/news.xml": Page()}
    feeds = catalog({"news": server.url("/news.xml")})
    run(store, feeds)
    server.pages["/news.xml"] = Page(body=rss(
        item("Two, corrected", "https://example.com/2-fixed", "g2", "Tue, 03 Nov 2026 10:00:00 +0000"),
        item("One", "https://example.com/1", "g1"),
    ).encode())
    assert run(store, feeds)["news"].detail == "2 items, 0 new"
    kept = {entry.guid: entry for entry in store.items(["news"])}
    assert sorted(kept) == ["g1", "g2"]
    assert kept["g2"].title == "Two"  # the first version stays: what a lead may already have been sent


def test_items_without_guid_are_known_by_link_then_by_title_and_date(server: FeedServer, store: Store) -> None:
    entries = [item("By link", "https://example.com/by-link"),
               item("Home A", "https://example.com/", date="Mon, 02 Nov 2026 10:00:00 +0000"),
               item("Home B", "https://example.com/", date=None)]
    server.pages = {"/noguid.xml": Page(body=rss(*entries).encode())}
    feeds = catalog({"noguid": server.url("/noguid.xml")})
    assert run(store, feeds)["noguid"].detail == "3 items, 3 new"
    first = guids(store, "noguid")
    assert "https://example.com/by-link" in first
    assert sum(guid.startswith("sha256:") for guid in first) == 2
    server.pages["/noguid.xml"] = Page(body=rss(*reversed(entries)).encode())
    assert run(store, feeds, NOW + timedelta(days=1))["noguid"].detail == "3 items, 0 new"  # undated: same key
    assert guids(store, "noguid") == first


# broken feeds: served after a good refresh, each must fail alone and keep its items


def bomb(size: int) -> bytes:
    return gzip.compress(b"<" * size)


def redirecting(target: str, status: int = 302) -> Page:
    return Page(body=b"", status=status, headers={"Location": target})


BROKEN: dict[str, tuple[Page, str]] = {
    "http-404": (Page(body=b"gone", status=404), "HTTP 404 Not Found"),
    "http-500": (Page(body=b"oops", status=500), "HTTP 500 Internal Server Error"),
    "http-503": (Page(body=b"", status=503, headers={"Retry-After": "120"}), "HTTP 503"),
    "empty": (Page(body=b""), "not a usable feed"),
    "plain-text": (Page(body=b"Service temporarily unavailable"), "not a usable feed"),
    "html-page": (Page(body=b"<!DOCTYPE html><html><head><title>Login</title></head><body><form></form></body></html>",
                       headers={"Content-Type": "text/html"}), "not a usable feed"),
    "json": (Page(body=b'{"items": [{"title": "t", "url": "https://example.com/"}]}',
                  headers={"Content-Type": "application/json"}), "not a usable feed"),
    "binary": (Page(body=bytes(range(256)) * 16), "not a usable feed"),
    "cut-early": (Page(body=GOOD[:60]), "not a usable feed"),
    "no-items": (Page(body=rss().encode()), "not a usable feed"),
    "utf-16-garbage": (Page(body="\ufeffnot a feed at all".encode("utf-16")), "not a usable feed"),
    "huge-declared": (Page(body=b"<" * 5000), "larger than 4096 bytes (Content-Length 5000)"),
    "huge-streamed": (Page(body=b"<" * 5000, length=False), "larger than 4096 bytes"),
    "gzip-bomb": (Page(body=bomb(200_000), headers={"Content-Encoding": "gzip"}), "larger than 4096 bytes"),
    "slow-start": (Page(delay=3 * TIMEOUT), f"timed out after {TIMEOUT:g} s"),
    "slow-body": (Page(body=GOOD, trickle=TIMEOUT / 4), f"timed out after {TIMEOUT:g} s"),
    "redirect-loop": (redirecting("/redirect-loop.xml"), "too many redirects (more than 3)"),
    "redirect-to-ftp": (redirecting("ftp://127.0.0.1/feed.xml"), "UnsupportedProtocol"),
    "redirect-nowhere": (Page(body=b"", status=302), "HTTP 302"),
    "refused": (Page(), "cannot connect"),
}
KEEP_VALIDATORS = {name for name in BROKEN if name.startswith(("http-", "huge", "gzip", "slow", "redirect", "refused"))}


@dataclass
class Outcome:
    results: dict[str, FeedResult]
    store: Store
    feeds: Catalog


@pytest.fixture(scope="module")
def broken(feed_server: FeedServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    """One refresh of good versions of every feed, then one where each is broken in its own way."""
    server = feed_server
    server.pages.clear()
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('broken') / 'feeds.db'}")
    store.create()
    urls = {name: server.url(f"/{name}.xml") for name in BROKEN}
    urls["refused"] = f"http://127.0.0.1:{free_port()}/feed.xml"
    feeds = catalog(urls, max_bytes=4096, max_redirects=3)
    server.pages = {f"/{name}.xml": Page(etag=f'"{name}"') for name in BROKEN}
    refused = server.url("/refused.xml")  # good first, then nobody answers: the catalog moves
    first = run(store, catalog({**urls, "refused": refused}, max_bytes=4096))
    assert {result.status for result in first.values()} == {"ok"}
    server.pages = {f"/{name}.xml": page for name, (page, _) in BROKEN.items()}
    results = run(store, feeds, NOW + timedelta(hours=1))
    yield Outcome(results, store, feeds)
    store.close()


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_feed_fails_with_a_one_line_reason(broken: Outcome, name: str) -> None:
    result = broken.results[name]
    assert result.status == "failed"
    assert BROKEN[name][1] in result.detail
    assert "\n" not in result.detail and len(result.detail) <= 200


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_feed_keeps_its_last_good_items(broken: Outcome, name: str) -> None:
    assert guids(broken.store, name) == ["g1", "g2"]
    state = broken.store.feed_states()[name]
    assert (state.status, state.reason) == ("failed", broken.results[name].detail)
    # a fetch that failed keeps the validators; a body that did not parse forgets them, to be read in full again
    assert state.etag == (f'"{name}"' if name in KEEP_VALIDATORS else None)


def test_broken_feeds_are_given_up_on_within_the_time_out(feed_server: FeedServer, store: Store) -> None:
    feed_server.pages = {"/slow.xml": Page(delay=6 * TIMEOUT), "/good.xml": Page()}
    feeds = catalog({"slow": feed_server.url("/slow.xml"), "good": feed_server.url("/good.xml")})
    started = time.monotonic()
    results = run(store, feeds)
    assert time.monotonic() - started < 3 * TIMEOUT
    assert (results["slow"].status, results["good"].status) == ("failed", "ok")


# odd feeds that still work


def test_a_redirect_is_followed_and_a_permanent_move_is_reported(server: FeedServer, store: Store) -> None:
    server.pages = {"/old.xml": redirecting("/moved.xml", 301), "/moved.xml": redirecting("/new.xml", 302),
                    "/new.xml": Page(), "/temp.xml": redirecting("/new.xml", 307)}
    results = run(store, catalog({"old": server.url("/old.xml"), "temp": server.url("/temp.xml")}))
    assert results["old"].status == "ok"
    assert results["old"].detail == f"2 items, 2 new; moved permanently to {server.url('/new.xml')}; update feeds.yaml"
    assert results["temp"].detail == "2 items, 2 new"


def test_relative_links_resolve_against_where_the_feed_came_from(server: FeedServer, store: Store) -> None:
    body = rss(item("Relative", "/posts/1", "r1"), item("Absolute", "https://example.org/2", "r2"))
    server.pages = {"/blog/feed.xml": redirecting("/blog/v2/feed.xml"), "/blog/v2/feed.xml": Page(body=body.encode())}
    run(store, catalog({"blog": server.url("/blog/feed.xml")}))
    links = sorted(entry.link for entry in store.items(["blog"]))
    assert links == [server.url("/posts/1"), "https://example.org/2"]


def test_a_feed_cut_after_some_items_keeps_what_parsed(server: FeedServer, store: Store) -> None:
    server.pages = {"/cut.xml": Page(body=GOOD[: GOOD.index(b"<item><title>Two")] + b"<item><title>Tw")}
    result = run(store, catalog({"cut": server.url("/cut.xml")}))["cut"]
    assert result.status == "ok"
    assert result.detail.startswith("1 items, 1 new; malformed feed, kept what parsed: ")
    assert guids(store, "cut") == ["g1"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (rss(item("Café crème", "https://example.com/c", "c")).encode("utf-8"), "text/xml"),  # RFC 3023 says ASCII
        (rss(item("Café crème", "https://example.com/c", "c")).encode("latin-1"), "application/rss+xml"),
        (rss(item("Café crème", "https://example.com/c", "c"), encoding="iso-8859-1").encode("latin-1"),
         "text/html; charset=utf-8"),
        (rss(item("Café crème", "https://example.com/c", "c"), encoding="utf-16").encode("utf-16"), "text/xml"),
    ],
    ids=["utf-8-as-text-xml", "latin-1-declared-utf-8", "latin-1-served-as-utf-8", "utf-16"],
)
def test_wrong_or_unusual_encodings_still_read_right(server: FeedServer, store: Store, body: bytes,
                                                      content_type: str) -> None:
    server.pages = {"/enc.xml": Page(body=body, headers={"Content-Type": content_type})}
    result = run(store, catalog({"enc": server.url("/enc.xml")}))["enc"]
    assert (result.status, result.detail) == ("ok", "1 items, 1 new")
    assert [entry.title for entry in store.items(["enc"])] == ["Café crème"]


# concurrency


@pytest.mark.parametrize(("concurrency", "most"), [(1, 1), (4, 4)])
def test_feeds_are_fetched_a_few_at_a_time(server: FeedServer, store: Store, concurrency: int, most: int) -> None:
    server.pages = {f"/f{index}.xml": Page(delay=0.1) for index in range(6)}
    feeds = catalog({f"f{index}": server.url(f"/f{index}.xml") for index in range(6)}, concurrency=concurrency)
    assert {result.status for result in run(store, feeds).values()} == {"ok"}
    assert server.most_in_flight == most
