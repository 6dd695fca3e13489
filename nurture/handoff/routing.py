"""Who in sales gets a lead: the first of `sales.routes` whose conditions all hold (industry, country,
locale, customer or not), else the default owner (`sales.email`, `sales.name`)."""

from __future__ import annotations

from typing import NamedTuple

from nurture.models import Lead
from nurture.settings import Route, Sales


class Owner(NamedTuple):
    name: str
    email: str
    webhook: str = ""  # where the hand-off also goes as signed JSON (a CRM, a chat)


def owner(sales: Sales, lead: Lead) -> Owner:
    for route in sales.routes:
        if takes(route, lead):
            return Owner(route.name, route.email, route.webhook)
    return Owner(sales.name, sales.email, sales.webhook)


def takes(route: Route, lead: Lead) -> bool:
    return ((not route.industries or lead.industry in {value.lower() for value in route.industries})
            and (not route.countries or lead.country in {value.upper() for value in route.countries})
            and (not route.locales or lead.locale in {value.lower() for value in route.locales})
            and (route.customer is None or route.customer == lead.customer))
