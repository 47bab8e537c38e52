"""The benchmark's fake Assistants API server, run in a process of its own.

Every response body is built before the first request, so the server spends its time in
aiohttp's request handling, not in JSON encoding: what the client processes measure is the
client. ``GET /v1/threads/{thread_id}/runs`` behaves like the real API:

* ``Authorization: Bearer <key>`` is required (401 otherwise), and so is
  ``OpenAI-Beta: assistants=v2`` (400 otherwise), like the hosted service;
* ``limit`` (1..100, default 20), ``order`` (``desc`` by default, or ``asc``), ``after`` and
  ``before`` are honoured; ``first_id``, ``last_id`` and ``has_more`` are set as the API does.

Pages of ``--page-size`` runs walked with ``after`` (what all three contenders do) are whole
pre-serialised bodies, looked up by ``(thread, order, after)``. Any other request (another
``limit``, a ``before``) is answered by joining pre-serialised runs, still without encoding.

A thread id ``<base>~<n>`` is served as thread ``<base>``, its runs' ``thread_id`` rewritten
(clients refuse runs of another thread): the memory benchmark lists a million runs through
many distinct thread ids without the server holding a million runs.

Usage (the benchmark starts it itself)::

    python benchmarks/server.py --threads 200 --runs 250 --page-size 100 --api-key sk-bench

It prints ``PORT <n>`` on stdout once it listens on 127.0.0.1, and exits when its standard
input closes (so it never outlives the benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from typing import Any

import orjson
from aiohttp import web

from aiorunlist.testing import make_runs

THREAD_PREFIX = "thread_bench"


def thread_id(index: int) -> str:
    """The id of the benchmark's thread number ``index`` (the clients compute the same ids)."""
    return f"{THREAD_PREFIX}{index:06d}"


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> Any:
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": param,
                "code": code,
            }
        }
    )
    return web.Response(status=status, body=body, content_type="application/json")


class Pages:
    """Pre-serialised runs and page bodies of every benchmark thread, in both orders."""

    def __init__(self, threads: int, runs_per_thread: int, page_size: int) -> None:
        self.page_size = page_size
        # (thread, order) -> run ids in listing order, and their pre-serialised bodies
        self.ids: dict[tuple[str, str], list[str]] = {}
        self.encoded: dict[tuple[str, str], list[bytes]] = {}
        # (thread, order) -> {run id: position}, to resolve cursors
        self.position: dict[tuple[str, str], dict[str, int]] = {}
        # (thread, order, after) -> the whole body of the page of page_size runs after `after`
        self.bodies: dict[tuple[str, str, str | None], bytes] = {}
        for i in range(threads):
            tid = thread_id(i)
            runs = make_runs(tid, runs_per_thread, seed=i)
            runs.sort(key=lambda run: run["created_at"])
            for order in ("asc", "desc"):
                ordered = runs if order == "asc" else runs[::-1]
                key = (tid, order)
                self.ids[key] = [run["id"] for run in ordered]
                self.encoded[key] = [orjson.dumps(run) for run in ordered]
                self.position[key] = {rid: n for n, rid in enumerate(self.ids[key])}
                after: str | None = None
                for start in range(0, max(len(ordered), 1), page_size):
                    body = self.body(tid, order, start, start + page_size)
                    self.bodies[(tid, order, after)] = body
                    if start + page_size < len(ordered):
                        after = self.ids[key][start + page_size - 1]

    def body(
        self, tid: str, order: str, start: int, stop: int, *, more: bool | None = None
    ) -> bytes:
        """The list body of runs ``start:stop`` of ``tid`` in ``order`` (no JSON encoding)."""
        key = (tid, order)
        ids = self.ids[key]
        stop = min(stop, len(ids))
        start = min(start, stop)
        has_more = stop < len(ids) if more is None else more
        first = orjson.dumps(ids[start] if start < stop else None)
        last = orjson.dumps(ids[stop - 1] if start < stop else None)
        return b"".join(
            (
                b'{"object":"list","data":[',
                b",".join(self.encoded[key][start:stop]),
                b'],"first_id":',
                first,
                b',"last_id":',
                last,
                b',"has_more":',
                b"true" if has_more else b"false",
                b"}",
            )
        )


def make_app(pages: Pages, api_key: str) -> web.Application:
    request_ids = itertools.count(1)
    expected_auth = f"Bearer {api_key}"

    async def list_runs(request: web.Request) -> web.StreamResponse:
        headers = request.headers
        if headers.get("Authorization") != expected_auth:
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        if "assistants=v2" not in headers.get("OpenAI-Beta", ""):
            return _error(
                400,
                "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
                "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                code="invalid_beta",
            )
        requested = request.match_info["thread_id"]
        tid = requested.partition("~")[0]
        query = request.query
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            return _error(400, f"Invalid value: '{order}'.", param="order", code="invalid_value")
        key = (tid, order)
        if key not in pages.ids:
            return _error(404, f"No thread found with id '{tid}'.")
        raw_limit = query.get("limit", "20")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            return _error(400, f"Invalid 'limit': {raw_limit!r}.", param="limit")
        limit = int(raw_limit)
        after = query.get("after")
        before = query.get("before")
        request_id = {"x-request-id": f"req_bench{next(request_ids):010d}"}
        if limit == pages.page_size and before is None:
            body = pages.bodies.get((tid, order, after))
            if body is not None:
                return web.Response(
                    body=_alias(body, tid, requested),
                    content_type="application/json",
                    headers=request_id,
                )
        positions = pages.position[key]
        for name, cursor in (("after", after), ("before", before)):
            if cursor is not None and cursor not in positions:
                return _error(
                    400, f"Invalid '{name}': no run found with id '{cursor}'.", param=name
                )
        count = len(pages.ids[key])
        lo = -1 if after is None else positions[after]
        hi = count if before is None else positions[before]
        if before is not None and after is None:
            # Walking backwards: the `limit` runs just before `before`.
            start = max(0, hi - limit)
            body = pages.body(tid, order, start, hi, more=start > 0)
        else:
            stop = min(lo + 1 + limit, hi)
            body = pages.body(tid, order, lo + 1, stop, more=stop < hi)
        return web.Response(
            body=_alias(body, tid, requested), content_type="application/json", headers=request_id
        )

    app = web.Application()
    app.router.add_get("/v1/threads/{thread_id}/runs", list_runs)
    return app


def _alias(body: bytes, tid: str, requested: str) -> bytes:
    """``body`` of thread ``tid`` as served for its alias ``requested`` (its runs renamed)."""
    if requested == tid:
        return body
    field = b'"thread_id":"%s"'
    return body.replace(field % tid.encode(), field % requested.encode())


async def serve(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    pages = Pages(args.threads, args.runs, args.page_size)
    built = time.perf_counter() - started
    runner = web.AppRunner(make_app(pages, args.api_key), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    sys.stderr.write(
        f"server: {args.threads} threads x {args.runs} runs, {len(pages.bodies)} page bodies "
        f"built in {built:.1f}s\n"
    )
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    # Serve until the benchmark closes our stdin (or dies).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--runs", type=int, default=250, help="runs per thread")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--api-key", default="sk-bench")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
