"""Feed health in the admin: each feed of feeds.yaml, how its last fetch went, and what it keeps."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from nurture.content.catalog import Catalog
from nurture.models import FeedState
from nurture.server.http import check_admin
from nurture.server.pages import page
from nurture.store.browse import FeedCount


class FeedHealth(NamedTuple):
    name: str
    title: str
    url: str
    state: FeedState | None  # None: never fetched
    items: int
    newest: datetime | None
    listed: bool  # in feeds.yaml; a feed taken out of it keeps its items


async def feeds(request: Request) -> Response:
    check_admin(request)
    store = request.app.state.engine.store
    states = await run_in_threadpool(store.feed_states)
    counts = await run_in_threadpool(store.feed_counts)
    return page(request, "feeds.html", feeds=health(request.app.state.engine.catalog, states, counts))


def health(catalog: Catalog, states: dict[str, FeedState], counts: dict[str, FeedCount]) -> list[FeedHealth]:
    """The feeds of the catalog in its order, then those the database still holds items of."""
    rows = [FeedHealth(name, feed.title or name, feed.url, states.get(name), *counts.get(name, FeedCount(0, None)),
                       listed=True) for name, feed in catalog.feeds.items()]
    gone = sorted(set(counts) - set(catalog.feeds))
    return rows + [FeedHealth(name, name, "", states.get(name), *counts[name], listed=False) for name in gone]
