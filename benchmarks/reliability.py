"""Reliability figures for docs/reliability.md: chaos, outage and load against the fake server.

    python benchmarks/reliability.py          # or: nox -s reliability

Everything runs on 127.0.0.1 in this process; the faults are seeded, so the figures repeat.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import aiorunlist
from aiorunlist.testing import FakeServer, Fault

KEY = "sk-reliability"


@dataclass
class Row:
    scenario: str
    faults: int
    expected: int
    delivered: int
    duplicates: int
    lost: int
    failed_threads: int
    requests: int
    seconds: float


async def run(
    scenario: str,
    server: FakeServer,
    tids: list[str],
    *,
    concurrency: int,
    page_size: int,
    **client_args: Any,
) -> Row:
    got: dict[str, list[str | None]] = defaultdict(list)
    started = time.perf_counter()
    async with (
        aiorunlist.Client(
            KEY, base_url=server.base_url, retry=aiorunlist.Retries(**client_args), timeout=2
        ) as client,
        client.runs_many(
            tids, concurrency=concurrency, page_size=page_size, on_error="collect"
        ) as stream,
    ):
        async for item in stream:
            got[str(item.thread_id)].append(item.id)
    seconds = time.perf_counter() - started
    expected = sum(len(server.threads[t]) for t in tids)
    delivered = sum(len(v) for v in got.values())
    duplicates = sum(len(v) - len(set(v)) for v in got.values())
    lost = 0
    for tid in tids:
        want = server.expected_ids(tid)
        have = got.get(tid, [])
        if tid in stream.failures:
            assert have == want[: len(have)], f"{tid}: out of order or foreign runs"
        else:
            lost += len(set(want) - set(have))
    faults = Counter(r.fault.kind for r in server.requests if r.fault is not None)
    return Row(
        scenario,
        sum(faults.values()),
        expected,
        delivered,
        duplicates,
        lost,
        len(stream.failures),
        len(server.requests),
        seconds,
    )


async def main() -> None:
    rows: list[Row] = []
    fast = {"initial_delay": 0.001, "max_delay": 0.01}
    for rate in (0.15, 0.30):
        async with FakeServer(api_key=KEY) as server:
            tids = server.seed(500, lambda i: i % 23, seed=7)
            server.chaos(rate, seed=11, slow_delay=0.02)
            rows.append(
                await run(
                    f"chaos {rate:.0%}, max_retries=4",
                    server,
                    tids,
                    concurrency=32,
                    page_size=5,
                    max_retries=4,
                    **fast,
                )
            )
    for budget in (500, None):
        async with FakeServer(api_key=KEY) as server:
            tids = server.seed(500, 3)
            server.add_fault(Fault(status=503, times=1_000_000))
            rows.append(
                await run(
                    f"outage (all 503), max_retries=3, retry_budget={budget}",
                    server,
                    tids,
                    concurrency=16,
                    page_size=100,
                    max_retries=3,
                    budget=budget,
                    **fast,
                )
            )
    async with FakeServer(api_key=KEY) as server:
        tids = server.seed(10_000, 2)
        rows.append(
            await run(
                "load: 10,000 threads, pages of 1, concurrency 64",
                server,
                tids,
                concurrency=64,
                page_size=1,
            )
        )

    print(
        "| scenario | faults injected | runs expected | delivered | duplicates | lost "
        "| failed threads | requests sent | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r.scenario} | {r.faults:,} | {r.expected:,} | {r.delivered:,} | {r.duplicates} "
            f"| {r.lost} | {r.failed_threads} | {r.requests:,} | {r.seconds:.1f} |"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of the whole process (server and client): {peak:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
