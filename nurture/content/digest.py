"""Choosing a lead's digest: the newest items of its feeds it was never sent, each feed taking turns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from nurture.content.catalog import Catalog, mix
from nurture.models import FeedItem, Lead
from nurture.store import Store
from nurture.store.leads import Reader


def digest_items(store: Store, catalog: Catalog, lead: Lead, limit: int) -> list[FeedItem]:
    """The items a lead's next digest carries: never sent to it before, each feed taking turns (feeds.mix)."""
    return digests(store, catalog, [lead], limit)[lead.id or 0]


def digests(store: Store, catalog: Catalog, leads: Sequence[Lead | Reader], limit: int) -> dict[int, list[FeedItem]]:
    """`digest_items` for many leads at once, by lead id: whole leads, or just what choosing needs of them."""
    feeds = {lead.id or 0: catalog.feeds_for(lead.interests, lead.industry) for lead in leads}
    unsent = store.new_items(feeds, limit)
    # mix is pure: leads with the same feeds and the same new items (most of a segment) get the same digest
    chosen: dict[tuple[tuple[str, ...], tuple[int | None, ...]], list[FeedItem]] = {}
    found: dict[int, list[FeedItem]] = {}
    for lead_id, names in feeds.items():
        items = [item for feed in names for item in unsent[lead_id][feed]]
        key = (tuple(names), tuple(item.id for item in items))
        if key not in chosen:
            chosen[key] = mix(items, names, limit)
        found[lead_id] = list(chosen[key])
    return found


def sample_items(now: datetime, count: int = 3) -> list[FeedItem]:
    """Items for lint and the bench when no feed is at hand: a link in each summary, as feeds have."""
    return [FeedItem(id=-number, feed="sample", guid=f"sample-{number}", title=f"Sample article {number}",
                     link=f"https://example.com/articles/{number}",
                     summary=f'<p>What article {number} is about, with <a href="https://example.com/more/{number}" '
                             'rel="noopener noreferrer">a link</a>.</p>',
                     published=now - timedelta(days=number), fetched_at=now)
            for number in range(1, count + 1)]

