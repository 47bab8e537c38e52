"""The fleet's acceptance checks at full size, with their figures (docs/fleet.md, "Figures").

    python benchmarks/fleet_acceptance.py                 # every check
    python benchmarks/fleet_acceptance.py --only kill,rate
    python benchmarks/fleet_acceptance.py --quick         # the reduced sizes of the tests

Needs ``redis-server`` on PATH (and PostgreSQL's binaries for ``--postgres``). Starts a
throwaway redis-server per check, the shipped fake server in a thread of this process, and
every worker as a real ``aiorunlist fleet worker`` subprocess; checks what the sink's
database holds against what the server holds (``tests/fleet_harness.py``). Prints one line
per check (PASS or FAIL, and why), then a table of the figures. Exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import fleet_harness as h
from tests.postgres import PostgresServer, find_binaries
from tests.redis_server import RedisServer

CHECKS = ("kill", "redelivery", "redis", "rate", "pause", "outage", "scaling", "fatal")

Result = tuple[bool, str, dict[str, Any]]


def _shown(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in figures.items() if k not in ("logs", "check")}


def _with_redis(aof: bool, body: Callable[[RedisServer, Path], Result]) -> Result:
    redis = RedisServer(aof=aof)
    redis.start()
    try:
        with tempfile.TemporaryDirectory(prefix="aiorunlist-fleet-") as name:
            return body(redis, Path(name))
    finally:
        redis.close()


def _sink_verdict(figures: dict[str, Any]) -> list[str]:
    why = []
    if not figures.get("finished"):
        why.append("did not finish")
    check = figures.get("check")
    if check is not None and not check.ok:
        why.append(f"sink: {check!r}")
    return why


def check_kill(quick: bool, sink_url: str | None = None) -> Result:
    size: dict[str, Any] = (
        {"n_threads": 150, "max_runs": 30, "concurrency": 8, "kill_every": 1.0, "min_kills": 3}
        if quick
        # Pages of 5 runs from a server 100 ms away: the export lasts some 30 s, long enough
        # for the 10 kills (a worker is killed every 2 s) a fleet this fast needs.
        else {
            "n_threads": 2000,
            "max_runs": 60,
            "concurrency": 16,
            "min_kills": 10,
            "page_size": 5,
            "latency": 0.1,
        }
    )

    def body(redis: RedisServer, directory: Path) -> Result:
        options = {"latency": 0.01, **size}
        f = h.kill_chaos(redis.url, directory, sink_url=sink_url, **options)
        why = _sink_verdict(f)
        if f["kills"] < size["min_kills"]:
            why.append(f"only {f['kills']} kills before the export finished")
        if set(f["sigterm_exit_codes"]) - {0}:
            why.append(f"SIGTERM exit codes {f['sigterm_exit_codes']}")
        return not why, "; ".join(why), f

    return _with_redis(False, body)


def check_redelivery(quick: bool) -> Result:
    def body(redis: RedisServer, directory: Path) -> Result:
        f = h.redelivery(redis.url, directory, n_threads=4 if quick else 8, kills=1 if quick else 3)
        why = _sink_verdict(f)
        if f["not_resumed"] or f.get("error"):
            why.append(f"{f['not_resumed']} slices not resumed {f.get('error', '')}")
        if f["max_gap"] is None or f["max_gap"] > 5.0:
            why.append(f"slowest resume {f['max_gap']} s after the kill (> 5 s)")
        return not why, "; ".join(why), f

    return _with_redis(False, body)


def check_redis(quick: bool) -> Result:
    n = 150 if quick else 1000
    results = []
    for empty in (False, True):

        def body(redis: RedisServer, directory: Path, empty: bool = empty) -> Result:
            f = h.redis_loss(redis, directory, empty=empty, n_threads=n)
            why = _sink_verdict(f)
            if not f["mid_export"]:
                why.append("the export was over before Redis was killed")
            if f.get("requeue_exit", 0) != 0:
                why.append(f"enqueue --requeue exited {f['requeue_exit']}: {f['requeue']}")
            return not why, "; ".join(why), f

        results.append(_with_redis(True, body))
    (ok1, why1, f1), (ok2, why2, f2) = results
    why = "; ".join(f"{name}: {w}" for name, w in (("aof", why1), ("empty", why2)) if w)
    return ok1 and ok2, why, {"aof": _shown(f1), "empty": _shown(f2)}


def check_rate(quick: bool, sinks: Callable[[], str | None] = lambda: None) -> Result:
    """K = 1, 2, 4 workers x 32, with the shared control (the acceptance: >= 90% of the limit,
    <= 1 429 per 100) and without it (``--control local``: the figure to compare with)."""
    rows: dict[str, Any] = {}
    why = []
    seconds = 4.0 if quick else 10.0
    for k in (1, 2, 4):
        for control in ("shared", "local"):

            def body(redis: RedisServer, directory: Path, k: int = k, c: str = control) -> Result:
                f = h.shared_rate(
                    redis.url,
                    directory,
                    k=k,
                    concurrency=32,
                    seconds=seconds,
                    sink_url=sinks(),
                    control=c,
                )
                return True, "", f

            _, _, f = _with_redis(False, body)
            rows[f"K={k} {control}"] = {
                "share": round(f["share"], 3),
                "per_100": round(f["per_100"], 2),
                "seconds": f["seconds"],
            }
            print(f"  rate K={k} {control}: {rows[f'K={k} {control}']}", flush=True)
            why += [f"K={k} {control}: {w}" for w in _sink_verdict(f)]
            if control == "local":
                continue  # a figure to compare with, not an acceptance check
            if f["share"] < 0.9:
                why.append(f"K={k}: {f['share']:.0%} of the limit (< 90%)")
            if f["per_100"] > 1:
                why.append(f"K={k}: {f['per_100']:.1f} 429s per 100 (> 1)")
    return not why, "; ".join(why), rows


#: The fleet's pace in the paced run of the pause check (``fleet worker --rate``): what a
#: server limited to 300 requests/s would have it send, leaving this machine CPU to spare.
PAUSE_PACE = 300


def check_pause(quick: bool, sinks: Callable[[], str | None] = lambda: None) -> Result:
    """One 429 with ``retry-after-ms: 500``: the fleet as fast as it goes (every CPU of the
    machine busy), and paced at PAUSE_PACE requests/s. The verdict is the paced run's: no
    request arrives once the pause is in Redis (those sent before any worker could know
    are counted, not judged)."""
    rows: dict[str, Any] = {}
    why: list[str] = []
    for name, args in (("unpaced", ()), ("paced", ("--rate", str(PAUSE_PACE)))):

        def body(redis: RedisServer, directory: Path, args: tuple[str, ...] = args) -> Result:
            f = h.shared_pause(
                redis.url,
                directory,
                k=2 if quick else 4,
                concurrency=32,
                sink_url=sinks(),
                worker_args=args,
            )
            return True, "", f

        _, _, f = _with_redis(False, body)
        keys = (
            "within_450ms",
            "in_the_450ms_before",
            "within_first_20ms",
            "latest_within_ms",
            "recorded_after_ms",
            "arrived_once_known",
        )
        rows[name] = {key: f.get(key) for key in keys}
        print(f"  pause {name}: {rows[name]}", flush=True)
        why += [f"{name}: {w}" for w in _sink_verdict(f)]
        if f.get("error"):
            why.append(f"{name}: {f['error']}")
        elif name == "paced" and f.get("arrived_once_known") != 0:
            # The verdict: no request once the pause was in Redis. Requests a worker sent
            # before any worker could know (the 429 still on its way to the worker that got
            # it, then to Redis) may still arrive: the table shows them.
            why.append(
                f"{f.get('arrived_once_known')} requests arrived once the pause was in Redis "
                f"({f['within_450ms']} within 450 ms after the 429; the pause reached Redis "
                f"{f.get('recorded_after_ms')} ms after the 429)"
            )
    return not why, "; ".join(why), rows


def check_outage(quick: bool) -> Result:
    def body(redis: RedisServer, directory: Path) -> Result:
        f = h.outage(redis.url, directory, k=2 if quick else 4, seconds=4 if quick else 10)
        why = _sink_verdict(f)
        if f["during_outage"] > f["bound"]:
            why.append(
                f"{f['during_outage']} requests during the outage (> {f['bound']}: the budget's"
                f" 100 retries and one first try per slot); {f['retries_during']} of them asked"
                " a page asked before"
            )
        return not why, "; ".join(why), f

    return _with_redis(False, body)


def check_scaling(quick: bool, sinks: Callable[[], str | None] = lambda: None) -> Result:
    figures: dict[str, Any] = {}
    why = []
    # x32 as the acceptance says; x8 too, to tell the machine's limit from the fleet's.
    for concurrency in (32, 8):
        rates = {}
        for k in (1, 4):

            def body(
                redis: RedisServer, directory: Path, k: int = k, c: int = concurrency
            ) -> Result:
                f = h.scaling(
                    redis.url,
                    directory,
                    k=k,
                    concurrency=c,
                    seconds=4 if quick else 8,
                    sink_url=sinks(),
                    redis_pid=None if redis.process is None else redis.process.pid,
                )
                return True, "", f

            _, _, f = _with_redis(False, body)
            rates[k] = f["requests_per_second"]
            figures[f"x{concurrency} K={k} req/s"] = f"{rates[k]} (ideal {f['ideal']})"
            # CPU seconds per 1,000 requests: of the workers (with their SQLite writers), of
            # the fake server and of redis-server. Steadier than req/s on a busy machine.
            figures[f"x{concurrency} K={k} CPU s/1000 req"] = (
                f"workers {f['worker_cpu_per_1000']} ({f['worker_listing_cpu_per_1000']} "
                f"without their start), server {f['server_cpu_per_1000']}, "
                f"redis {f['redis_cpu_per_1000']}"
            )
            why += [f"x{concurrency} K={k}: {w}" for w in _sink_verdict(f)]
        ratio = rates[4] / rates[1] if rates[1] else 0.0
        figures[f"x{concurrency} ratio"] = round(ratio, 2)
        if ratio < 3.4 and concurrency == 32:
            why.append(f"K=4 is {ratio:.2f}x K=1 (< 3.4x)")
    return not why, "; ".join(why), figures


def check_fatal(quick: bool) -> Result:
    def body(redis: RedisServer, directory: Path) -> Result:
        f = h.fatal(redis.url, directory, k=2 if quick else 3)
        why = []
        if not f["workers_exited"]:
            why.append("workers still running")
        if set(f["exit_codes"]) != {1}:
            why.append(f"worker exit codes {f['exit_codes']}")
        if f["max_after_401"] > 2.0:
            why.append(f"a worker sent requests {f['max_after_401']} s after the first 401")
        if f["status_check_exit"] != 1:
            why.append(f"status --check exited {f['status_check_exit']}")
        return not why, "; ".join(why), f

    return _with_redis(False, body)


POSTGRES_VARIANTS: dict[str, Callable[[bool, Callable[[], str | None]], Result]] = {
    "rate": check_rate,
    "pause": check_pause,
    "scaling": check_scaling,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CHECKS), help=f"some of {','.join(CHECKS)}")
    parser.add_argument("--quick", action="store_true", help="the reduced sizes of the tests")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="kill chaos, rate, pause and scaling on PostgreSQL too",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(CHECKS)
    if unknown:
        parser.error(f"unknown checks {sorted(unknown)}; choose from {','.join(CHECKS)}")
    functions: dict[str, Callable[[bool], Result]] = {
        "kill": check_kill,
        "redelivery": check_redelivery,
        "redis": check_redis,
        "rate": check_rate,
        "pause": check_pause,
        "outage": check_outage,
        "scaling": check_scaling,
        "fatal": check_fatal,
    }
    results: list[tuple[str, bool, str, dict[str, Any], float]] = []
    pg: PostgresServer | None = None
    if args.postgres:
        bindir = find_binaries()
        if bindir is None:
            print("PostgreSQL: no binaries (initdb, pg_ctl): SQLite only", flush=True)
        else:
            pg = PostgresServer(bindir)
            pg.start()
    try:
        for name in chosen:
            runs: list[tuple[str, Callable[[], Result]]] = [
                (name, functools.partial(functions[name], args.quick))
            ]
            if pg is not None and name in ("kill", "rate", "pause", "scaling"):
                variant: Callable[[], Result]
                if name == "kill":
                    variant = functools.partial(check_kill, args.quick, pg.new_database())
                else:
                    variant = functools.partial(
                        POSTGRES_VARIANTS[name], args.quick, pg.new_database
                    )
                runs.append((f"{name}/postgresql", variant))
            for label, run in runs:
                started = time.monotonic()
                try:
                    ok, why, figures = run()
                except Exception as exc:
                    ok, why, figures = False, f"{type(exc).__name__}: {exc}", {}
                took = time.monotonic() - started
                load = os.getloadavg()[0]
                print(
                    f"{label}: {'PASS' if ok else 'FAIL'} ({took:.0f} s, load {load:.1f} on "
                    f"{os.cpu_count()} CPUs) {why}",
                    flush=True,
                )
                if not ok and figures.get("logs"):
                    print(figures["logs"][-4000:], flush=True)
                results.append((label, ok, why, _shown(figures), took))
    finally:
        if pg is not None:
            pg.stop()
    print()
    print("| check | result | figures |")
    print("| --- | --- | --- |")
    for label, ok, _why, figures, _took in results:
        text = ", ".join(f"{k}={v}" for k, v in figures.items())
        print(f"| {label} | {'pass' if ok else 'FAIL'} | {text} |")
    return 0 if all(ok for _, ok, _, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
