"""A Starlette app with one aiorunlist.Client in its lifespan, streaming runs as JSON lines.

    GET /threads/{thread_id}/runs[?order=asc]
        200, application/x-ndjson: one run per line, exactly as the server sent it
        404 (no such thread), 400 (bad arguments) or 502 (the upstream failed): a JSON error

It needs Starlette and uvicorn besides aiorunlist (python -m pip install starlette uvicorn);
examples/fastapi_app.py is the same app in FastAPI. Serve it with
uvicorn --factory examples.starlette_app:create_app (the client reads OPENAI_API_KEY and
OPENAI_BASE_URL). As a script, it starts the fake server, serves the app with uvicorn on
127.0.0.1, asks its own endpoint, prints what came back, and exits:

    python examples/starlette_app.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Literal

import aiohttp
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import aiorunlist
from aiorunlist.testing import FakeServer

NDJSON = "application/x-ndjson"


def create_app(*, api_key: str | None = None, base_url: str | None = None) -> Starlette:
    """The app. Without arguments, the client reads OPENAI_API_KEY, OPENAI_BASE_URL."""

    @asynccontextmanager
    async def lifespan(
        app: Starlette,
    ) -> AsyncIterator[Mapping[str, aiorunlist.Client]]:
        # One client (one connection pool) for the app's whole life. What the lifespan
        # yields is copied into each request's state: request.state.runlist.
        async with aiorunlist.Client(api_key, base_url=base_url) as client:
            yield {"runlist": client}

    routes = [Route("/threads/{thread_id}/runs", stream_runs)]
    return Starlette(routes=routes, lifespan=lifespan)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def json_line(run: aiorunlist.Run) -> bytes:
    # The run exactly as the server sent it (unknown fields included), integers wider than
    # 64 bits too, which orjson.dumps(aiorunlist.unstructure(run)) would refuse.
    return aiorunlist.dumps(run) + b"\n"


async def stream_runs(request: Request) -> Response:
    client: aiorunlist.Client = request.state.runlist
    raw_order = request.query_params.get("order", "desc")
    if raw_order not in ("asc", "desc"):
        return error_response(400, "order must be 'asc' or 'desc'")
    order: Literal["asc", "desc"] = "asc" if raw_order == "asc" else "desc"
    try:
        runs = client.runs(request.path_params["thread_id"], order=order)
    except ValueError as exc:  # raised before anything is sent
        return error_response(400, str(exc))

    # Wait for the first page before answering, so that "no such thread" is still a
    # 404 and not a 200 with an error line in it.
    try:
        first: aiorunlist.Run | None = await anext(runs)
    except StopAsyncIteration:
        first = None
    except aiorunlist.NotFoundError as exc:
        await runs.aclose()
        return error_response(404, exc.message)
    except aiorunlist.RunListError as exc:  # auth, rate limit, outage, ...
        await runs.aclose()
        return error_response(502, exc.message)

    async def body() -> AsyncIterator[bytes]:
        # aclosing: once the server notices that the caller hung up, no page is
        # asked for.
        async with aclosing(runs):
            if first is None:
                return
            yield json_line(first)
            try:
                async for run in runs:
                    yield json_line(run)
            except aiorunlist.RunListError as exc:
                # The status line is gone already: say so in the stream's last line.
                yield orjson.dumps({"error": {"message": exc.message}}) + b"\n"

    return StreamingResponse(body(), media_type=NDJSON)


async def demo() -> None:
    async with FakeServer() as upstream:
        (thread_id,) = upstream.seed(1, 12)
        app = create_app(api_key=upstream.api_key, base_url=upstream.base_url)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:  # the lifespan ran, the socket is listening
                if serving.done():
                    await serving  # startup failed: raise its error
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            root = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                path = f"/threads/{thread_id}/runs?order=asc"
                async with http.get(root + path) as resp:
                    lines = [orjson.loads(line) async for line in resp.content]
                    kind = resp.content_type
                    print(f"GET {path} -> {resp.status} {kind}, {len(lines)} lines")
                for run in lines[:3]:
                    print(f"  {run['id']}  {run['status']}")
                async with http.get(f"{root}/threads/thread_missing/runs") as resp:
                    body = await resp.json()
                    print(f"GET /threads/thread_missing/runs -> {resp.status}")
                    print(f"  {body['error']['message'].split(' [')[0]}")
        finally:
            # uvicorn's graceful stop; the lifespan closes the client.
            server.should_exit = True
            await serving


if __name__ == "__main__":
    asyncio.run(demo())
