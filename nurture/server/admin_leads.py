"""The leads list of the admin: searched, filtered, sorted and paged by the URL's parameters (a GET form),
so that a view is a link a marketer can share."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from nurture.errors import InputError
from nurture.models import Stage, Suppression
from nurture.server.http import check_admin
from nurture.server.pages import page
from nurture.server.paging import PER_PAGE, Paging, offset_of, whole_number
from nurture.store.browse import NOT_SUPPRESSED, SUPPRESSED, LeadOrder, LeadSearch

E = TypeVar("E", bound=StrEnum)
YES_NO = {"yes": True, "no": False}
SUPPRESSED_CHOICES = [SUPPRESSED, NOT_SUPPRESSED, *(reason.value for reason in Suppression)]
ORDERS = {"asc": False, "desc": True}


async def leads(request: Request) -> Response:
    check_admin(request)
    params = request.query_params
    search = search_of(params)
    total, found = await run_in_threadpool(request.app.state.engine.store.find_leads, search, PER_PAGE,
                                           offset_of(params))
    paging = Paging.of(request.url.path, params, total)
    return page(request, "leads.html", leads=found, search=search, paging=paging,
                stages=[stage.value for stage in Stage], suppressions=SUPPRESSED_CHOICES,
                orders=[order.value for order in LeadOrder],
                industries=sorted(request.app.state.engine.catalog.industries))


def search_of(params: Mapping[str, str]) -> LeadSearch:
    """The search a URL's parameters ask for; InputError naming the first parameter that is wrong."""
    min_score, max_score = whole_number(params, "min_score"), whole_number(params, "max_score")
    if min_score is not None and max_score is not None and min_score > max_score:
        raise InputError(f"min_score: {min_score} is above max_score {max_score}")
    customer = choice(params, "customer", list(YES_NO))
    order = choice(params, "order", list(ORDERS))
    return LeadSearch(
        text=params.get("q", "").strip(),
        stage=member(params, "stage", Stage),
        industry=params.get("industry", "").strip() or None,
        customer=YES_NO[customer] if customer else None,
        locale=params.get("locale", "").strip() or None,
        country=params.get("country", "").strip().upper() or None,
        min_score=min_score,
        max_score=max_score,
        suppressed=choice(params, "suppressed", SUPPRESSED_CHOICES),
        order=member(params, "sort", LeadOrder) or LeadOrder.CREATED,
        descending=ORDERS[order] if order else True,
    )


def choice(params: Mapping[str, str], name: str, allowed: list[str]) -> str | None:
    """The parameter `name`, one of `allowed`, or None when absent or empty."""
    raw = params.get(name, "").strip().lower()
    if raw and raw not in allowed:
        raise InputError(f"{name}: {raw!r} is not one of {', '.join(allowed)}")
    return raw or None


def member(params: Mapping[str, str], name: str, kind: type[E]) -> E | None:
    found = choice(params, name, [value.value for value in kind])
    return kind(found) if found else None
