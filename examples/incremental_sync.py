"""Incremental sync of one thread: each pass fetches only the runs created since the last pass.

The checkpoint is the id of the newest run handled so far. With the default ``order="desc"``
(newest first), the runs listed *before* the checkpoint are the ones newer than it, so
``client.runs(thread_id, before=checkpoint)`` returns exactly the new runs. aiorunlist walks
them backwards from the checkpoint, nearest first: they arrive oldest to newest, and the last
one handed out is the next checkpoint.

    python examples/incremental_sync.py

docs/tutorial.md explains it; this script checks it against the fake server.
"""

from __future__ import annotations

import asyncio

import aiorunlist
from aiorunlist.testing import FakeServer, make_runs


async def sync(
    client: aiorunlist.Client, thread_id: str, checkpoint: str | None, *, page_size: int = 100
) -> tuple[list[aiorunlist.Run], str | None]:
    """Return the runs created since ``checkpoint`` (oldest first) and the new checkpoint."""
    if checkpoint is None:
        # First pass: the whole thread, oldest first.
        runs = client.runs(thread_id, order="asc", page_size=page_size)
    else:
        # Later passes: the runs newer than the checkpoint, nearest to it first.
        runs = client.runs(thread_id, before=checkpoint, page_size=page_size)
    handled: list[aiorunlist.Run] = []
    async for run in runs:
        handled.append(run)  # store or process it here ...
        checkpoint = run.id  # ... then move the checkpoint past it
    return handled, checkpoint


async def main() -> None:
    async with FakeServer() as server:
        (thread_id,) = server.seed(1, 25)
        async with aiorunlist.Client(server.api_key, base_url=server.base_url) as client:
            new, checkpoint = await sync(client, thread_id, None)
            print(f"pass 1: {len(new)} runs, checkpoint {checkpoint}")

            new, checkpoint = await sync(client, thread_id, checkpoint)
            print(f"pass 2: {len(new)} new runs, checkpoint {checkpoint}")

            # Seven runs are created on the server (indexes 25..31: newer than all the others).
            created = make_runs(thread_id, 7, start=25)
            server.add_runs(thread_id, created)
            server.reset_stats()
            # Pages of 3, to walk back over more than one page.
            new, checkpoint = await sync(client, thread_id, checkpoint, page_size=3)
            requests = len(server.requests)
            print(f"pass 3: {len(new)} new runs in {requests} requests, oldest first:")
            for run in new:
                print(f"  {run.id}  created_at={run.created_at}")
            print(f"checkpoint {checkpoint}")

            # Check against the server: exactly the created runs, oldest first, and the
            # checkpoint is now the thread's newest run.
            if [run.id for run in new] != [run["id"] for run in created]:
                raise SystemExit("pass 3 did not return exactly the new runs, oldest first")
            if checkpoint != server.expected_ids(thread_id)[0]:
                raise SystemExit("the checkpoint is not the newest run")
            print("the new runs, oldest first, and the newest one is the checkpoint: ok")


if __name__ == "__main__":
    asyncio.run(main())
