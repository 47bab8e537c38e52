"""List every run of one thread, newest first, then resume after a checkpoint.

Runs against the shipped fake server unless OPENAI_BASE_URL is set:

    python examples/one_thread.py
"""

from __future__ import annotations

import asyncio
import os
from contextlib import aclosing

import aiorunlist
from aiorunlist.testing import FakeServer


async def show_thread(client: aiorunlist.Client, thread_id: str) -> None:
    newest: str | None = None
    async for run in client.runs(thread_id):
        newest = newest or run.id
        tokens = run.usage.total_tokens if run.usage else None
        print(f"{run.id}  {run.status!s:<16} {run.model}  tokens={tokens}")

    # Three runs only: one request, and the connection is released at once.
    async with aclosing(client.runs(thread_id, order="asc")) as oldest_first:
        async for run in oldest_first:
            print("oldest:", run.id)
            break

    # Later: only what came after the checkpoint (nothing new here).
    if newest is not None:
        new = [run async for run in client.runs(thread_id, order="asc", after=newest)]
        print(f"{len(new)} new runs since {newest}")


async def main() -> None:
    if os.environ.get("OPENAI_BASE_URL"):
        async with aiorunlist.Client() as client:
            await show_thread(client, os.environ.get("THREAD_ID", "thread_abc123"))
        return
    async with FakeServer() as server:
        (thread_id,) = server.seed(1, 12)
        async with aiorunlist.Client(server.api_key, base_url=server.base_url) as client:
            await show_thread(client, thread_id)


if __name__ == "__main__":
    asyncio.run(main())
