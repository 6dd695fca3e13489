"""What happens to a delivered mail: what its reader does, and what machines do before and beside it (pure).

People read some of their mail hours after it came, open it again, click an article, now and then the
pricing page or "Call me back", confirm a sign-up, unsubscribe. Machines do what the judge must tell
apart: a company's security gateway follows every link of every mail within a minute of delivery (some
with their own user agent, some with HEAD requests, some as a browser would, honeypot included), Apple's
Mail Privacy Protection loads the pixel when the mail arrives, a chat app previews a forwarded link.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from random import Random
from typing import Any

from nurture.demo.inbox import Mail
from nurture.demo.population import Person

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
EDGE = CHROME + " Edg/131.0"
SAFARI = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
          "Safari/605.1.15")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
BROWSERS = {"apple": SAFARI, "gmail": CHROME, "outlook": EDGE, "webmail": FIREFOX}
OPENERS = {"gmail": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
           "outlook": "Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "webmail": FIREFOX}
MPP = "Mozilla/5.0"  # Mail Privacy Protection's loader, from Apple's own network
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"


@dataclass(frozen=True)
class Gateway:
    """A company's mail security gateway: how it fetches every link of a mail it lets through."""

    user_agent: str
    network: str  # its addresses' first two octets
    method: str = "GET"
    pixel: bool = False  # loads images too
    hidden: bool = True  # follows the links no person can see (the honeypot)
    delay: tuple[float, float] = (2.0, 60.0)  # seconds after delivery, at least and at most


GATEWAYS = {
    "proofpoint": Gateway("Mozilla/5.0 (compatible; urldefense.proofpoint.com link check)", "148.163", pixel=True),
    "mimecast": Gateway("Mozilla/5.0 (compatible; Mimecast URL Protect)", "207.211", pixel=True),
    # like a browser, and skips hidden links: that it comes during delivery and its burst give it away
    "safelinks": Gateway(EDGE, "40.94", hidden=False, delay=(0.3, 1.8)),
    "barracuda": Gateway("Mozilla/5.0 (compatible; Barracuda Sentinel)", "209.222", method="HEAD"),
}


@dataclass(frozen=True)
class Hit:
    """One request to the tracking server, made by a person or a machine (`machine`: the simulation's
    truth, which the judge does not see)."""

    at: datetime
    kind: str  # open or click
    token: str
    method: str
    user_agent: str
    client: str
    machine: bool


@dataclass
class Reaction:
    hits: list[Hit] = field(default_factory=list)
    unsubscribe_at: datetime | None = None
    confirm_at: datetime | None = None
    confirm_by_preferences: bool = False  # by saving its topics rather than the confirmation button


def react(person: Person, mail: Mail, links: Sequence[Mapping[str, Any]], step: int, delivered: datetime,
          rng: Random) -> Reaction:
    """Everything that happens to one delivered mail (its `links` as the send stored them)."""
    reaction = Reaction(hits=_machines(person, mail, links, delivered, rng))
    if mail.confirm is not None and person.must_confirm:
        if person.confirms:
            reaction.confirm_at = delivered + timedelta(hours=_lognormal(rng, 0.3, 1.4, 72))
            reaction.confirm_by_preferences = rng.random() < 0.15
        return reaction
    read = rng.random() < min(0.95, person.engagement * (1.25 if step == 0 else 0.93 ** (step - 1)))
    leaves = step > 0 and rng.random() < 0.004 + 0.025 * (1 - person.engagement) * min(step, 4) / 4
    if not read:
        if leaves and rng.random() < 0.5:  # from the mail client's unsubscribe button, unread
            reaction.unsubscribe_at = delivered + timedelta(hours=_lognormal(rng, 4, 1.0, 96))
        return reaction
    at = delivered + timedelta(hours=_lognormal(rng, 2.5, 1.3, 168), seconds=30)
    reaction.hits += _opens(person, mail, at, rng)
    if leaves:
        reaction.unsubscribe_at = at + timedelta(seconds=rng.uniform(20, 200))
        return reaction
    reaction.hits += _clicks(person, mail, links, at, rng)
    return reaction


def _machines(person: Person, mail: Mail, links: Sequence[Mapping[str, Any]], delivered: datetime,
              rng: Random) -> list[Hit]:
    hits = []
    if person.client == "apple" and mail.pixel:
        at = delivered + timedelta(seconds=rng.uniform(1, 45))
        hits.append(Hit(at, "open", mail.pixel, "GET", MPP, f"17.58.{rng.randrange(256)}.{rng.randrange(256)}", True))
    if person.gateway is not None:
        gateway = GATEWAYS[person.gateway]
        hits += _scan(gateway, mail, links, delivered + timedelta(seconds=rng.uniform(*gateway.delay)), rng)
    return hits


def _scan(gateway: Gateway, mail: Mail, links: Sequence[Mapping[str, Any]], at: datetime, rng: Random) -> list[Hit]:
    """Every link of the mail in a second or so, in the order the gateway found them."""
    client = f"{gateway.network}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    hits = []
    if gateway.pixel and mail.pixel:
        hits.append(Hit(at, "open", mail.pixel, "GET", gateway.user_agent, client, True))
    for index in sorted(mail.links):
        if not gateway.hidden and index < len(links) and _kind(links[index]) == "honeypot":
            continue
        hits.append(Hit(at, "click", mail.links[index], gateway.method, gateway.user_agent, client, True))
        at += timedelta(seconds=rng.uniform(0.02, 0.25))
    return hits


def _opens(person: Person, mail: Mail, at: datetime, rng: Random) -> list[Hit]:
    """The pixel as the reader's client loads it: not at all behind Mail Privacy Protection (its copy was
    loaded at delivery), once through Gmail's proxy (it keeps it), on each reading elsewhere."""
    if mail.pixel is None or person.client == "apple":
        return []
    agent = OPENERS[person.client]
    client = f"66.249.84.{rng.randrange(1, 255)}" if person.client == "gmail" else _office(person)
    hits = [Hit(at, "open", mail.pixel, "GET", agent, client, False)]
    if person.client != "gmail" and rng.random() < 0.25:
        hits.append(Hit(at + timedelta(hours=rng.uniform(1, 48)), "open", mail.pixel, "GET", agent, client, False))
    return hits


def _clicks(person: Person, mail: Mail, links: Sequence[Mapping[str, Any]], at: datetime, rng: Random) -> list[Hit]:
    """An article or two, sometimes the pricing page, now and then "Call me back": seconds to minutes apart."""
    kinds = {index: _kind(links[index]) for index in mail.links if index < len(links)}
    articles = sorted(index for index, kind in kinds.items() if kind == "article")
    chosen: list[int] = []
    if articles and rng.random() < person.engagement * 0.6:
        chosen += rng.sample(articles, min(len(articles), 2 if rng.random() < person.engagement * 0.5 else 1))
    asks = (("pricing", 0.45 * person.intent * (0.5 + person.engagement)), ("callback", 0.25 * person.intent))
    for kind, chance in asks:
        wanted = [index for index, found in kinds.items() if found == kind]
        if wanted and rng.random() < chance:
            chosen.append(wanted[0])
    hits, browser, client = [], BROWSERS[person.client], _office(person)
    for index in chosen:
        at += timedelta(seconds=rng.uniform(8, 240))
        hits.append(Hit(at, "click", mail.links[index], "GET", browser, client, False))
    if articles and chosen and chosen[0] in articles and rng.random() < 0.03:  # shared in a chat: its preview
        later = at + timedelta(minutes=rng.uniform(2, 180))
        hits.append(Hit(later, "click", mail.links[chosen[0]], "GET", SLACKBOT, f"54.209.{rng.randrange(256)}.9", True))
    return hits


def _kind(link: Mapping[str, Any]) -> str:
    if link.get("action") in ("callback", "honeypot"):
        return str(link["action"])
    return "pricing" if link.get("tag") == "high-intent" else "article"


def _office(person: Person) -> str:
    return f"203.0.113.{person.number % 250 + 1}"


def _lognormal(rng: Random, median: float, sigma: float, cap: float) -> float:
    return min(cap, rng.lognormvariate(math.log(median), sigma))
