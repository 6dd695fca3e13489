"""The simulated people: who each lead is, how and when it arrives, and how it behaves (pure, from a seed).

What nurture stores of a person is only what intake takes (`Person.fields`); the rest (how engaged it is,
whether it means to buy, which mail client and security gateway read its mail) is hidden, and shows only
in what it does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random
from typing import Any

from nurture.content.catalog import Catalog

NAMES = {
    "en": (("Ada", "Alan", "Grace", "Linus", "Margaret", "Tim", "Barbara", "Dennis", "Frances", "Ken", "Radia",
            "Edsger", "Hedy", "John", "Katherine", "Donald", "Joan", "Brian", "Shafi", "Leslie"),
           ("Lovelace", "Turing", "Hopper", "Hamilton", "Liskov", "Ritchie", "Allen", "Thompson", "Perlman", "Lamport",
            "Knuth", "Clarke", "Johnson", "Kernighan", "Goldwasser", "Wing", "Backus", "Kay", "Floyd", "Hoare")),
    "nl": (("Anne", "Bram", "Daan", "Eva", "Femke", "Joost", "Lotte", "Maarten", "Noor", "Pieter", "Sanne", "Thijs"),
           ("de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "Bos", "Vos", "Dijkstra")),
    "de": (("Anna", "Felix", "Hanna", "Jonas", "Klara", "Lukas", "Marie", "Paul", "Sophie", "Tobias"),
           ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Becker", "Wagner", "Hoffmann", "Zuse", "Koch")),
}
COUNTRIES = {"en": ("US", "US", "GB", "IE", "CA", "AU"), "nl": ("NL", "NL", "BE"), "de": ("DE", "DE", "AT", "CH")}
LOCALES = (("en", 0.7), ("nl", 0.2), ("de", 0.1))
COMPANY_FIRST = ("North", "Blue", "Iron", "Bright", "Silver", "Granite", "Harbor", "Summit", "Cedar", "Pioneer",
                 "Vector", "Lumen", "Atlas", "Orbit", "Delta", "Keystone")
COMPANY_LAST = ("wind", "field", "works", "point", "stone", "bridge", "line", "gate", "forge", "path")
COMPANY_KIND = ("Systems", "Logistics", "Bank", "Manufacturing", "Software", "Insurance", "Labs", "Group")
# how leads come: by weight; a sign-up by form or API without consent must confirm its address first
SOURCES = (("import", 0.5), ("cli", 0.15), ("form", 0.2), ("api", 0.08), ("api-consented", 0.07))
CLIENTS = (("apple", 0.3), ("gmail", 0.25), ("outlook", 0.25), ("webmail", 0.2))  # apple: Mail Privacy Protection
GATEWAYS = (("proofpoint", 0.3), ("mimecast", 0.2), ("safelinks", 0.35), ("barracuda", 0.15))
GATEWAY_SHARE = 0.1  # of companies scan the links of every mail they receive
CONFIRMS = 0.72  # of the sign-ups that must confirm, those that do
DEAD = 0.025  # of addresses, those that bounce
CUSTOMERS = 0.1
GROWTH = 2.0  # leads arrive this many times faster at the end of the period than at its start


@dataclass(frozen=True)
class Person:
    number: int
    arrives: datetime
    source: str  # import, cli, form, api (must confirm), api-consented
    fields: dict[str, Any]  # what intake takes (nurture.intake.new_lead's keywords)
    engagement: float  # how likely it reads a mail (0 to 1)
    intent: float  # how likely it asks for sales: the pricing page, "Call me back" (0 to 1)
    fit: float  # how good a customer it would make: what sales finds out (0 to 1)
    client: str  # the mail client that loads its images: apple, gmail, outlook, webmail
    gateway: str | None  # the security gateway of its company, which follows every link of every mail
    confirms: bool  # a sign-up that confirms its address
    dead: bool  # its address bounces

    @property
    def email(self) -> str:
        return str(self.fields["email"])

    @property
    def must_confirm(self) -> bool:
        return self.source in ("form", "api")


def population(count: int, start: datetime, days: int, catalog: Catalog, seed: int, tag: str = "") -> list[Person]:
    """`count` people arriving between `start` and `days` later (more of them as time goes on), by arrival.
    `tag` keeps their addresses apart from those of an earlier population in the same database."""
    rng = Random(f"{seed}/population")
    arrivals = sorted(_arrival(rng.random(), days) for _ in range(count))
    taken: set[str] = set()
    return [_person(number, start + timedelta(days=day), rng, catalog, taken, tag)
            for number, day in enumerate(arrivals)]


def _arrival(u: float, days: int) -> float:
    """The day (with its fraction) at quantile `u` of a rate that grows linearly by GROWTH over `days`."""
    slope = GROWTH - 1.0
    if slope == 0:
        return u * days
    # solve x + slope x^2 / 2 = u (1 + slope / 2), with x the fraction of the period
    fraction = (-1 + math.sqrt(1 + 2 * slope * u * (1 + slope / 2))) / slope
    return min(fraction * days, days - 1e-6)


def _person(number: int, arrives: datetime, rng: Random, catalog: Catalog, taken: set[str], tag: str) -> Person:
    source = pick(rng, SOURCES)
    arrives = arrives.replace(hour=0, minute=0, second=0) + timedelta(hours=_working_hour(rng))
    intent = rng.betavariate(1.2, 3.0)
    return Person(number=number, arrives=arrives, source=source, fields=_fields(rng, catalog, taken, tag),
                  engagement=rng.betavariate(1.4, 2.6), intent=intent,
                  fit=0.6 * rng.betavariate(2.0, 2.0) + 0.4 * intent, client=pick(rng, CLIENTS),
                  gateway=pick(rng, GATEWAYS) if rng.random() < GATEWAY_SHARE else None,
                  confirms=rng.random() < CONFIRMS, dead=rng.random() < DEAD)


def _working_hour(rng: Random) -> float:
    """Most leads come in office hours, some in the evening or at night."""
    return rng.triangular(7.0, 22.0, 11.0) if rng.random() < 0.9 else rng.uniform(0.0, 24.0 - 1e-6)


def _fields(rng: Random, catalog: Catalog, taken: set[str], tag: str) -> dict[str, Any]:
    locale = pick(rng, LOCALES)
    first_names, last_names = NAMES[locale]
    first, last = rng.choice(first_names), rng.choice(last_names)
    company = f"{rng.choice(COMPANY_FIRST)}{rng.choice(COMPANY_LAST)} {rng.choice(COMPANY_KIND)}"
    interests = sorted(catalog.interests)
    industries = sorted(catalog.industries)
    return {"email": _address(first, last, company, taken, tag), "first_name": first, "last_name": last,
            "company": company, "locale": locale, "country": rng.choice(COUNTRIES[locale]),
            "interests": rng.sample(interests, min(len(interests), pick(rng, ((1, 0.6), (2, 0.3), (3, 0.1))))),
            "industry": rng.choice(industries) if industries and rng.random() < 0.6 else "",
            "customer": rng.random() < CUSTOMERS}


def _address(first: str, last: str, company: str, taken: set[str], tag: str) -> str:
    local = ".".join(_ascii(part) for part in (first, last))
    domain = f"{_ascii(company.split()[0])}.example.com"
    address, number = f"{local}{tag}@{domain}", 1
    while address in taken:
        number += 1
        address = f"{local}{number}{tag}@{domain}"
    taken.add(address)
    return address


def _ascii(text: str) -> str:
    plain = text.lower().replace("ü", "ue").replace("ö", "oe").replace("ä", "ae").replace("ß", "ss")
    return "".join(char for char in plain if char.isalnum())


def pick(rng: Random, weighted: Sequence[tuple[Any, float]]) -> Any:
    """One of the choices, by weight."""
    return rng.choices([choice for choice, _ in weighted], [weight for _, weight in weighted])[0]
