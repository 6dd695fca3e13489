"""iCloud Private Relay's egress ranges, for telling Mail Privacy Protection's loads from people: read from
the CSV Apple publishes (`prefix,country,region,city` a line), from a file or an https URL. A URL is
fetched when the judge starts and kept in cache_dir, which serves when the URL cannot be reached."""

from __future__ import annotations

import logging
from ipaddress import ip_network
from pathlib import Path

import httpx

from nurture.score.machines import Network, Ranges

log = logging.getLogger(__name__)
CACHED = "relay-egress-ranges.csv"


def parse(text: str) -> tuple[list[Network], int]:
    """The networks of an egress CSV, and how many lines could not be read."""
    networks, bad = [], 0
    for line in text.splitlines():
        prefix = line.split(",", 1)[0].strip()
        if not prefix or prefix.startswith("#"):
            continue
        try:
            networks.append(ip_network(prefix, strict=False))
        except ValueError:
            bad += 1
    return networks, bad


def load(source: str, cache_dir: Path | None) -> Ranges:
    """The ranges of `source` (a file or a URL); empty, with a warning, when there are none to be had."""
    if not source:
        return Ranges()
    text = _fetch(source, cache_dir) if source.startswith(("https://", "http://")) else _read(Path(source))
    networks, bad = parse(text or "")
    if bad:
        log.warning("relay ranges %s: %d lines are not networks and were skipped", source, bad)
    if not networks:
        log.warning("relay ranges %s: no networks; Private Relay opens are judged without them", source)
    return Ranges(networks)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        log.warning("relay ranges %s cannot be read: %s", path, error)
        return None


def _fetch(url: str, cache_dir: Path | None) -> str | None:
    cached = cache_dir / CACHED if cache_dir else None
    try:
        response = httpx.get(url, timeout=30, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as error:
        log.warning("relay ranges %s cannot be fetched (%s); %s", url, error,
                    "the copy kept before serves" if cached and cached.exists() else "none are kept")
        return _read(cached) if cached and cached.exists() else None
    if cached:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(response.text, encoding="utf-8")
        except OSError as error:
            log.warning("relay ranges cannot be kept in %s: %s", cached, error)
    return response.text
