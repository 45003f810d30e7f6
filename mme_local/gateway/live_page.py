"""Routes of the live page: `/_mme/` (the page) and the two JSON views it polls.

Read-only GETs like the other `/_mme` views, so they pass `--require-sigv4` unsigned. With
several instances each view shows one, chosen by `?instance=N` (default 0).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mme_local.gateway.live_views import LiveViews
from mme_local.gateway.page_assets import inline_page

NO_STORE = {"cache-control": "no-store"}


@cache
def live_html() -> str:
    return inline_page("live.html", ["charts.js", "live.js"])


def live_routes(prefix: str, views: Callable[[], list[LiveViews]]) -> list[Route]:
    """The page and its views; each answers 404 where the gateway has no live views."""

    async def page(request: Request) -> Response:
        if not views():
            return Response(status_code=404)
        return HTMLResponse(live_html(), headers=NO_STORE)

    async def to_page(request: Request) -> Response:
        return RedirectResponse(f"{prefix}/", status_code=308)

    async def state(request: Request) -> Response:
        live = views()
        if not live:
            return Response(status_code=404)
        chosen = _instance(request, len(live))
        if isinstance(chosen, Response):
            return chosen
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            return JSONResponse({"message": "after must be a mark's number"}, status_code=400)
        return JSONResponse(live[chosen].state(int(after)), headers=NO_STORE)

    async def models(request: Request) -> Response:
        live = views()
        if not live:
            return Response(status_code=404)
        chosen = _instance(request, len(live))
        if isinstance(chosen, Response):
            return chosen
        body = await live[chosen].models_json()
        return Response(body, media_type="application/json", headers=NO_STORE)

    return [
        Route(prefix, to_page, methods=["GET"]),
        Route(f"{prefix}/", page, methods=["GET"]),
        Route(f"{prefix}/live/state", state, methods=["GET"]),
        Route(f"{prefix}/live/models", models, methods=["GET"]),
    ]


def _instance(request: Request, count: int) -> int | Response:
    """`?instance=N`'s N (default 0), or a 400 naming the instances there are."""
    asked = request.query_params.get("instance", "0")
    if asked.isdigit() and int(asked) < count:
        return int(asked)
    return JSONResponse(
        {"message": f"instance must be one of 0 to {count - 1} (the endpoint has {count})"},
        status_code=400,
    )
