"""Refreshing feeds: fetch every feed of the catalog, parse what changed, keep the new items.

A feed that fails keeps its last good items and its validators; the result says why, in one line.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from nurture.content.catalog import Catalog, Parsed, parse
from nurture.content.fetch import Fetched, Validators, fetch_all
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
    parsed = _parse(fetched, catalog, now)
    if parsed.problem and not parsed.items:
        # forget the validators: the next refresh must fetch the body again, not hear "not modified"
        state.status, state.reason, state.etag, state.modified = "failed", parsed.problem, None, None
        store.save_feed(state, [])
        return FeedResult(fetched.feed, "failed", parsed.problem)
    items = [FeedItem(feed=fetched.feed, guid=item.guid, title=item.title, link=item.link, summary=item.summary,
                      published=item.published, fetched_at=now) for item in parsed.items]
    new = store.save_feed(state, items)
    notes = "".join(f"; {note}" for note in (parsed.problem, fetched.note) if note)
    return FeedResult(fetched.feed, "ok", f"{len(items)} items, {new} new{notes}")


def _parse(fetched: Fetched, catalog: Catalog, now: datetime) -> Parsed:
    try:
        return parse(fetched.body, catalog.feeds[fetched.feed], now, base_url=fetched.url)
    except Exception as error:  # noqa: BLE001 - a parser surprise in one feed must not stop the others
        return Parsed(problem=f"could not parse: {type(error).__name__}: {' '.join(str(error).split())[:120]}")
