"""Export speed into the database sinks, next to the jsonl export, in the same rounds.

    nox -s bench                          # runs this after benchmarks/bench.py
    python benchmarks/sinks.py            # in an environment with aiorunlist[cli,postgres]
    python benchmarks/sinks.py --quick    # a smoke test

Starts ``benchmarks/server.py`` (every page pre-serialised) and a throwaway PostgreSQL (the
test suite's, from the installed binaries; ``--postgres URL`` uses yours instead, and without
either PostgreSQL is left out). Then, for ``--rounds`` rounds, runs the real command line once
per contender in turn (jsonl, jsonl with its resume journal, sqlite, postgresql), each time
into a fresh file or database:

    aiorunlist runs --threads-from ids.txt -o runs.jsonl
    aiorunlist runs --threads-from ids.txt -o runs.jsonl --resume runs.state
    aiorunlist runs --threads-from ids.txt --sink sqlite:///runs.db
    aiorunlist runs --threads-from ids.txt --sink postgresql://...

and reports runs/s (all runs over the command's wall time, start-up included), the ratio of
each sink to jsonl within each round (median over rounds), and the targets: SQLite at least
0.8x the jsonl export, PostgreSQL at least 0.5x.

``--baseline-ref REF`` (a git commit, branch or tag of this repository) adds the sinks of that
version of the package as contenders in the same rounds: before and after, side by side.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
API_KEY = "sk-bench"

TARGETS = {"sqlite": 0.8, "postgresql": 0.5}

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from server import thread_id  # noqa: E402 - the benchmark server's ids

from tests.postgres import PostgresServer, find_binaries  # noqa: E402


@contextmanager
def api_server(threads: int, runs: int, page_size: int) -> Iterator[str]:
    proc = subprocess.Popen(
        [
            PY,
            str(HERE / "server.py"),
            "--threads",
            str(threads),
            "--runs",
            str(runs),
            "--page-size",
            str(page_size),
            "--api-key",
            API_KEY,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def extract(ref: str, into: Path) -> Path:
    """The package as it is at git ``ref``, extracted under ``into`` (put it on PYTHONPATH)."""
    archive = subprocess.run(
        [
            shutil.which("git") or "git",
            "-C",
            str(ROOT),
            "archive",
            "--format=tar",
            ref,
            "aiorunlist",
        ],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def export(
    base_url: str,
    ids: Path,
    target: list[str],
    args: argparse.Namespace,
    pythonpath: Path | None = None,
) -> float:
    """Seconds one export takes, start-up included (the package found in ``pythonpath``)."""
    command = [
        PY,
        "-m",
        "aiorunlist",
        "runs",
        "--threads-from",
        str(ids),
        "--base-url",
        base_url,
        "--api-key",
        API_KEY,
        "--page-size",
        str(args.page_size),
        "--concurrency",
        str(args.concurrency),
        "--no-progress",
        *target,
    ]
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    # Run elsewhere than in the repository: ``python -m`` puts the working directory first on
    # sys.path, which would shadow the baseline on PYTHONPATH with the working tree.
    out = subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, cwd=ids.parent
    )
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(target)} failed:\n{out.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=400)
    parser.add_argument("--runs", type=int, default=250, help="runs per thread")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", metavar="URL", help="an empty database to export into")
    parser.add_argument("--quick", action="store_true", help="100 threads, 2 rounds")
    parser.add_argument(
        "--baseline-ref",
        metavar="REF",
        help="also export with the sinks of this git commit/branch, in the same rounds",
    )
    args = parser.parse_args()
    if args.quick:
        args.threads, args.rounds = 100, 2
    total = args.threads * args.runs
    work = Path(tempfile.mkdtemp(prefix="aiorunlist-bench-sinks-"))
    ids = work / "ids.txt"
    ids.write_text("".join(f"{thread_id(i)}\n" for i in range(args.threads)), encoding="utf-8")
    postgres: PostgresServer | None = None
    contenders = ["jsonl", "jsonl --resume", "sqlite"]
    bindir = find_binaries()
    if args.postgres or bindir is not None:
        contenders.append("postgresql")
    if not args.postgres and bindir is not None:
        postgres = PostgresServer(bindir)
        postgres.start()
    baseline: Path | None = None
    if args.baseline_ref:
        baseline = extract(args.baseline_ref, work / "baseline")
        contenders += [f"{name} @{args.baseline_ref}" for name in contenders[2:]]
    times: dict[str, list[float]] = {name: [] for name in contenders}
    ratios: dict[str, list[float]] = {name: [] for name in contenders[1:]}
    try:
        with api_server(args.threads, args.runs, args.page_size) as base_url:
            for number in range(args.rounds):
                for name in contenders:
                    kind, _, ref = name.partition(" @")
                    pythonpath = baseline if ref else None
                    if name == "jsonl":
                        target = ["-o", str(work / f"runs{number}.jsonl")]
                    elif name == "jsonl --resume":  # the durable file export, for comparison
                        target = ["-o", str(work / f"runs{number}r.jsonl")]
                        target += ["--resume", str(work / f"runs{number}.state")]
                    elif kind == "sqlite":
                        target = ["--sink", f"sqlite:///{work / f'runs{number}{ref}.db'}"]
                    elif postgres is not None:
                        target = ["--sink", postgres.new_database()]
                    else:
                        query = "TRUNCATE runs, threads, syncs"  # fails harmlessly when empty
                        psql = shutil.which("psql") or "psql"
                        subprocess.run([psql, args.postgres, "-qc", query], check=False)
                        target = ["--sink", args.postgres]
                    times[name].append(export(base_url, ids, target, args, pythonpath))
                for name in contenders[1:]:
                    ratios[name].append(times["jsonl"][-1] / times[name][-1])
                for path in work.glob("runs*"):
                    path.unlink()
    finally:
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{args.threads} threads x {args.runs} runs = {total:,} runs, pages of "
        f"{args.page_size}, concurrency {args.concurrency}, {args.rounds} rounds "
        f"({os.cpu_count()} CPUs)\n"
    )
    print("| export | runs/s (median) | vs jsonl (median of rounds) | target |")
    print("|---|---:|---:|---|")
    for name in contenders:
        rate = total / statistics.median(times[name])
        if name == "jsonl":
            print(f"| jsonl file | {rate:,.0f} | 1.00 | |")
            continue
        ratio = statistics.median(ratios[name])
        if name not in TARGETS and name.partition(" @")[0] in TARGETS:
            target = TARGETS[name.partition(" @")[0]]
            print(f"| {name} sink | {rate:,.0f} | {ratio:.2f} | (>= {target}) |")
            continue
        if name not in TARGETS:
            print(f"| {name} | {rate:,.0f} | {ratio:.2f} | |")
            continue
        verdict = "PASS" if ratio >= TARGETS[name] else "FAIL"
        print(f"| {name} sink | {rate:,.0f} | {ratio:.2f} | >= {TARGETS[name]}: {verdict} |")


if __name__ == "__main__":
    main()
