"""Machines are not people: decide whether a hit came from a scanner or a privacy proxy (pure).

A machine hit is still recorded, with the reason, but earns no points. `classify` judges one open or click
against the earlier hits of the same message, because the strongest signals are patterns: a scanner follows
several links of one message within a second or two (published measurements put such bursts a median of
about 40 s after delivery, so a time window alone misses them), and it follows the hidden honeypot link that
no person can see. A burst becomes visible only with its later clicks, so a verdict may name earlier hits
to re-judge as machine (`Verdict.retroactive`). Nothing here reads a clock, a database or the network.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    collapse_addresses,
    ip_address,
    ip_network,
)

OPEN, CLICK = "open", "click"

# Regular expressions, matched case-insensitively; the reason names the text that matched.
SCANNER_AGENTS: tuple[str, ...] = (
    # mail security gateways: they follow links (and load images) before the recipient sees the message
    r"proofpoint|urldefense",
    r"mimecast",
    r"safe ?links",
    r"microsoft office (?:existence|protocol) discovery",
    r"barracuda",
    r"\bcisco\b|ironport",
    r"symantec|broadcom|messagelabs",
    r"trend ?micro",
    r"sophos",
    r"forcepoint|websense",
    r"zscaler",
    r"forti(?:guard|net|mail)",
    r"google-safety|safe ?browsing",
    r"bingpreview",
    # link expanders of chat and social apps: a forwarded link being previewed, not the lead reading
    r"slackbot|slack-imgproxy",
    r"facebookexternalhit|facebot",
    r"twitterbot",
    r"linkedinbot",
    r"\bwhatsapp/",
    r"telegrambot",
    r"discordbot",
    r"skypeuripreview",
    # headless browsers and HTTP libraries: scripts, not mail clients
    r"headless\w*|phantomjs|slimerjs",
    r"\bcurl/|\bwget/|python-requests|python-urllib|python-httpx|aiohttp|go-http-client|\bjava/",
    r"apache-httpclient|okhttp|\baxios/|node-fetch|undici|libwww-perl",
    # anything else that says what it is; "Cubot" is a phone maker whose model names end up in browser agents
    r"\b(?!cubot\b)\w*bot\b|crawler|spider|scanner",
)

# Agents that load images for a person reading the mail, so their opens may be people, but that never
# follow a link for one: a person's click arrives from their browser. Outlook desktop on Windows loads
# images as "... Microsoft Outlook 16.0; ms-office; MSOffice 16", and Office fetches a link itself only
# to probe or preview it. Gmail and Yahoo load images through their proxies when the person opens the
# message (Gmail caches after the first open), so those opens are people; only the delivery-time rule
# applies to them. Yahoo's proxy also fetches the links of a message for itself.
CLICK_AGENTS: tuple[str, ...] = (
    r"googleimageproxy",
    r"yahoomailproxy",
    r"ms-office|msoffice",
    r"microsoft office/|microsoft outlook",
)

Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Proxy:
    """A privacy proxy that loads a message's images when the message arrives, before anyone reads it."""

    name: str
    networks: tuple[Network, ...]

    def holds(self, client: IPv4Address | IPv6Address | None) -> bool:
        return client is not None and any(client in network for network in self.networks)


# Apple Mail Privacy Protection loads every image of a message when Mail downloads it. Apple's own blocks
# (17.0.0.0/8 and the IPv6 blocks of Apple's enterprise network guide): an open from them at delivery is
# Apple's machinery, not a reader. Most MPP loads leave through the iCloud Private Relay egress (Akamai,
# Cloudflare, Fastly; Apple's egress-ip-ranges.csv, loaded from server.relay_ranges), which also carries
# people's browsing: there an open is MPP's only when every signal agrees (see _relay_open). MPP also loads
# when a device syncs, which may be long after delivery: such loads look like people.
APPLE = Proxy("Apple", tuple(ip_network(block) for block in (
    "17.0.0.0/8", "2403:300::/32", "2620:149::/32", "2a01:b740::/32")))


class Ranges:
    """Many networks (Apple's egress list has some hundred thousand), asked in O(log n): merged, then
    kept as sorted first and last addresses per IP version."""

    def __init__(self, networks: Sequence[Network] = ()):
        self.size = len(networks)
        self._spans: dict[int, tuple[list[int], list[int]]] = {}
        for version in (4, 6):
            merged = collapse_addresses([n for n in networks if n.version == version])  # type: ignore[type-var]
            spans = [(int(n.network_address), int(n.broadcast_address)) for n in merged]
            self._spans[version] = ([first for first, _ in spans], [last for _, last in spans])

    def __contains__(self, client: IPv4Address | IPv6Address | None) -> bool:
        if client is None:
            return False
        firsts, lasts = self._spans[client.version]
        index = bisect_right(firsts, int(client)) - 1
        return index >= 0 and int(client) <= lasts[index]

    def __bool__(self) -> bool:
        return self.size > 0


@dataclass(frozen=True)
class Signals:
    """The thresholds and lists that tell a machine from a person."""

    min_seconds_after_delivery: float = 2.0  # any hit sooner than this after delivery is a machine
    burst_seconds: float = 2.0  # burst_links distinct links of one message clicked within this long
    burst_links: int = 3  # are a scanner's burst; a honeypot hit reaches burst_seconds before and after
    proxy_open_seconds: float = 60.0  # an open from a privacy proxy this soon after delivery is its prefetch
    relay_open_seconds: float = 900.0  # MPP's loads through iCloud Private Relay come seconds to minutes later
    relays: Ranges = field(default_factory=Ranges)  # iCloud Private Relay's egress (server.relay_ranges), if given
    scanner_agents: tuple[str, ...] = SCANNER_AGENTS
    click_agents: tuple[str, ...] = CLICK_AGENTS
    proxies: tuple[Proxy, ...] = (APPLE,)

    def __post_init__(self) -> None:
        if self.burst_links < 2:
            raise ValueError(f"burst_links must be at least 2, not {self.burst_links}")


DEFAULT = Signals()


@dataclass(frozen=True)
class Hit:
    """One open or click of a message, as the tracking server saw it.

    The first four fields keep the order of the original single-hit shape.
    """

    method: str
    user_agent: str
    at: datetime
    delivered_at: datetime | None
    kind: str = CLICK  # "open" or "click" (EventKind's values compare equal)
    client: str | None = None  # the client's IP address as text
    link: int | None = None  # which link of the message, for clicks
    honeypot: bool = False  # the message's hidden link, which no person can see
    delivering: bool = False  # its delivery is not recorded yet: the SMTP transaction may still be open


@dataclass(frozen=True)
class Prior:
    """An earlier open or click of the same message, whether it was counted (earned its credit), and whether
    it was judged a machine's already."""

    at: datetime
    kind: str
    link: int | None = None
    counted: bool = True
    honeypot: bool = False
    machine: bool = False


@dataclass(frozen=True)
class Verdict:
    """Why a hit is a machine (None: it may be a person), and which earlier hits to re-judge the same way.

    `retroactive` holds indexes into the `earlier` hits passed to `classify`, only of those not judged a
    machine's yet: counted or not (a scanner's second click on a link a person clicked earned nothing, and
    is a machine's all the same).
    """

    reason: str | None = None
    retroactive: tuple[int, ...] = ()

    @property
    def machine(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class Burst:
    links: int  # distinct links clicked in the window
    span: float  # seconds from the first to the last click of the window
    members: tuple[int, ...]  # indexes into the earlier hits of the clicks in the window, this one aside


def classify(hit: Hit, earlier: Sequence[Prior] = (), signals: Signals = DEFAULT) -> Verdict:
    """Judge one hit, given the earlier hits of the same message (this one not among them)."""
    for check in (_prefetch, _honeypot, _agent, _no_agent, _proxy_open, _relay_open, _too_soon, _burst):
        verdict = check(hit, earlier, signals)
        if verdict is not None:
            return verdict
    return Verdict()


def scanner_marker(user_agent: str, kind: str, signals: Signals = DEFAULT) -> str | None:
    """The part of a user agent that names a scanner or a link fetcher, or None."""
    return _marker(user_agent, signals.scanner_agents, signals.click_agents if kind != OPEN else ())


@lru_cache(maxsize=8192)  # a busy server sees the same few hundred agents over and over
def _marker(user_agent: str, scanners: tuple[str, ...], clickers: tuple[str, ...]) -> str | None:
    found = _pattern(scanners + clickers).search(user_agent)
    return found.group(0).lower().strip("/ ") if found else None


def find_burst(hit: Hit, earlier: Sequence[Prior], signals: Signals = DEFAULT) -> Burst | None:
    """The largest burst this click belongs to: `burst_links` or more distinct links of the message
    clicked within `burst_seconds`, this click among them. None when there is none."""
    if hit.kind != CLICK or hit.link is None:
        return None
    width = timedelta(seconds=signals.burst_seconds)
    clicks: list[tuple[datetime, int, int | None]] = [(hit.at, hit.link, None)]
    clicks += [(p.at, p.link, i) for i, p in enumerate(earlier)
               if p.kind == CLICK and p.link is not None and abs(p.at - hit.at) <= width]
    best: Burst | None = None
    for start in sorted({at for at, _, _ in clicks if hit.at - width <= at <= hit.at}):
        inside = [click for click in clicks if start <= click[0] <= start + width]
        links = len({link for _, link, _ in inside})
        if links >= signals.burst_links and (best is None or links > best.links):
            span = (max(at for at, _, _ in inside) - start).total_seconds()
            best = Burst(links, span, tuple(i for _, _, i in inside if i is not None))
    return best


def _prefetch(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    method = (hit.method or "").strip().upper()
    return None if method == "GET" else Verdict(f"{method or 'unknown'} request (prefetch)")


def _honeypot(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    """A honeypot hit makes every hit of the message within `burst_seconds` of it a machine."""
    width = timedelta(seconds=signals.burst_seconds)
    traps = [hit.at] if hit.honeypot else []
    traps += [p.at for p in earlier if p.honeypot and abs(p.at - hit.at) <= width]
    if not traps:
        return None
    near = (i for i, p in enumerate(earlier) if not p.machine and any(abs(p.at - trap) <= width for trap in traps))
    return Verdict("honeypot link", tuple(near))


def _agent(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    marker = scanner_marker(hit.user_agent or "", hit.kind, signals)
    return None if marker is None else Verdict(f"scanner user agent ({marker})")


def _no_agent(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    return None if (hit.user_agent or "").strip() else Verdict("no user agent")


def _proxy_open(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    """Only at delivery: a proxy's later open is a person opening or reopening the message."""
    if hit.kind != OPEN or hit.delivered_at is None:
        return None
    if hit.at - hit.delivered_at > timedelta(seconds=signals.proxy_open_seconds):
        return None
    client = _address(hit.client)
    proxy = next((proxy for proxy in signals.proxies if proxy.holds(client)), None)
    return None if proxy is None else Verdict(f"privacy proxy open ({proxy.name})")


MPP_AGENT = "Mozilla/5.0"  # Mail Privacy Protection's loader says no more; Safari behind Private Relay says much more


def _relay_open(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    """Mail Privacy Protection through iCloud Private Relay: every signal at once, an open, from the relay's
    egress, with MPP's bare agent, within relay_open_seconds of delivery. The egress also carries people's
    browsing (Safari, with a full agent), which no single signal tells apart."""
    if hit.kind != OPEN or hit.delivered_at is None or not signals.relays:
        return None
    if (hit.user_agent or "").strip() != MPP_AGENT:
        return None
    if hit.at - hit.delivered_at > timedelta(seconds=signals.relay_open_seconds):
        return None
    if _address(hit.client) not in signals.relays:
        return None
    return Verdict("privacy proxy open (iCloud Private Relay)")


def _too_soon(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    if hit.delivering:  # a result is recorded within a second or so of the server taking the message
        return Verdict("during delivery")
    if hit.delivered_at is None:
        return None
    elapsed = (hit.at - hit.delivered_at).total_seconds()
    if elapsed >= signals.min_seconds_after_delivery:
        return None
    # A gateway may fetch while the SMTP transaction is still open, before delivery is recorded.
    return Verdict("during delivery" if elapsed < 0 else f"{_seconds(elapsed)} s after delivery")


def _burst(hit: Hit, earlier: Sequence[Prior], signals: Signals) -> Verdict | None:
    burst = find_burst(hit, earlier, signals)
    if burst is None:
        return None
    unjudged = tuple(i for i in burst.members if not earlier[i].machine)
    return Verdict(f"click burst: {burst.links} links in {_seconds(burst.span)} s", unjudged)


@lru_cache(maxsize=16)
def _pattern(markers: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{marker})" for marker in markers) or r"(?!)", re.IGNORECASE)


def _address(client: str | None) -> IPv4Address | IPv6Address | None:
    try:
        address = ip_address((client or "").strip())
    except ValueError:
        return None  # not an address (a test client, a garbled header): no network holds it
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f}".removesuffix(".0")
