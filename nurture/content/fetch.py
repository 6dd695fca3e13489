"""Fetching feeds (the edge): conditional GET, a time-out, a size cap, a few feeds at a time.

Every failure becomes a result with a one-line reason; nothing here raises for a bad feed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx

from nurture.content.catalog import Catalog, FetchConfig

USER_AGENT = "nurture-feeds/0.1 (+https://github.com/nurture)"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
PERMANENT = {301, 308}


@dataclass(frozen=True)
class Validators:
    etag: str | None = None
    modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    feed: str
    status: str  # "ok", "not modified" or "failed"
    body: bytes = b""
    validators: Validators = Validators()
    reason: str | None = None
    url: str | None = None  # where an HTTP body came from, after redirects: the base of relative links
    note: str | None = None  # worth telling the marketer although the fetch worked


async def fetch_all(catalog: Catalog, known: dict[str, Validators]) -> list[Fetched]:
    """Fetch every feed of the catalog, `fetch.concurrency` at a time; a failure is a result, never an exception."""
    config = catalog.fetch
    slots = asyncio.Semaphore(config.concurrency)
    async with httpx.AsyncClient(timeout=config.timeout, follow_redirects=True, max_redirects=config.max_redirects,
                                 limits=httpx.Limits(max_connections=config.concurrency),
                                 headers={"User-Agent": USER_AGENT, "Accept": ACCEPT}) as client:

        async def one(name: str) -> Fetched:
            async with slots:
                return await fetch_one(client, name, catalog.location(name), known.get(name, Validators()), config)

        return list(await asyncio.gather(*(one(name) for name in catalog.feeds)))


async def fetch_one(client: httpx.AsyncClient, name: str, location: str, known: Validators,
                    config: FetchConfig) -> Fetched:
    """One feed, from a URL or a local file, within the time-out and the size cap."""
    try:
        if not location.startswith(("http://", "https://")):
            return _read_file(name, Path(location), known, config.max_bytes)
        async with asyncio.timeout(config.timeout):  # httpx's own time-out is per read, not for the whole body
            return await _get(client, name, location, known, config.max_bytes)
    except (TimeoutError, httpx.TimeoutException):
        return _failed(name, f"timed out after {config.timeout:g} s")
    except httpx.TooManyRedirects:
        return _failed(name, f"too many redirects (more than {config.max_redirects})")
    except httpx.ConnectError as error:
        return _failed(name, f"cannot connect: {error or 'connection refused'}")
    except httpx.HTTPError as error:
        return _failed(name, f"{type(error).__name__}: {error}")
    except OSError as error:
        return _failed(name, f"cannot read {location}: {error.strerror or error}")
    except Exception as error:  # noqa: BLE001 - one feed's surprise must not stop the refresh of the others
        return _failed(name, f"{type(error).__name__}: {error}")


def _failed(name: str, reason: str) -> Fetched:
    return Fetched(name, "failed", reason=" ".join(reason.split())[:200])


def _read_file(name: str, path: Path, known: Validators, max_bytes: int) -> Fetched:
    """A local file; its modification time and size stand in for Last-Modified."""
    stat = path.stat()
    modified = f"{stat.st_mtime_ns}:{stat.st_size}"
    if known.modified == modified:
        return Fetched(name, "not modified", validators=known)
    if stat.st_size > max_bytes:
        return _failed(name, f"larger than {max_bytes} bytes")
    return Fetched(name, "ok", path.read_bytes(), Validators(modified=modified))


async def _get(client: httpx.AsyncClient, name: str, url: str, known: Validators, max_bytes: int) -> Fetched:
    headers = {}
    if known.etag:
        headers["If-None-Match"] = known.etag
    if known.modified:
        headers["If-Modified-Since"] = known.modified
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 304:
            return Fetched(name, "not modified", validators=_validators(response, known))
        if not response.is_success:
            return _failed(name, f"HTTP {response.status_code} {response.reason_phrase}".strip())
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            return _failed(name, f"larger than {max_bytes} bytes (Content-Length {declared})")
        body = bytearray()
        async for chunk in response.aiter_bytes():  # decoded: a gzip bomb is counted as it inflates
            body += chunk
            if len(body) > max_bytes:
                return _failed(name, f"larger than {max_bytes} bytes")
        return Fetched(name, "ok", bytes(body), _validators(response, Validators()), url=str(response.url),
                       note=_moved(response))


def _validators(response: httpx.Response, known: Validators) -> Validators:
    return Validators(response.headers.get("ETag") or known.etag,
                      response.headers.get("Last-Modified") or known.modified)


def _moved(response: httpx.Response) -> str | None:
    if any(hop.status_code in PERMANENT for hop in response.history):
        return f"moved permanently to {response.url}; update feeds.yaml"
    return None
