"""Which items a lead has not been sent yet: chosen for many leads at once, by item and by link."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture.content import digest as content
from nurture.content.catalog import Catalog, FeedConfig
from nurture.models import FeedItem, FeedState
from nurture.program import DIGEST, Due
from nurture.send.outbox import Outbox
from nurture.store import Store, base
from tests.conftest import T0, make_lead


def add_items(store: Store, feed: str, links: list[str]) -> list[FeedItem]:
    """Items of `feed`, the first the newest, one link each (a link may come twice)."""
    items = [FeedItem(feed=feed, guid=f"{feed}-{n}", title=f"{feed} {n}", link=link,
                      published=T0 - timedelta(hours=n), fetched_at=T0) for n, link in enumerate(links)]
    store.save_feed(FeedState(feed=feed), items)
    stored = {item.guid: item for item in store.items([feed], limit=1000)}
    return [stored[item.guid] for item in items]


def send_items(store: Store, lead_id: int, step: int, items: list[FeedItem]) -> None:
    Outbox(store).enqueue_many([(Due(lead_id, 0, step, DIGEST, None), [item.id or 0 for item in items])], T0)


def titles(found: dict[str, list[FeedItem]]) -> dict[str, list[str]]:
    return {feed: [item.title for item in items] for feed, items in found.items()}


def test_each_lead_gets_the_newest_items_it_was_not_sent(store: Store) -> None:
    cloud = add_items(store, "cloud", [f"https://example.com/c{n}" for n in range(8)])
    add_items(store, "security", [f"https://example.com/s{n}" for n in range(3)])
    ada, bob = (make_lead(store, email=email).id or 0 for email in ("ada@example.com", "bob@example.com"))
    send_items(store, ada, 1, cloud[:3])
    found = store.new_items({ada: ["cloud", "security"], bob: ["cloud"]}, limit=3)
    assert titles(found[ada]) == {"cloud": ["cloud 3", "cloud 4", "cloud 5"],
                                  "security": ["security 0", "security 1", "security 2"]}
    assert titles(found[bob]) == {"cloud": ["cloud 0", "cloud 1", "cloud 2"]}


def test_an_article_sent_under_another_item_is_not_sent_again(store: Store) -> None:
    """The same link in another feed, or again in the same feed: the lead had it."""
    cloud = add_items(store, "cloud", ["https://example.com/shared", "https://example.com/c1"])
    add_items(store, "security", ["https://example.com/shared", "https://example.com/s1"])
    ada = make_lead(store).id or 0
    send_items(store, ada, 1, cloud[:1])
    found = store.new_items({ada: ["cloud", "security"]}, limit=5)
    assert titles(found[ada]) == {"cloud": ["cloud 1"], "security": ["security 1"]}


def test_reads_deeper_when_sent_links_hide_more_items_than_the_lead_was_sent(store: Store) -> None:
    """One sent link, carried again by five newer items of the feed: the first reading is too shallow."""
    links = ["https://example.com/again"] * 6 + [f"https://example.com/other{n}" for n in range(3)]
    cloud = add_items(store, "cloud", links)
    ada = make_lead(store).id or 0
    send_items(store, ada, 1, cloud[5:6])
    assert titles(store.new_items({ada: ["cloud"]}, limit=2)[ada]) == {"cloud": ["cloud 6", "cloud 7"]}


@pytest.mark.parametrize("in_list", [1, 2, 10_000])
def test_leads_are_read_in_chunks_of_any_size(store: Store, monkeypatch: pytest.MonkeyPatch, in_list: int) -> None:
    monkeypatch.setattr(base, "IN_LIST", in_list)
    cloud = add_items(store, "cloud", [f"https://example.com/c{n}" for n in range(6)])
    ids = [make_lead(store, email=f"lead{n}@example.com").id or 0 for n in range(5)]
    for n, lead_id in enumerate(ids):
        send_items(store, lead_id, 1, cloud[:n])
    found = store.new_items(dict.fromkeys(ids, ["cloud"]), limit=1)
    assert [titles(found[lead_id])["cloud"] for lead_id in ids] == [[f"cloud {n}"] for n in range(5)]


def test_leads_with_the_same_feeds_get_digests_of_what_each_was_not_sent(store: Store) -> None:
    """Digests are chosen once for leads alike (same feeds, same new items), never across a difference."""
    cloud = add_items(store, "cloud", [f"https://example.com/c{n}" for n in range(6)])
    catalog = Catalog(feeds={"cloud": FeedConfig(url="https://example.com/feed")}, interests={"cloud": ["cloud"]})
    leads = [make_lead(store, email=f"lead{n}@example.com", interests=["cloud"]) for n in range(3)]
    send_items(store, leads[1].id or 0, 1, cloud[:2])
    found = content.digests(store, catalog, leads, 3)
    assert [item.title for item in found[leads[0].id or 0]] == ["cloud 0", "cloud 1", "cloud 2"]
    assert [item.title for item in found[leads[1].id or 0]] == ["cloud 2", "cloud 3", "cloud 4"]
    assert found[leads[2].id or 0] == found[leads[0].id or 0]
    assert found[leads[2].id or 0] is not found[leads[0].id or 0]  # each its own list


def test_the_items_of_sends_are_read_once_a_run(store: Store) -> None:
    cloud = add_items(store, "cloud", [f"https://example.com/c{n}" for n in range(4)])
    ada, bob = (make_lead(store, email=email).id or 0 for email in ("ada@example.com", "bob@example.com"))
    send_items(store, ada, 1, [cloud[2], cloud[0]])
    send_items(store, bob, 1, [cloud[0], cloud[3]])
    outbox = Outbox(store)
    sends = [store.sends_of(lead)[0].id or 0 for lead in (ada, bob)]
    known: dict[int, FeedItem] = {}
    found = outbox.items(sends[:1], known)
    assert [item.title for item in found[sends[0]]] == ["cloud 2", "cloud 0"]  # in the order the send carries them
    assert sorted(known) == sorted([cloud[2].id or 0, cloud[0].id or 0])
    known[cloud[0].id or 0].title = "as read before"
    found = outbox.items(sends, known)
    assert [item.title for item in found[sends[1]]] == ["as read before", "cloud 3"]  # not read again
