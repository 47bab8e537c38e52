"""A FastAPI app with one aiorunlist.Client in its lifespan, streaming runs as JSON lines.

    GET /threads/{thread_id}/runs[?order=asc]
        200, application/x-ndjson: one run per line, exactly as the server sent it
        404 (no such thread), 422 (bad arguments) or 502 (the upstream failed): a JSON error

It needs FastAPI and uvicorn besides aiorunlist:

    python -m pip install fastapi uvicorn

Serve it against a real server (the client reads OPENAI_API_KEY and OPENAI_BASE_URL):

    uvicorn examples.fastapi_app:app

As a script, it starts the fake server, serves the app with uvicorn on 127.0.0.1, asks its
own endpoint, prints what came back, and exits:

    python examples/fastapi_app.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Annotated, Any, Literal

import aiohttp
import orjson
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

import aiorunlist
from aiorunlist.testing import FakeServer

NDJSON = "application/x-ndjson"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, aiorunlist.Client]]:
    # One client (one connection pool) for the app's whole life. What the lifespan
    # yields is copied into each request's state: request.state.runlist. The settings
    # are the environment's unless set on app.state.upstream first, as the demo does.
    settings: dict[str, Any] = getattr(app.state, "upstream", {})
    async with aiorunlist.Client(**settings) as client:
        yield {"runlist": client}


app = FastAPI(lifespan=lifespan)


def runlist(request: Request) -> aiorunlist.Client:
    """The app's client, as a dependency."""
    client: aiorunlist.Client = request.state.runlist
    return client


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message}}, status_code=status)


def json_line(run: aiorunlist.Run) -> bytes:
    # The run exactly as the server sent it (unknown fields included), integers wider than
    # 64 bits too, which orjson.dumps(aiorunlist.unstructure(run)) would refuse.
    return aiorunlist.dumps(run) + b"\n"


@app.get("/threads/{thread_id}/runs")
async def stream_runs(
    thread_id: str,
    client: Annotated[aiorunlist.Client, Depends(runlist)],
    order: Literal["asc", "desc"] = "desc",
) -> Response:
    try:
        runs = client.runs(thread_id, order=order)
    except ValueError as exc:  # raised before anything is sent
        return error_response(422, str(exc))

    # Wait for the first page before answering, so that "no such thread" is still a 404
    # and not a 200 with an error line in it.
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
        settings = {"api_key": upstream.api_key, "base_url": upstream.base_url}
        app.state.upstream = settings
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
