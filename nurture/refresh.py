"""Refreshing feeds: fetch every feed of the catalog, parse what changed, keep the new items.

A feed that fails keeps its last good items and its validators; the result says why, in one line.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from nurture.feeds import Catalog, parse
from nurture.fetch import Fetched, Validators, fetch_all
from nurture.models import FeedItem, FeedState
from nurture.store import Store


class FeedResult(NamedTuple):
    feed: str
    status: str  # ok, not modified, failed
    detail: str


async def refresh(store: Store, catalog: Catalog, now: datetime) -> list[FeedResult]:
    """Fetch every feed concurrently and store what is new; one result per feed."""
    states = store.feed_states()
    known = {name: Validators(state.etag, state.modified) for name, state in states.items()}
    fetched_all = await fetch_all(catalog, known)
    return [_keep(store, catalog, fetched, states.get(fetched.feed), now) for fetched in fetched_all]


def _keep(store: Store, catalog: Catalog, fetched: Fetched, old: FeedState | None, now: datetime) -> FeedResult:
    state = FeedState(feed=fetched.feed, etag=fetched.validators.etag, modified=fetched.validators.modified,
                      status=fetched.status, reason=fetched.reason, checked_at=now)
    if fetched.status != "ok":
        if fetched.status == "failed" and old is not None:
            state.etag, state.modified = old.etag, old.modified
        store.save_feed(state, [])
        return FeedResult(fetched.feed, fetched.status, fetched.reason or "")
    parsed = parse(fetched.body, catalog.feeds[fetched.feed], now)
    if parsed.problem and not parsed.items:
        state.status, state.reason, state.etag, state.modified = "failed", parsed.problem, None, None
        store.save_feed(state, [])
        return FeedResult(fetched.feed, "failed", parsed.problem)
    items = [FeedItem(feed=fetched.feed, guid=item.guid, title=item.title, link=item.link, summary=item.summary,
                      published=item.published, fetched_at=now) for item in parsed.items]
    new = store.save_feed(state, items)
    note = f"; {parsed.problem}" if parsed.problem else ""
    return FeedResult(fetched.feed, "ok", f"{len(items)} items, {new} new{note}")
