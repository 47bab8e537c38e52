"""Rate-limited and distant servers: how close each client gets to the limit, and at what cost.

    python benchmarks/throttled.py            # or: nox -s throttled
    python benchmarks/throttled.py --quick    # fewer threads, a smoke test

The server is the shipped fake server in a process of its own, limited by a token bucket
(``FakeServer(rate_limit=RateLimit(rate, burst, headers))``): a listing request that finds the
bucket empty gets a 429 with ``retry-after-ms`` and ``retry-after``. Three header styles:
``bucket`` (limit = burst, reset = time until full), ``per-minute`` (OpenAI's wording: the
limit is per minute, resets like ``1m0s``) and ``none`` (no rate-limit headers, only 429s).

Each contender lists every run of every thread (``--threads`` x ``--runs``, pages of 100,
``--concurrency`` at a time) with its default retries, in a process of its own:

* ``aiorunlist``: ``Client()`` with its defaults;
* ``adaptive``: ``Client(pacing=Pacing(adaptive=True))``;
* ``naive``: aiohttp + orjson, each request retried up to twice after its own ``retry-after``
  (no shared pause, no pacing), which is what a hand-written loop does;
* ``openai``: openai-python's ``AsyncOpenAI`` (when installed: ``nox -s throttled`` installs
  it), auto-paging each thread.

Reported per contender: the share of the limit used (successful requests over what the
bucket allowed in the elapsed time: ``rate * seconds + burst``), 429s per 100 successes, and
the threads that failed. A latency regime (``--latency``, no limit) reports wall time against
the theoretical minimum (pages x latency / concurrency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

KEY = "sk-throttled"
CONTENDERS = ("aiorunlist", "adaptive", "naive", "openai")


# --- the server process ------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    """Serve ``--threads`` threads of ``--runs`` runs; answer ``stats`` lines on stdin."""
    from aiorunlist.testing import FakeServer, RateLimit

    limit = RateLimit(args.rate, args.burst, args.headers) if args.rate else None
    server = FakeServer(api_key=KEY, rate_limit=limit, latency=args.latency)
    ids = server.seed(args.threads, args.runs)
    async with server:
        print(f"PORT {server.port}", flush=True)
        print(json.dumps(ids), flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "stats":
                statuses = [r.status for r in server.requests]
                print(
                    json.dumps({"ok": statuses.count(200), "throttled": statuses.count(429)}),
                    flush=True,
                )
                server.requests.clear()
                server._bucket = None  # a full bucket for the next contender


# --- the contenders ----------------------------------------------------------------------------


async def run_aiorunlist(args: argparse.Namespace, ids: list[str], adaptive: bool) -> int:
    import aiorunlist

    pacing = aiorunlist.Pacing(adaptive=True) if adaptive else None
    async with (
        aiorunlist.Client(KEY, base_url=args.base_url, pacing=pacing) as client,
        client.pages_many(
            ids, concurrency=args.concurrency, page_size=100, on_error="collect"
        ) as stream,
    ):
        async for _page in stream:
            pass
    return len(stream.failures)


async def run_naive(args: argparse.Namespace, ids: list[str]) -> int:
    import aiohttp
    import orjson

    headers = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "assistants=v2"}
    queue = list(reversed(ids))
    failed = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        while queue:
            thread_id = queue.pop()
            after = None
            while True:
                params = {"limit": "100", **({"after": after} if after else {})}
                url = f"{args.base_url}/threads/{thread_id}/runs"
                for attempt in range(3):
                    async with session.get(url, params=params, headers=headers) as response:
                        body = await response.read()
                        if response.status != 429:
                            break
                        wait = response.headers.get("retry-after-ms")
                        if attempt < 2:
                            await asyncio.sleep(float(wait) / 1000 if wait else 0.5)
                if response.status != 200:
                    failed += 1
                    break
                page = orjson.loads(body)
                if not page["has_more"]:
                    break
                after = page["last_id"]

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return failed


async def run_openai(args: argparse.Namespace, ids: list[str]) -> int:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    import openai

    failed = 0
    queue = list(reversed(ids))
    async with openai.AsyncOpenAI(api_key=KEY, base_url=args.base_url) as client:

        async def worker() -> None:
            nonlocal failed
            while queue:
                thread_id = queue.pop()
                try:
                    async for _run in client.beta.threads.runs.list(thread_id, limit=100):
                        pass
                except openai.APIError:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return failed


def contend(args: argparse.Namespace) -> None:
    ids = json.loads(args.ids)  # the server's thread ids
    # Import the contender's libraries before the clock starts: half a second of imports on a
    # busy machine is not time the limit went unused by the client.
    import importlib
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    for module in {"naive": ("aiohttp", "orjson"), "openai": ("openai",)}.get(
        args.contender, ("aiorunlist",)
    ):
        importlib.import_module(module)
    started = time.perf_counter()
    if args.contender in ("aiorunlist", "adaptive"):
        failed = asyncio.run(run_aiorunlist(args, ids, args.contender == "adaptive"))
    elif args.contender == "naive":
        failed = asyncio.run(run_naive(args, ids))
    else:
        failed = asyncio.run(run_openai(args, ids))
    print(json.dumps({"seconds": time.perf_counter() - started, "failed": failed}))


# --- the driver --------------------------------------------------------------------------------


def regime(
    args: argparse.Namespace, *, rate: float, headers: str, latency: float, contenders: list[str]
) -> list[dict[str, Any]]:
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            f"--rate={rate}",
            f"--burst={args.burst}",
            f"--headers={headers}",
            f"--latency={latency}",
            f"--threads={args.threads}",
            f"--runs={args.runs}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        port = int(server.stdout.readline().split()[1])
        ids = server.stdout.readline().strip()
        rows = []
        for contender in contenders:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    f"--contender={contender}",
                    f"--base-url=http://127.0.0.1:{port}/v1",
                    f"--concurrency={args.concurrency}",
                    f"--threads={args.threads}",
                    f"--runs={args.runs}",
                    f"--ids={ids}",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            server.stdin.write("stats\n")
            server.stdin.flush()
            stats = json.loads(server.stdout.readline())
            allowed = rate * result["seconds"] + args.burst if rate else None
            rows.append(
                {
                    "contender": contender,
                    **result,
                    **stats,
                    "share": stats["ok"] / allowed if allowed else None,
                    "throttled_per_100": 100 * stats["throttled"] / max(1, stats["ok"]),
                }
            )
            print(f"  {headers if rate else 'latency'} {contender}: {rows[-1]}", file=sys.stderr)
        return rows
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def have_openai() -> bool:
    try:
        import openai  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--headers", default="bucket")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--styles", default="bucket,per-minute,none")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--json", metavar="FILE", help="write every measurement to FILE")
    parser.add_argument("--quick", action="store_true", help="200 threads, one style")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args))
        return
    if args.contender:
        contend(args)
        return
    if args.quick:
        args.threads, args.styles = 200, "bucket"
    contenders = [c for c in args.contenders.split(",") if c != "openai" or have_openai()]
    results: dict[str, list[list[dict[str, Any]]]] = {}
    for style in args.styles.split(","):
        results[style] = [
            regime(args, rate=args.rate, headers=style, latency=0.0, contenders=contenders)
            for _ in range(args.rounds)
        ]
    if args.latency:
        results["latency"] = [
            regime(args, rate=0, headers="none", latency=args.latency, contenders=contenders)
            for _ in range(args.rounds)
        ]
    print(
        f"\n{args.threads} threads x {args.runs} runs, pages of 100, concurrency "
        f"{args.concurrency}; limit {args.rate:g}/s, burst {args.burst}; "
        f"median of {args.rounds} round(s)\n"
    )
    print("| regime | client | share of limit | 429s per 100 ok | failed threads | seconds |")
    print("|---|---|---|---|---|---|")
    for style, rounds in results.items():
        for position, contender in enumerate(contenders):
            rows = [r[position] for r in rounds]
            share = [r["share"] for r in rows if r["share"] is not None]
            print(
                f"| {style} | {contender} | "
                f"{f'{statistics.median(share):.1%}' if share else '-'} | "
                f"{statistics.median(r['throttled_per_100'] for r in rows):.1f} | "
                f"{statistics.median(r['failed'] for r in rows):g} | "
                f"{statistics.median(r['seconds'] for r in rows):.2f} |"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
