"""An aiohttp.web app with one aiorunlist.Client for its whole life, streaming runs as JSON lines.

    GET /threads/{thread_id}/runs[?order=asc]
        200, application/x-ndjson: one run per line, exactly as the server sent it
        404 (no such thread), 400 (bad arguments) or 502 (the upstream failed): a JSON error

Use it in your own code: ``web.run_app(create_app(), host="127.0.0.1", port=8080)``, with
``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` in the environment. As a script, it starts the
fake server, serves the app on 127.0.0.1, asks its own endpoint, prints what came back, exits:

    python examples/aiohttp_app.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Literal

import aiohttp
import orjson
from aiohttp import web

import aiorunlist
from aiorunlist.testing import FakeServer

#: Where the app keeps its client (a typed key: request.app[CLIENT] is a Client).
CLIENT = web.AppKey("aiorunlist_client", aiorunlist.Client)

NDJSON = "application/x-ndjson"


def create_app(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
) -> web.Application:
    """The app. Without arguments, the client reads OPENAI_API_KEY, OPENAI_BASE_URL."""

    async def runlist_client(app: web.Application) -> AsyncIterator[None]:
        # One client (one connection pool) for the app's whole life: created at startup,
        # closed at cleanup, after the last request.
        async with aiorunlist.Client(api_key, base_url=base_url) as client:
            app[CLIENT] = client
            yield

    app = web.Application()
    app.cleanup_ctx.append(runlist_client)
    app.router.add_get("/threads/{thread_id}/runs", stream_runs)
    return app


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message}}, status=status)


def json_line(run: aiorunlist.Run) -> bytes:
    # The run exactly as the server sent it (unknown fields included), integers wider than
    # 64 bits too, which orjson.dumps(aiorunlist.unstructure(run)) would refuse.
    return aiorunlist.dumps(run) + b"\n"


async def stream_runs(request: web.Request) -> web.StreamResponse:
    client = request.app[CLIENT]
    raw_order = request.query.get("order", "desc")
    if raw_order not in ("asc", "desc"):
        return error_response(400, "order must be 'asc' or 'desc'")
    order: Literal["asc", "desc"] = "asc" if raw_order == "asc" else "desc"
    try:
        runs = client.runs(request.match_info["thread_id"], order=order)
    except ValueError as exc:  # raised before anything is sent
        return error_response(400, str(exc))

    # aclosing: once the server notices that the caller hung up, no page is asked for.
    async with aclosing(runs):
        # Wait for the first page before answering, so that "no such thread" is
        # still a 404 and not a 200 with an error line in it.
        try:
            first: aiorunlist.Run | None = await anext(runs)
        except StopAsyncIteration:
            first = None
        except aiorunlist.NotFoundError as exc:
            return error_response(404, exc.message)
        except aiorunlist.RunListError as exc:  # auth, rate limit, outage, ...
            return error_response(502, exc.message)

        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        if first is not None:
            await response.write(json_line(first))
            try:
                async for run in runs:
                    await response.write(json_line(run))
            except aiorunlist.RunListError as exc:
                # The status line is gone already: say so in the last line.
                error = {"error": {"message": exc.message}}
                await response.write(orjson.dumps(error) + b"\n")
        await response.write_eof()
        return response


async def demo() -> None:
    async with FakeServer() as upstream:
        (thread_id,) = upstream.seed(1, 12)
        app = create_app(api_key=upstream.api_key, base_url=upstream.base_url)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            root = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                path = f"/threads/{thread_id}/runs?order=asc"
                async with http.get(root + path) as resp:
                    lines = [orjson.loads(line) async for line in resp.content]
                    print(f"GET {path} -> {resp.status} {resp.content_type}, {len(lines)} lines")
                for run in lines[:3]:
                    print(f"  {run['id']}  {run['status']}")
                async with http.get(f"{root}/threads/thread_missing/runs") as resp:
                    body = await resp.json()
                    print(f"GET /threads/thread_missing/runs -> {resp.status}")
                    print(f"  {body['error']['message'].split(' [')[0]}")
        finally:
            await runner.cleanup()  # runs the cleanup context: the client is closed here


if __name__ == "__main__":
    asyncio.run(demo())
