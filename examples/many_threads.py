"""Fan out over many threads with bounded concurrency and summarise what was found.

python examples/many_threads.py
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiorunlist
from aiorunlist.testing import FakeServer


async def main(n_threads: int = 500) -> None:
    async with FakeServer() as server:
        thread_ids = server.seed(n_threads, lambda i: i % 40)
        async with aiorunlist.Client(server.api_key, base_url=server.base_url) as client:
            statuses: Counter[str] = Counter()
            tokens = 0
            started = time.perf_counter()
            async with client.runs_many(
                iter(thread_ids), concurrency=32, on_error="collect"
            ) as stream:
                async for run in stream:
                    statuses[str(run.status)] += 1
                    tokens += (run.usage.total_tokens or 0) if run.usage else 0
            elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    rate = total / elapsed
    print(f"{total} runs from {n_threads} threads in {elapsed:.2f}s ({rate:,.0f} runs/s)")
    for status, count in statuses.most_common():
        print(f"  {status:<16} {count}")
    print(f"total tokens: {tokens}; failed threads: {len(stream.failures)}")


if __name__ == "__main__":
    asyncio.run(main())
