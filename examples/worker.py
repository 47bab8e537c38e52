"""A pool of asyncio workers that take thread ids from a queue and process each thread's runs.

* N workers share one aiorunlist.Client and one ``asyncio.Queue`` of thread ids.
* A normal end: the producer puts one ``STOP`` sentinel per worker after the last id; each
  worker finishes what is queued before it, then exits.
* A graceful shutdown on SIGINT or SIGTERM: the producer stops, the ids still queued are taken
  back out (a real worker would hand them back to its broker), and one ``STOP`` per worker
  goes in. Each worker finishes the thread it is on, then exits; the client is closed last.
* A thread that fails (deleted, forbidden, the upstream down after retries) is recorded and
  the worker goes on with the next one.

    python examples/worker.py

runs a finite demo against the fake server: one batch that ends with sentinels, then one that
is stopped by a SIGTERM the script sends itself half way through. It exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterable

import attrs

import aiorunlist
from aiorunlist.testing import FakeServer

#: Put once per worker: "no more work".
STOP = None


@attrs.define
class Results:
    """What the workers did: filled in as they go."""

    ids_taken: int = 0
    threads_done: int = 0
    runs_seen: int = 0
    failed_runs: int = 0
    tokens: int = 0
    failed_threads: dict[str, str] = attrs.Factory(dict)
    handed_back: list[str] = attrs.Factory(list)
    stopped_by: str | None = None


async def process_thread(client: aiorunlist.Client, thread_id: str, results: Results) -> None:
    """Your work for one thread; here: count its runs, failed runs and tokens."""
    async for run in client.runs(thread_id):
        results.runs_seen += 1
        if run.status == "failed":
            results.failed_runs += 1
        if run.usage is not None and run.usage.total_tokens is not None:
            results.tokens += run.usage.total_tokens


async def worker(
    client: aiorunlist.Client, queue: asyncio.Queue[str | None], results: Results
) -> None:
    while True:
        thread_id = await queue.get()
        try:
            if thread_id is STOP:
                return
            try:
                await process_thread(client, thread_id, results)
            except aiorunlist.RunListError as exc:
                results.failed_threads[thread_id] = type(exc).__name__
            else:
                results.threads_done += 1
        finally:
            queue.task_done()


async def produce(
    thread_ids: Iterable[str], queue: asyncio.Queue[str | None], n: int, results: Results
) -> None:
    for thread_id in thread_ids:
        results.ids_taken += 1
        try:
            await queue.put(thread_id)  # waits while the queue is full: bounded memory
        except asyncio.CancelledError:
            results.handed_back.append(thread_id)  # taken from the source, never queued
            raise
    for _ in range(n):
        await queue.put(STOP)


async def run_pool(
    client: aiorunlist.Client, thread_ids: Iterable[str], *, n_workers: int = 8
) -> Results:
    """Process every thread id with ``n_workers`` workers, until done or SIGINT/SIGTERM."""
    results = Results()
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=2 * n_workers)
    workers = [asyncio.create_task(worker(client, queue, results)) for _ in range(n_workers)]
    producer = asyncio.create_task(produce(thread_ids, queue, n_workers, results))

    def shut_down(signum: int) -> None:
        if results.stopped_by is not None:
            return  # a second signal while stopping: already on it
        results.stopped_by = signal.Signals(signum).name
        producer.cancel()  # no more ids go in
        while not queue.empty():  # take the queued ids back out
            thread_id = queue.get_nowait()
            queue.task_done()
            if thread_id is not STOP:
                results.handed_back.append(thread_id)
        for _ in workers:  # the queue is empty now, so this never blocks
            queue.put_nowait(STOP)

    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    handled = sys.platform != "win32"  # loop.add_signal_handler is Unix-only
    if handled:
        for signum in signals:
            loop.add_signal_handler(signum, shut_down, signum)
    try:
        # Workers never raise (a failed thread is recorded), so this returns when all stopped.
        await asyncio.gather(*workers)
    finally:
        if handled:
            for signum in signals:
                loop.remove_signal_handler(signum)
        producer.cancel()
        for task in (producer, *workers):  # on our own cancellation: leave nothing running
            task.cancel()
        await asyncio.gather(producer, *workers, return_exceptions=True)
    return results


def report(name: str, results: Results) -> None:
    how = f"stopped by {results.stopped_by}" if results.stopped_by else "finished"
    print(
        f"{name}: {how}: {results.threads_done} threads done, {results.runs_seen} runs "
        f"({results.failed_runs} failed, {results.tokens} tokens)"
    )
    print(f"  failed threads: {results.failed_threads or 'none'}")
    if results.stopped_by:
        print(f"  {len(results.handed_back)} thread ids taken but not processed, handed back")


async def main() -> None:
    async with FakeServer() as server:
        thread_ids = server.seed(400, lambda i: i % 30)
        async with aiorunlist.Client(server.api_key, base_url=server.base_url) as client:
            # Batch 1: every id, plus one thread that does not exist; ends with sentinels.
            results = await run_pool(client, [*thread_ids[:200], "thread_deleted"])
            report("batch 1", results)

            # Batch 2: a SIGTERM arrives (as from `kill` or an orchestrator) once 50 ids have
            # been taken from the source.
            def ids_then_signal() -> Iterable[str]:
                for position, thread_id in enumerate(thread_ids[200:]):
                    if position == 50 and sys.platform != "win32":
                        os.kill(os.getpid(), signal.SIGTERM)
                    yield thread_id

            results = await run_pool(client, ids_then_signal())
            report("batch 2", results)
            settled = results.threads_done + len(results.failed_threads)
            if settled + len(results.handed_back) != results.ids_taken:
                raise SystemExit("some thread ids were lost")
            print(
                f"  of {results.ids_taken} ids taken, {settled} settled and "
                f"{len(results.handed_back)} handed back: none lost"
            )
        # Leaving the `async with` closed the client, after every worker had stopped.


if __name__ == "__main__":
    asyncio.run(main())
