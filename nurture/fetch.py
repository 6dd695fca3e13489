"""Fetching feeds (the edge): conditional GET, a time-out, a size cap, all feeds at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import httpx

from nurture.feeds import Catalog

MAX_BYTES = 5 * 1024 * 1024
TIMEOUT = 15.0


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


async def fetch_all(catalog: Catalog, known: dict[str, Validators], timeout: float = TIMEOUT,
                    max_bytes: int = MAX_BYTES) -> list[Fetched]:
    """Fetch every feed of the catalog concurrently; a failure is a result, never an exception."""
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True, limits=limits,
                                 headers={"User-Agent": "nurture-feeds/0.1"}) as client:
        jobs = [_fetch(client, name, catalog.location(name), known.get(name, Validators()), max_bytes)
                for name in catalog.feeds]
        return list(await asyncio.gather(*jobs))


async def _fetch(client: httpx.AsyncClient, name: str, location: str, known: Validators,
                 max_bytes: int) -> Fetched:
    try:
        if not location.startswith(("http://", "https://")):
            return _read_file(name, Path(location), known, max_bytes)
        return await _get(client, name, location, known, max_bytes)
    except (httpx.HTTPError, OSError, ValueError) as error:
        return Fetched(name, "failed", reason=f"{type(error).__name__}: {error}"[:200])


def _read_file(name: str, path: Path, known: Validators, max_bytes: int) -> Fetched:
    stat = path.stat()
    modified = str(int(stat.st_mtime))
    if known.modified == modified:
        return Fetched(name, "not modified", validators=known)
    if stat.st_size > max_bytes:
        return Fetched(name, "failed", reason=f"larger than {max_bytes} bytes")
    return Fetched(name, "ok", path.read_bytes(), Validators(modified=modified))


async def _get(client: httpx.AsyncClient, name: str, url: str, known: Validators, max_bytes: int) -> Fetched:
    headers = {}
    if known.etag:
        headers["If-None-Match"] = known.etag
    if known.modified:
        headers["If-Modified-Since"] = known.modified
    async with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 304:
            return Fetched(name, "not modified", validators=known)
        if response.status_code != 200:
            return Fetched(name, "failed", reason=f"HTTP {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                return Fetched(name, "failed", reason=f"larger than {max_bytes} bytes")
        validators = Validators(response.headers.get("ETag"), response.headers.get("Last-Modified"))
        return Fetched(name, "ok", bytes(body), validators)
