"""`GET /metrics`: what an operator watches, in Prometheus' text format, read from the database at each
scrape (aggregates over indexed columns; nothing is kept in the process, so every node says the same).

    nurture_sends{state}                  sends in the outbox that are queued, deferred, sending or failed
    nurture_outbox_oldest_due_seconds     how long the oldest send due for delivery has waited
    nurture_hits_pending                  opens and clicks stored and not yet judged (the judge's lag)
    nurture_handoffs_pending              hand-offs whose mail has not gone out
    nurture_feeds_failing                 feeds whose last refresh failed
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from nurture.models import SendState
from nurture.send.outbox import Outbox
from nurture.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# the states a scrape counts, through the index of states: those that wait or need a hand. Sent and bounced
# mails are the history, which a scrape every few seconds would read whole (`nurture report` counts them)
WATCHED = (SendState.QUEUED, SendState.DEFERRED, SendState.SENDING, SendState.FAILED)


class StoreCollector(Collector):
    def __init__(self, store: Store):
        self.store = store
        self.outbox = Outbox(store)

    def collect(self) -> Iterator[Metric]:
        sends = GaugeMetricFamily("nurture_sends", "Sends in the outbox by state: queued, deferred, sending, failed.",
                                  labels=["state"])
        counts = self.outbox.counts(WATCHED)
        for state in WATCHED:
            sends.add_metric([state.value], counts.get(state, 0))
        yield sends
        oldest = self.outbox.oldest_due(datetime.now(UTC))
        waited = 0.0 if oldest is None else max((datetime.now(UTC) - oldest).total_seconds(), 0.0)
        yield GaugeMetricFamily("nurture_outbox_oldest_due_seconds",
                                "How long the oldest send due for delivery has waited (0: none is due).", waited)
        yield GaugeMetricFamily("nurture_hits_pending", "Opens and clicks stored and not yet judged.",
                                self.store.pending_hits())
        yield GaugeMetricFamily("nurture_handoffs_pending", "Hand-offs whose mail has not gone out.",
                                len(self.store.pending_handoffs()))
        yield GaugeMetricFamily("nurture_feeds_failing", "Feeds whose last refresh failed.",
                                sum(state.status == "failed" for state in self.store.feed_states().values()))


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(await run_in_threadpool(generate_latest, registry), media_type=CONTENT_TYPE)


def registry_for(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
