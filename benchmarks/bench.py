"""aiorunlist against the raw floor and against openai-python, and the targets it must meet.

    nox -s bench                       # installs the project + the `bench` group, runs this
    python benchmarks/bench.py         # the same, in an environment that has them
    python benchmarks/bench.py --quick # fewer runs and rounds: a smoke test (~1 min)

What it does (docs/performance.md explains it and has the figures):

1. starts ``benchmarks/server.py`` in a process of its own, with every page body of
   ``--threads`` x ``--runs`` spec-shaped runs serialised up front;
2. for ``--rounds`` rounds, starts one client process per contender in turn (A B C A B C ...)
   that lists every run of every thread (pages of ``--page-size``, ``--concurrency`` threads
   at a time) and reports client CPU per run, wall time and peak RSS (``benchmarks/client.py``);
3. streams 100,000 and 1,000,000 runs through ``runs_many`` and compares peak RSS;
4. times ``import aiorunlist`` next to ``import openai`` in fresh interpreters;
5. micro-benchmarks structuring alone (``benchmarks/micro.py``), optionally also for the
   package as it was at ``--baseline-ref`` (a git ref), to show before/after;
6. prints Markdown tables of medians, ratios computed within each round, and PASS/FAIL
   lines for each target (below). The exit status is 0 even when a target fails (it is a report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable

#: Contenders that measure changes proposed for files the benchmark does not own.

#: The targets the verdict lines test (TARGETS, in --help, says them in words).
MAX_CPU_VS_RAW = 1.0  # aiorunlist CPU/run at most the raw floor's: typed runs for no more
#                       than untyped dicts
MIN_CPU_GAIN_VS_OPENAI = 8.0  # AsyncOpenAI's CPU/run at least this many times aiorunlist's
MEMORY_SLACK = 0.10  # peak RSS at the large size within 10% (or MEMORY_SLACK_MB) of the small
MEMORY_SLACK_MB = 8.0
MAX_IMPORT_VS_OPENAI = 0.5  # `import aiorunlist` at most half the time of `import openai`


# --- processes -------------------------------------------------------------------------------


@contextmanager
def server(args: argparse.Namespace, threads: int) -> Iterator[str]:
    """Start the fake server; yield its base URL; stop it."""
    proc = subprocess.Popen(
        [
            PY,
            str(HERE / "server.py"),
            "--threads",
            str(threads),
            "--runs",
            str(args.runs),
            "--page-size",
            str(args.page_size),
            "--api-key",
            args.api_key,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start (it said {line!r})")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the server exits when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_client(
    contender: str,
    base_url: str,
    args: argparse.Namespace,
    *,
    threads: int,
    distinct: int | None = None,
    env: dict[str, str] | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    name = contender.partition("@")[0]
    cmd = [
        PY,
        str(HERE / "client.py"),
        name,
        "--base-url",
        base_url,
        "--api-key",
        args.api_key,
        "--threads",
        str(threads),
        "--concurrency",
        str(args.concurrency),
        "--page-size",
        str(args.page_size),
    ]
    if distinct is not None:
        cmd += ["--distinct-threads", str(distinct)]
    if profile is not None:
        cmd += ["--profile", profile]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"client {contender} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["contender"] = contender
    return result


@contextmanager
def baseline_tree(ref: str | None, files: Sequence[str]) -> Iterator[dict[str, str] | None]:
    """The environment that imports aiorunlist as it was at git ``ref`` (None: no baseline).

    With ``files``, the baseline is the working tree's aiorunlist with only those files taken
    from ``ref``: the before/after of one change, everything else equal.
    """
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="aiorunlist-baseline-") as tmp:
        archive = Path(tmp) / "tree.tar"
        git = ["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive)]
        if files:
            shutil.copytree(
                ROOT / "aiorunlist",
                Path(tmp) / "aiorunlist",
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        subprocess.run([*git, ref, *(files or ["aiorunlist"])], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([tmp, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        yield env


# --- measurements ----------------------------------------------------------------------------


def baseline_label(args: argparse.Namespace) -> str:
    files = ",".join(Path(f).name for f in args.baseline_files)
    return f"aiorunlist@{args.baseline_ref}" + (f"[{files}]" if files else "")


def listing_rounds(
    args: argparse.Namespace, base_url: str, baseline_env: dict[str, str] | None
) -> list[dict[str, dict[str, Any]]]:
    contenders = list(args.contenders)
    if baseline_env is not None:
        contenders.append(baseline_label(args))
    expected = args.threads * args.runs
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        results: dict[str, dict[str, Any]] = {}
        for contender in list(contenders):
            env = baseline_env if "@" in contender else None
            res = run_client(contender, base_url, args, threads=args.threads, env=env)
            if res["runs"] != expected:
                raise RuntimeError(f"{contender} listed {res['runs']} runs, not {expected}")
            results[contender] = res
            print(
                f"  round {r + 1}/{args.rounds} {contender:<12} "
                f"{res['cpu_us_per_run']:7.1f} us/run  {res['wall_s']:6.2f} s  "
                f"{res['peak_rss_mb']:6.1f} MB",
                file=sys.stderr,
                flush=True,
            )
        checks = {res["completed"] for res in results.values()}
        if len(checks) != 1:
            raise RuntimeError(f"the contenders read different data: {checks}")
        rounds.append(results)
    return rounds


def memory_runs(args: argparse.Namespace, base_url: str) -> list[dict[str, Any]]:
    results = []
    for size in args.memory_sizes:
        distinct = max(1, size // args.runs)
        res = run_client("aiorunlist", base_url, args, threads=args.threads, distinct=distinct)
        if res["runs"] != distinct * args.runs:
            raise RuntimeError(f"memory run listed {res['runs']} runs, not {distinct * args.runs}")
        res["distinct_threads"] = distinct
        results.append(res)
        print(
            f"  memory {res['runs']:>9,} runs  peak RSS {res['peak_rss_mb']:6.1f} MB  "
            f"{res['wall_s']:6.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return results


def import_cost(module: str, repeats: int) -> dict[str, Any]:
    """Median cost of importing ``module`` in a fresh interpreter, and the modules it adds."""
    walls: list[float] = []
    cumulative: list[float] = []
    modules = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = subprocess.run(
            [PY, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        walls.append(time.perf_counter() - t0)
        lines = [ln for ln in out.stderr.splitlines() if ln.startswith("import time:")][1:]
        modules = len(lines)
        for ln in lines:
            _, cum, name = (part.strip() for part in ln.removeprefix("import time:").split("|"))
            if name == module:
                cumulative.append(int(cum) / 1000)
    return {
        "module": module,
        "importtime_ms": statistics.median(cumulative),
        "process_ms": statistics.median(walls) * 1000,
        "modules": modules,
    }


def bare_interpreter_ms(repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([PY, "-c", "pass"], check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls) * 1000


def micro(env: dict[str, str] | None) -> dict[str, Any]:
    out = subprocess.run(
        [PY, str(HERE / "micro.py")], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"micro-benchmark failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- report ----------------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def med(rounds: Sequence[dict[str, dict[str, Any]]], contender: str, key: str) -> float:
    return statistics.median(r[contender][key] for r in rounds)


def ratio(rounds: Sequence[dict[str, dict[str, Any]]], top: str, bottom: str) -> float:
    """The median over rounds of CPU/run ratios computed within each round."""
    return statistics.median(r[top]["cpu_us_per_run"] / r[bottom]["cpu_us_per_run"] for r in rounds)


def targets_text() -> str:
    """The targets the PASS/FAIL lines test, for ``--help``."""
    return (
        "targets (the PASS/FAIL lines):\n"
        f"  CPU per run        aiorunlist <= {MAX_CPU_VS_RAW:.1f}x the raw aiohttp + orjson floor,"
        " typed runs included\n"
        f"                     AsyncOpenAI >= {MIN_CPU_GAIN_VS_OPENAI:.0f}x aiorunlist\n"
        f"  memory             peak RSS at the largest --memory-sizes within"
        f" {MEMORY_SLACK:.0%} (or {MEMORY_SLACK_MB:.0f} MB) of the smallest\n"
        f"  import             import aiorunlist <= {MAX_IMPORT_VS_OPENAI:.1f}x import openai\n"
        "ratios are medians of the ratios taken within each round"
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(args: argparse.Namespace, data: dict[str, Any]) -> None:
    rounds = data["rounds"]
    contenders = list(rounds[0]) if rounds else []
    lines: list[str] = []
    p = lines.append
    p(f"## aiorunlist benchmark ({time.strftime('%Y-%m-%d %H:%M')})")
    p("")
    p(f"Machine: {data['machine']}")
    p(
        f"Work: {args.threads} threads x {args.runs} runs = {args.threads * args.runs:,} runs, "
        f"pages of {args.page_size}, {args.concurrency} threads at a time, "
        f"{args.rounds} rounds (medians)"
    )
    verdicts: list[str] = []
    if rounds:
        p("")
        p("| contender | CPU us/run | of which GC us/run | wall s | peak RSS MB |")
        p("|---|---:|---:|---:|---:|")
        for c in contenders:
            p(
                f"| {c} | {med(rounds, c, 'cpu_us_per_run'):.1f} "
                f"| {med(rounds, c, 'gc_us_per_run'):.1f} | {med(rounds, c, 'wall_s'):.2f} "
                f"| {med(rounds, c, 'peak_rss_mb'):.1f} |"
            )
        p("")
        p("| ratio (CPU/run, within each round, median) | value |")
        p("|---|---:|")
        if "raw" in contenders and "aiorunlist" in contenders:
            vs_raw = ratio(rounds, "aiorunlist", "raw")
            p(f"| aiorunlist / raw | {vs_raw:.2f} |")
            verdicts.append(
                f"{verdict(vs_raw <= MAX_CPU_VS_RAW)}: aiorunlist CPU/run is {vs_raw:.2f}x the "
                f"raw floor (target <= {MAX_CPU_VS_RAW:.1f}x, typed Runs included)"
            )
        if "openai" in contenders and "aiorunlist" in contenders:
            vs_openai = ratio(rounds, "openai", "aiorunlist")
            p(f"| openai / aiorunlist | {vs_openai:.2f} |")
            verdicts.append(
                f"{verdict(vs_openai >= MIN_CPU_GAIN_VS_OPENAI)}: AsyncOpenAI spends "
                f"{vs_openai:.2f}x aiorunlist's CPU/run (target >= {MIN_CPU_GAIN_VS_OPENAI:.0f}x)"
            )
        for c in contenders:
            if c.startswith(("aiorunlist@", "aiorunlist-")):
                p(f"| {c} / aiorunlist | {ratio(rounds, c, 'aiorunlist'):.2f} |")
    if data.get("memory"):
        mem = data["memory"]
        p("")
        p(
            "| runs streamed through runs_many | threads | peak RSS MB | RSS before MB "
            "| CPU us/run | wall s |"
        )
        p("|---:|---:|---:|---:|---:|---:|")
        for m in mem:
            p(
                f"| {m['runs']:,} | {m['distinct_threads']:,} | {m['peak_rss_mb']:.1f} | "
                f"{m['rss_before_mb']:.1f} | {m['cpu_us_per_run']:.1f} | {m['wall_s']:.1f} |"
            )
        if len(mem) >= 2:
            small, large = mem[0], mem[-1]
            growth = large["peak_rss_mb"] - small["peak_rss_mb"]
            allowed = max(MEMORY_SLACK * small["peak_rss_mb"], MEMORY_SLACK_MB)
            verdicts.append(
                f"{verdict(growth <= allowed)}: peak RSS {small['peak_rss_mb']:.1f} MB at "
                f"{small['runs']:,} runs, {large['peak_rss_mb']:.1f} MB at {large['runs']:,} "
                f"({growth:+.1f} MB for {large['runs'] / small['runs']:.0f}x the runs; allowed "
                f"{allowed:.1f} MB: flat, bounded by concurrency x page size = "
                f"{args.concurrency} x {args.page_size} runs in flight, not by the runs listed)"
            )
    if data.get("imports"):
        imp = data["imports"]
        p("")
        p(
            f"| import (fresh interpreter, median of {args.import_repeats}) | -X importtime "
            f"cumulative ms | process ms (bare: {data['bare_ms']:.0f}) | modules added |"
        )
        p("|---|---:|---:|---:|")
        for i in imp:
            p(
                f"| import {i['module']} | {i['importtime_ms']:.0f} | {i['process_ms']:.0f} | "
                f"{i['modules']} |"
            )
        by = {i["module"]: i for i in imp}
        if "aiorunlist" in by and "openai" in by:
            share = by["aiorunlist"]["importtime_ms"] / by["openai"]["importtime_ms"]
            verdicts.append(
                f"{verdict(share <= MAX_IMPORT_VS_OPENAI)}: import aiorunlist takes "
                f"{by['aiorunlist']['importtime_ms']:.0f} ms and {by['aiorunlist']['modules']} "
                f"modules, import openai {by['openai']['importtime_ms']:.0f} ms and "
                f"{by['openai']['modules']} modules ({share:.2f}x; target <= "
                f"{MAX_IMPORT_VS_OPENAI:.1f}x)"
            )
    if data.get("micro"):
        p("")
        p(
            "| structuring alone (best of 9) | listed run us | listed run, every field read us "
            "| all typed at once us | minimal run us | page us/run | orjson.loads us/run |"
        )
        p("|---|---:|---:|---:|---:|---:|---:|")
        for label, m in data["micro"].items():
            p(
                f"| {label} | {m['full_us']:.2f} | {m.get('full_read_us', m['full_us']):.2f} "
                f"| {m.get('eager_us', m['full_us']):.2f} | {m['minimal_us']:.2f} "
                f"| {m['page_us']:.2f} | {m['loads_us']:.2f} |"
            )
    if verdicts:
        p("")
        p("Targets:")
        p("")
        lines.extend(f"- {v}" for v in verdicts)
    print("\n".join(lines))


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=targets_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--runs", type=int, default=250, help="runs per thread")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--contenders",
        type=lambda s: s.split(","),
        default=["aiorunlist", "raw", "openai"],
        help="comma-separated, from aiorunlist,raw,openai",
    )
    parser.add_argument(
        "--memory-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100_000, 1_000_000],
        help="runs to stream through runs_many for the memory check (comma-separated)",
    )
    parser.add_argument("--import-repeats", type=int, default=7)
    parser.add_argument(
        "--baseline-ref",
        help="also measure aiorunlist as it was at this git ref (before/after)",
    )
    parser.add_argument(
        "--baseline-files",
        type=lambda s: s.split(","),
        default=[],
        help="with --baseline-ref: take only these files from the ref, the rest from the "
        "working tree (e.g. aiorunlist/_convert.py,aiorunlist/_models.py)",
    )
    parser.add_argument("--profile", metavar="FILE", help="also profile aiorunlist (pyinstrument)")
    parser.add_argument("--json", metavar="FILE", help="write every measurement to FILE")
    parser.add_argument("--quick", action="store_true", help="fewer runs and rounds (~1 min)")
    parser.add_argument(
        "--skip",
        type=lambda s: s.split(","),
        default=[],
        help="skip parts: listing,memory,imports,micro",
    )
    parser.add_argument("--api-key", default="sk-bench")
    args = parser.parse_args(argv)
    if args.quick:
        args.threads = min(args.threads, 40)
        args.rounds = min(args.rounds, 3)
        args.memory_sizes = [20_000, 200_000]
        args.import_repeats = min(args.import_repeats, 3)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    data: dict[str, Any] = {"machine": machine(), "args": vars(args), "rounds": []}
    print(f"aiorunlist benchmark on {data['machine']}", file=sys.stderr, flush=True)
    with baseline_tree(args.baseline_ref, args.baseline_files) as baseline_env:
        if "listing" not in args.skip or "memory" not in args.skip or args.profile:
            with server(args, args.threads) as base_url:
                if "listing" not in args.skip:
                    data["rounds"] = listing_rounds(args, base_url, baseline_env)
                if "memory" not in args.skip:
                    data["memory"] = memory_runs(args, base_url)
                if args.profile:
                    run_client(
                        "aiorunlist", base_url, args, threads=args.threads, profile=args.profile
                    )
                    print(f"  profile written to {args.profile}", file=sys.stderr)
        if "imports" not in args.skip:
            data["bare_ms"] = bare_interpreter_ms(args.import_repeats)
            data["imports"] = [
                import_cost(module, args.import_repeats)
                for module in ("aiorunlist", "openai", "aiohttp")
            ]
        if "micro" not in args.skip:
            data["micro"] = {"aiorunlist": micro(None)}
            if baseline_env is not None:
                data["micro"][baseline_label(args)] = micro(baseline_env)
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
    report(args, data)


if __name__ == "__main__":
    main()
