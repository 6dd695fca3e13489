"""Where relays report bounces and complaints over HTTP: POST /webhooks/ses (SNS) and /webhooks/mailgun.
A report that does not verify is refused with 403 and changes nothing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import lru_cache

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from nurture.engine import Engine
from nurture.inbound import webhooks
from nurture.inbound.feedback import Feedback
from nurture.server.http import now

CertificateFor = Callable[[str], bytes]  # an SNS signing certificate's URL -> its PEM
Confirm = Callable[[str], Awaitable[None]]  # GET an SNS SubscribeURL


def routes() -> list[Route]:
    return [Route("/webhooks/ses", ses, methods=["POST"]), Route("/webhooks/mailgun", mailgun, methods=["POST"])]


@lru_cache(maxsize=16)
def amazon_certificate(url: str) -> bytes:
    """Fetch an SNS signing certificate (its URL was checked to be Amazon's); kept while the server runs."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return response.content


async def confirm_subscription(url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        (await client.get(url)).raise_for_status()


async def ses(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    body = await request.body()
    message = webhooks.parse(body)
    certificate_for: CertificateFor = getattr(request.app.state, "sns_certificate", amazon_certificate)
    await run_in_threadpool(webhooks.verify_sns, message, certificate_for, engine.settings.bounces.ses_topics)
    if message["Type"] == "SubscriptionConfirmation":  # SNS asks whether we want the topic: yes
        url = str(message.get("SubscribeURL", ""))
        if not url.startswith("https://sns.") or ".amazonaws.com" not in url.split("/")[2]:
            raise webhooks.Forged(f"not Amazon's subscription address: {url!r}")
        confirm: Confirm = getattr(request.app.state, "sns_confirm", confirm_subscription)
        await confirm(url)
        return PlainTextResponse("subscribed")
    if message["Type"] == "Notification":
        feedback = Feedback(engine.settings, engine.store)
        notices = webhooks.ses_notices(message, feedback.reader)
        if notices:
            await run_in_threadpool(feedback.take_notices, notices, body, "", [], "ses", now())
    return PlainTextResponse("ok")


async def mailgun(request: Request) -> Response:
    engine: Engine = request.app.state.engine
    body = await request.body()
    report = webhooks.parse(body)

    def seen(token: str) -> bool:
        return engine.store.count_request(f"mailgun:{token}", 2 * webhooks.MAILGUN_SKEW_SECONDS, time.time()) > 1

    await run_in_threadpool(webhooks.verify_mailgun, report, engine.settings.mailgun_signing_key, time.time(), seen)
    feedback = Feedback(engine.settings, engine.store)
    notices = webhooks.mailgun_notices(report, feedback.reader)
    if notices:
        await run_in_threadpool(feedback.take_notices, notices, body, "", [], "mailgun", now())
    return PlainTextResponse("ok")
