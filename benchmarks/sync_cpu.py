"""CPU per request of ``sync_thread`` into a SQLite sink, without sockets: what a fleet slice
costs in the worker's own process besides HTTP and Redis.

    python benchmarks/sync_cpu.py                  # 3 rounds of 3,000 threads of 5 runs
    python benchmarks/sync_cpu.py --rounds 5 --threads 5000
    PYTHONPATH=../other python benchmarks/sync_cpu.py   # another source tree's aiorunlist

Pages of 2 runs come from a ``MockTransport`` handler (no fake server in the loop), 32 threads
are synced at once, each with one ``sync_thread`` call, as fleet slices are. Prints the CPU
milliseconds per request of this process (client, pages, sink requests) and of the SQLite
writer process.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiorunlist
from aiorunlist.sinks import open_sink, sync_thread
from aiorunlist.testing import FakeServer, MockResponse, MockTransport


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def one_round(n_threads: int, runs: int, concurrency: int) -> tuple[float, float]:
    """(own, writer) CPU milliseconds per request."""
    seeded = FakeServer(api_key=None)
    thread_ids = seeded.seed(n_threads, lambda _: runs)
    newest_first = {t: list(reversed(seeded.threads[t])) for t in thread_ids}
    positions = {t: {run["id"]: i for i, run in enumerate(r)} for t, r in newest_first.items()}
    requests = 0

    def handle(request: aiorunlist.Request) -> MockResponse:
        nonlocal requests
        requests += 1
        parts = urlsplit(request.url)
        thread_id = unquote(parts.path.rsplit("/", 2)[-2])
        query = parse_qs(parts.query)
        limit = int(query["limit"][0])
        after = query.get("after", [None])[0]
        start = 0 if after is None else positions[thread_id][after] + 1
        page = newest_first[thread_id][start : start + limit]
        body: dict[str, Any] = {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(newest_first[thread_id]),
        }
        return MockResponse(200, body=body)

    settings = {"order": "desc", "page_size": "2"}
    with tempfile.TemporaryDirectory(prefix="aiorunlist-sync-cpu-") as directory:
        children = _children_cpu()
        async with (
            aiorunlist.Client(
                api_key="sk-benchmark",
                base_url="https://fake.test/v1",
                transport=MockTransport(handle),
            ) as client,
            await open_sink(f"sqlite:///{directory}/runs.db", settings=settings) as sink,
        ):
            slots = asyncio.Semaphore(concurrency)

            async def sync(thread_id: str) -> None:
                async with slots:
                    state = (await sink.threads([thread_id])).get(thread_id)
                    await sync_thread(client, sink, thread_id, page_size=2, state=state)

            started = time.process_time()
            await asyncio.gather(*(sync(t) for t in thread_ids))
            own = time.process_time() - started
        writer = _children_cpu() - children  # the writer exited with the sink
    return 1000 * own / requests, 1000 * writer / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5, help="runs per thread (pages of 2)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    owns, writers = [], []
    for round_ in range(1, args.rounds + 1):
        own, writer = asyncio.run(one_round(args.threads, args.runs, args.concurrency))
        owns.append(own)
        writers.append(writer)
        print(f"round {round_}: own {own:.3f} ms/request, writer {writer:.3f} ms/request")
    print(
        f"median of {args.rounds}: own {statistics.median(owns):.3f} ms/request, "
        f"writer {statistics.median(writers):.3f} ms/request"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
