"""The outbox in the admin: sends by state, the failed ones, and a way to queue them again (the same rule
as `nurture sends retry`: Engine.retry)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from nurture.engine import Engine
from nurture.models import SendState
from nurture.server.http import check_admin
from nurture.server.pages import page
from nurture.server.paging import PER_PAGE, Paging, offset_of, whole_number


async def outbox(request: Request) -> Response:
    check_admin(request)
    store = request.app.state.engine.store
    params = request.query_params
    counts = await run_in_threadpool(store.send_counts)
    failed = await run_in_threadpool(store.failed_sends, PER_PAGE, offset_of(params))
    total = next(count.sends for count in counts if count.state is SendState.FAILED)
    return page(request, "outbox.html", counts=counts, failed=failed,
                paging=Paging.of(request.url.path, params, total),
                queued=whole_number(params, "queued"), refused=whole_number(params, "refused"))


async def retry_one(request: Request) -> Response:
    check_admin(request)
    return await _retry(request, [request.path_params["send_id"]])


async def retry_all(request: Request) -> Response:
    check_admin(request)
    return await _retry(request, [])


async def _retry(request: Request, ids: Sequence[int]) -> Response:
    """Queue the failed sends among `ids` (all of them when empty) again, and say how many on the outbox page."""
    engine: Engine = request.app.state.engine
    queued, refused = await run_in_threadpool(_requeue, engine, ids)
    return RedirectResponse(f"/admin/outbox?queued={len(queued)}&refused={len(refused)}", status_code=303)


def _requeue(engine: Engine, ids: Sequence[int]) -> tuple[list[int], list[str]]:
    failed = [send for send, _ in engine.store.sends_in(SendState.FAILED, None, ids)]
    return engine.retry(failed)
