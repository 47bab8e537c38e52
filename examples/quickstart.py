"""The tutorial's first script: a fake server, one thread, one page, then many threads.

Everything runs on 127.0.0.1 against the fake server that ships with aiorunlist, so no account
and no network are needed:

    python examples/quickstart.py

docs/tutorial.md walks through it step by step.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiorunlist
from aiorunlist.testing import FakeServer


async def one_thread(client: aiorunlist.Client, thread_id: str) -> None:
    # Newest first (the API's default order), one request per 100 runs, lazily.
    count = 0
    async for run in client.runs(thread_id):
        if count < 3:
            tokens = run.usage.total_tokens if run.usage else None
            print(f"  {run.id}  {run.status!s:<16} {run.model!s:<12} tokens={tokens}")
        count += 1
    print(f"  ... {count} runs in thread {thread_id}")


async def one_page(client: aiorunlist.Client, thread_id: str) -> None:
    # One request, exactly as the server cut the page.
    page = await client.list_page(thread_id, limit=5, order="asc")
    print(f"  {len(page)} runs, first_id={page.first_id}, has_more={page.has_more}")


async def many_threads(client: aiorunlist.Client, thread_ids: list[str]) -> None:
    # At most 16 requests in flight; each thread's runs arrive in order, threads interleave.
    statuses: Counter[str] = Counter()
    started = time.perf_counter()
    async with client.runs_many(thread_ids, concurrency=16, on_error="collect") as stream:
        async for run in stream:
            statuses[str(run.status)] += 1
    elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    print(f"  {total} runs from {stream.threads_done} threads in {elapsed:.2f}s")
    print(f"  by status: {dict(statuses.most_common(3))} ...")
    print(f"  failed threads: {len(stream.failures)}")


async def main() -> None:
    async with FakeServer() as server:
        # 100 threads of 30 runs each; the same arguments always give the same data.
        thread_ids = server.seed(100, 30)
        async with aiorunlist.Client(server.api_key, base_url=server.base_url) as client:
            print("one thread:")
            await one_thread(client, thread_ids[0])
            print("one page:")
            await one_page(client, thread_ids[0])
            print("many threads:")
            await many_threads(client, thread_ids)


if __name__ == "__main__":
    asyncio.run(main())
