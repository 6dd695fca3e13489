"""Who in sales gets a lead: the first route whose conditions all hold, else the default owner."""

from __future__ import annotations

import pytest

from nurture.handoff.routing import Owner, owner
from nurture.render.variables import sample_lead
from nurture.settings import Route, Sales

SALES = Sales(email="sales@example.com", name="Sales team", routes=[
    Route(name="Key accounts", email="keys@example.com", customer=True),
    Route(name="Benelux finance", email="benelux@example.com", industries=["Finance"], countries=["nl", "be"]),
    Route(name="German desk", email="de@example.com", locales=["de"]),
])


@pytest.mark.parametrize(("industry", "country", "locale", "customer", "expected"), [
    ("finance", "NL", "en", True, "keys@example.com"),  # the first route that takes it
    ("finance", "NL", "en", False, "benelux@example.com"),
    ("finance", "BE", "de", False, "benelux@example.com"),
    ("finance", "DE", "de", False, "de@example.com"),  # not Benelux: the next route
    ("manufacturing", "NL", "en", False, "sales@example.com"),  # every condition must hold
    ("finance", "", "en", False, "sales@example.com"),  # a country not known matches no country list
])
def test_the_first_route_whose_conditions_all_hold_owns_the_lead(industry: str, country: str, locale: str,
                                                                 customer: bool, expected: str) -> None:
    lead = sample_lead()
    lead.industry, lead.country, lead.locale, lead.customer = industry, country, locale, customer
    assert owner(SALES, lead).email == expected


def test_without_routes_the_default_owner_has_every_lead() -> None:
    assert owner(Sales(), sample_lead()) == Owner("Sales team", "sales@example.com")
