"""A fleet worker's CPU per request, and throughput, in the scaling check (no rate limit, a
server 100 ms away), for one or more source trees side by side.

    python benchmarks/fleet_cpu.py                                  # this tree, 3 rounds
    python benchmarks/fleet_cpu.py --tree main=../main --tree new=. --rounds 3

Each round runs every tree in turn (K = 1, then K = 4 workers of ``--concurrency`` slices),
so that a change in what else the machine does weighs on every tree alike. The workers of a
tree run its ``aiorunlist`` (``PYTHONPATH``); the harness is this tree's. Prints one line per
run, then the medians: requests per second over the busy middle of the export, and CPU
seconds per 1,000 requests of the workers (with their SQLite writer processes; also without
what a worker spends whatever it lists: starting and stopping), of the fake server and of
redis-server, and the commands Redis ran per request. CPU per request is the figure to trust
on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import fleet_harness as h
from tests.redis_server import RedisServer

FIGURES = (
    "requests_per_second",
    "worker_cpu_per_1000",
    "worker_listing_cpu_per_1000",
    "server_cpu_per_1000",
    "redis_cpu_per_1000",
    "redis_commands_per_request",
)


def run_once(tree: Path, k: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """One scaling run whose workers import ``aiorunlist`` from ``tree``."""
    os.environ["PYTHONPATH"] = str(tree)
    redis = RedisServer()
    redis.start()
    try:
        with tempfile.TemporaryDirectory(prefix="aiorunlist-cpu-") as name:
            figures = h.scaling(
                redis.url,
                Path(name),
                k=k,
                concurrency=concurrency,
                seconds=seconds,
                redis_pid=None if redis.process is None else redis.process.pid,
            )
    finally:
        redis.close()
    if not figures["finished"] or not figures["check"].ok:
        raise RuntimeError(f"{tree} K={k}: {figures['check']!r}\n{figures['logs']}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a source tree to measure (repeat to compare; default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--k", default="1,4", help="worker counts, e.g. 1,4")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the K runs")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    trees: dict[str, Path] = {}
    for spec in args.tree or [f"this={here}"]:
        name, _, path = spec.partition("=")
        trees[name] = Path(path or name).resolve()
    ks = [int(k) for k in args.k.split(",")]
    # Out of any tree: `python -m` puts the working directory first on the workers' path.
    os.chdir(tempfile.gettempdir())
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_ in range(1, args.rounds + 1):
        for name, tree in trees.items():
            for k in ks:
                f = run_once(tree, k, args.concurrency, args.seconds)
                results.setdefault((name, k), []).append(f)
                shown = ", ".join(f"{key}={f[key]}" for key in FIGURES)
                print(
                    f"round {round_} {name} x{args.concurrency} K={k}: {shown} "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    print()
    print(f"medians of {args.rounds} rounds, x{args.concurrency}:")
    print(
        "| tree | K | req/s | workers CPU s/1000 req | without their start | server | redis "
        "| Redis commands/req |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (name, k), runs in results.items():
        medians = [
            statistics.median(r[key] for r in runs if r[key] is not None)
            if any(r[key] is not None for r in runs)
            else None
            for key in FIGURES
        ]
        print(
            f"| {name} | {k} | "
            + " | ".join(f"{m:.2f}" if m is not None else "-" for m in medians)
            + " |"
        )
    for name in trees:
        if (name, 1) in results and (name, 4) in results:
            one = statistics.median(r["requests_per_second"] for r in results[(name, 1)])
            four = statistics.median(r["requests_per_second"] for r in results[(name, 4)])
            print(f"{name}: K=4 / K=1 = {four / one:.2f}" if one else f"{name}: K=1 at 0 req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
