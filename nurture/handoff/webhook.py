"""The hand-off posted to a CRM or a chat: JSON with the lead, its score, why it qualified and the profile
link, signed the way the established webhook conventions sign (an HMAC-SHA256 of the timestamp and the
body, in a header beside the timestamp). Each delivery is recorded before it is sent and retried with
back-off until the receiver answers 2xx; its id, the idempotency key, is the same on every try, so a
receiver that got a try it did not answer in time takes it once.

The receiver checks `X-Nurture-Signature: v1=<hex>`, the HMAC-SHA256 with the webhook secret
(NURTURE_WEBHOOK_SECRET) of `<X-Nurture-Timestamp>.<body>`, and refuses a timestamp far from now.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import datetime, timedelta
from typing import Any

import httpx

from nurture.handoff import summary
from nurture.models import Handoff, Lead, WebhookDelivery
from nurture.settings import Settings
from nurture.store import Store

log = logging.getLogger(__name__)
BACKOFF = [timedelta(minutes=minutes) for minutes in (1, 5, 15, 60, 180, 360, 720)]  # then it has failed
LEASE = timedelta(minutes=5)
TIMEOUT_SECONDS = 10.0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def payload(settings: Settings, store: Store, handoff: Handoff, lead: Lead, profile_url: str,
            now: datetime) -> dict[str, Any]:
    """What the receiver gets of a hand-off."""
    assert handoff.id is not None and lead.id is not None
    read = summary.context(settings, lead, handoff, store.events_of(lead.id), profile_url, now,
                           store.handoffs_of(lead.id))  # what the hand-off mail says, as data
    reasons, threshold = read["why"], read["threshold"]

    def line(entry: Any) -> dict[str, Any]:
        event = entry.event
        return {"at": event.occurred_at.isoformat(), "kind": event.kind.value, "action": event.action,
                "points": event.points, "url": entry.url, "detail": event.detail}

    return {
        "id": f"handoff-{handoff.id}", "event": "handoff", "created_at": handoff.created_at.isoformat(),
        "lead": {"email": lead.email, "first_name": lead.first_name, "last_name": lead.last_name,
                 "company": lead.company, "industry": lead.industry, "country": lead.country,
                 "locale": lead.locale, "customer": lead.customer, "interests": lead.interests},
        "score": handoff.score, "threshold": threshold,
        "owner": {"name": handoff.owner_name, "email": handoff.owner_email},
        "why": [line(entry) for entry in reasons.reasons], "asked": [line(entry) for entry in reasons.asked],
        "earlier": [{"cycle": h.cycle, "outcome": h.outcome.value if h.outcome else None} for h in reasons.earlier],
        "profile_url": profile_url,
    }


async def post(client: httpx.AsyncClient, settings: Settings, store: Store, delivery: WebhookDelivery,
               body: bytes, now: datetime, wall: float) -> bool:
    """One try of one delivery; records what came of it. True when the receiver took it."""
    assert delivery.id is not None
    stamp = int(wall)
    headers = {"Content-Type": "application/json", "User-Agent": "nurture-webhook/1",
               "X-Nurture-Id": f"handoff-{delivery.handoff_id}", "X-Nurture-Timestamp": str(stamp),
               "X-Nurture-Signature": signature(settings.webhook_secret, stamp, body)}
    attempts = delivery.attempts + 1
    try:
        response = await client.post(delivery.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"
    if error is None:
        store.finish_webhook(delivery.id, "delivered", attempts, now, None, now)
        return True
    done = attempts > len(BACKOFF)
    log.warning("webhook for hand-off %s to %s: %s%s", delivery.handoff_id, delivery.url, error,
                "; giving up" if done else "")
    store.finish_webhook(delivery.id, "failed" if done else "pending", attempts,
                         now if done else now + BACKOFF[attempts - 1], error[:300], None)
    return False
