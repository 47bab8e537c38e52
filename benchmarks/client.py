"""One contender listing every run of the benchmark's threads, in a process of its own.

The benchmark (``benchmarks/bench.py``) starts one such process per contender per round, so
each figure (CPU, wall time, peak RSS) belongs to one contender alone. It prints one JSON
object on stdout::

    python benchmarks/client.py aiorunlist --base-url http://127.0.0.1:PORT/v1 \
        --threads 200 --runs 250

Contenders:

* ``aiorunlist``: ``client.runs_many(thread_ids, concurrency=16, page_size=100)``, reading
  ``run.status`` (and ``run.id``) of every typed :class:`aiorunlist.Run`;
* ``aiorunlist-fields``: the same, reading every field of every run (nested objects are
  typed on first read, so this is what a consumer that reads everything pays);
* ``raw``: the floor: aiohttp + orjson over plain dicts, 16 workers, the same requests;
* ``openai``: openai-python's ``AsyncOpenAI().beta.threads.runs.list(thread_id, limit=100)``
  auto-paging, 16 threads at a time.

CPU is ``getrusage(RUSAGE_SELF)`` user + system over the listing only (imports and setup
excluded), divided by the runs listed; the part of it spent in the cyclic garbage collector is
timed with ``gc.callbacks``. Only the contender's own modules are imported.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

THREAD_PREFIX = "thread_bench"  # as in benchmarks/server.py (not imported: it imports aiohttp.web)


def thread_ids(threads: int, distinct: int | None) -> Iterator[str]:
    """``distinct`` ids (aliases ``<base>~<n>`` past ``threads``), lazily."""
    total = threads if distinct is None else distinct
    for n in range(total):
        base = f"{THREAD_PREFIX}{n % threads:06d}"
        yield base if n < threads else f"{base}~{n}"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _current_rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


# --- the contenders: each returns (runs listed, a checksum of what it read) -------------------


async def list_aiorunlist(args: argparse.Namespace, ids: Iterator[str]) -> tuple[int, int]:
    import aiorunlist

    count = 0
    completed = 0
    async with (
        aiorunlist.Client(args.api_key, base_url=args.base_url) as client,
        client.runs_many(ids, concurrency=args.concurrency, page_size=args.page_size) as stream,
    ):
        async for run in stream:
            count += 1
            if run.status == "completed":
                completed += 1
    return count, completed


async def list_aiorunlist_fields(args: argparse.Namespace, ids: Iterator[str]) -> tuple[int, int]:
    import attrs

    import aiorunlist

    names = [f.name for f in attrs.fields(aiorunlist.Run)]
    count = 0
    completed = 0
    async with (
        aiorunlist.Client(args.api_key, base_url=args.base_url) as client,
        client.runs_many(ids, concurrency=args.concurrency, page_size=args.page_size) as stream,
    ):
        async for run in stream:
            count += 1
            for name in names:
                getattr(run, name)
            if run.status == "completed":
                completed += 1
    return count, completed


async def list_raw(args: argparse.Namespace, ids: Iterator[str]) -> tuple[int, int]:
    import aiohttp
    import orjson

    headers = {
        "Authorization": f"Bearer {args.api_key}",
        "OpenAI-Beta": "assistants=v2",
        "Accept": "application/json",
    }
    url = args.base_url + "/threads/{}/runs"
    totals = [0, 0]

    async def worker(session: aiohttp.ClientSession) -> None:
        count = completed = 0
        for tid in ids:  # a shared iterator: each worker takes the next thread
            params = {"limit": str(args.page_size), "order": "desc"}
            while True:
                async with session.get(url.format(tid), params=params, headers=headers) as resp:
                    resp.raise_for_status()
                    page = orjson.loads(await resp.read())
                for run in page["data"]:
                    count += 1
                    if run["status"] == "completed":
                        completed += 1
                if not page["has_more"]:
                    break
                params["after"] = page["data"][-1]["id"]
        totals[0] += count
        totals[1] += completed

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return totals[0], totals[1]


async def list_openai(args: argparse.Namespace, ids: Iterator[str]) -> tuple[int, int]:
    import warnings

    import openai

    warnings.simplefilter("ignore", DeprecationWarning)  # the Assistants API is deprecated
    totals = [0, 0]

    async def worker(client: openai.AsyncOpenAI) -> None:
        count = completed = 0
        for tid in ids:
            async for run in client.beta.threads.runs.list(tid, limit=args.page_size):
                count += 1
                if run.status == "completed":
                    completed += 1
        totals[0] += count
        totals[1] += completed

    async with openai.AsyncOpenAI(base_url=args.base_url, api_key=args.api_key) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
    return totals[0], totals[1]


CONTENDERS: dict[str, Callable[[argparse.Namespace, Iterator[str]], Awaitable[tuple[int, int]]]] = {
    "aiorunlist": list_aiorunlist,
    "aiorunlist-fields": list_aiorunlist_fields,
    "raw": list_raw,
    "openai": list_openai,
}


def _import_contender(name: str) -> None:
    """Import the contender's modules before the clock starts."""
    if name.startswith("aiorunlist"):
        import aiorunlist  # noqa: F401
    elif name == "raw":
        import aiohttp  # noqa: F401
        import orjson  # noqa: F401
    else:
        import openai  # noqa: F401


class GCTimer:
    """Wall time spent in the cyclic garbage collector (``gc.callbacks``), by generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            generation = info["generation"]
            self.seconds[generation] += time.perf_counter() - self._start
            self.collections[generation] += 1


def run(args: argparse.Namespace) -> dict[str, Any]:
    _import_contender(args.contender)
    listing_fn = CONTENDERS[args.contender]
    gc_timer = GCTimer()
    rss_before = _current_rss_mb()
    ids = thread_ids(args.threads, args.distinct_threads)
    listing = listing_fn(args, ids)
    profiler: Any = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
    gc.callbacks.append(gc_timer)
    cpu0, wall0 = _cpu(), time.perf_counter()
    runs, completed = asyncio.run(listing)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    gc.callbacks.remove(gc_timer)
    if profiler is not None:
        profiler.stop()
        with open(args.profile, "w", encoding="utf-8") as out:
            out.write(profiler.output_text(unicode=True, color=False, show_all=False))
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "contender": args.contender,
        "runs": runs,
        "completed": completed,
        "cpu_s": cpu,
        "cpu_us_per_run": cpu / runs * 1e6 if runs else float("nan"),
        "wall_s": wall,
        "gc_us_per_run": sum(gc_timer.seconds) / runs * 1e6 if runs else float("nan"),
        "gc_collections": gc_timer.collections,
        "rss_before_mb": rss_before,
        "peak_rss_mb": maxrss_kb / 1024,
        "python": sys.version.split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("contender", choices=sorted(CONTENDERS))
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--threads", type=int, default=200, help="threads the server holds")
    parser.add_argument(
        "--distinct-threads",
        type=int,
        default=None,
        help="list this many thread ids (aliases of the server's threads past --threads)",
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--profile", metavar="FILE", help="profile the listing with pyinstrument")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
