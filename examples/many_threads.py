"""Fan out over thousands of threads with bounded concurrency, and summarise what was found.

* The thread ids come from an async generator (standing in for a database cursor or a file):
  ``runs_many`` takes them one at a time, so a million ids are never held in memory.
* ``on_error="collect"``: a thread that fails (here: ids of deleted threads) is recorded in
  ``stream.failures`` and the others go on.
* The fake server injects transient faults (429s with ``retry-after-ms``, 500s, dropped
  connections) into 2% of the requests; the client's per-request retries absorb them.

    python examples/many_threads.py            # 1,000 threads
    python examples/many_threads.py 20000      # more
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import aiorunlist
from aiorunlist.testing import FakeServer


async def thread_ids_from_db(ids: Sequence[str]) -> AsyncIterator[str]:
    """Stands in for ``async for row in db.execute("SELECT thread_id ...")``."""
    for thread_id in ids:
        yield thread_id
    for n in range(3):  # threads that were deleted since: 404 Not Found
        yield f"thread_deleted_{n}"


async def main(n_threads: int) -> None:
    async with FakeServer() as server:
        thread_ids = server.seed(n_threads, lambda i: i % 10)  # 0 to 9 runs per thread
        server.chaos(0.02, seed=1, kinds=("429", "500", "drop"))
        async with aiorunlist.Client(
            server.api_key,
            base_url=server.base_url,
            # The fake server recovers at once: short retry delays keep the demo quick.
            retry=aiorunlist.Retries(max_retries=4, initial_delay=0.05),
        ) as client:
            statuses: Counter[str] = Counter()
            tokens_by_model: Counter[str] = Counter()
            started = time.perf_counter()
            async with client.runs_many(
                thread_ids_from_db(thread_ids), concurrency=32, on_error="collect"
            ) as stream:
                async for run in stream:
                    statuses[str(run.status)] += 1
                    if run.usage is not None and run.usage.total_tokens is not None:
                        tokens_by_model[str(run.model)] += run.usage.total_tokens
            elapsed = time.perf_counter() - started
            retries = client.retries

    total = sum(statuses.values())
    print(
        f"{total} runs from {stream.threads_done} of {n_threads + 3} threads in "
        f"{elapsed:.2f}s ({total / elapsed:,.0f} runs/s)"
    )
    print(f"{len(server.requests)} requests, {retries} of them retries")
    print("runs by status:")
    for status, count in statuses.most_common():
        print(f"  {status:<16} {count:>6}")
    print("tokens by model:")
    for model, tokens in tokens_by_model.most_common():
        print(f"  {model:<16} {tokens:>12,}")
    print(f"failed threads: {len(stream.failures)}")
    for thread_id, error in sorted(stream.failures.items()):
        print(f"  {thread_id}: {type(error).__name__}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
