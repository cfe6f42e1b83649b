"""The worker process's loopback port answers only the gateway's proxy (the run's token)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from streams.infra.worker_process import TOKEN_HEADER, TokenGuard


async def _ok(request: object) -> JSONResponse:
    return JSONResponse({"rows": [1]})


async def test_only_requests_with_the_runs_token_reach_the_worker() -> None:
    app = TokenGuard(Starlette(routes=[Route("/v1/analytics/summary", _ok)]), "s3cret-token")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as client:
        anonymous = await client.get("/v1/analytics/summary")
        wrong = await client.get("/v1/analytics/summary", headers={TOKEN_HEADER: "guess"})
        proxied = await client.get("/v1/analytics/summary", headers={TOKEN_HEADER: "s3cret-token"})
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert proxied.status_code == 200 and proxied.json() == {"rows": [1]}


async def test_no_token_no_door() -> None:
    app = TokenGuard(Starlette(routes=[Route("/health", _ok)]), "")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as client:
        assert (await client.get("/health", headers={TOKEN_HEADER: ""})).status_code == 401
