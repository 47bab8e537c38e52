"""``aiorunlist fake-server`` and ``aiorunlist demo``: the shipped fake server, seeded fast."""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import textwrap
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import anyio

from .. import Client, Retries
from ..testing import BASE_CREATED_AT, FakeServer, Quirks, RateLimit, make_id, make_runs
from ._export import Export, on_interrupt
from ._inputs import CLIError, ThreadIds
from ._output import Summary, format_count
from ._progress import LogWarnings, Progress

__all__ = ["DEMO_KEY", "FAKE_KEY", "build_threads", "run_demo", "serve_fake"]

#: The key ``aiorunlist fake-server`` accepts unless told otherwise (it is fake: no secret).
FAKE_KEY = "sk-fake-aiorunlist"
#: The demo's key: it never leaves the process.
DEMO_KEY = "sk-demo-aiorunlist"

_TIMESTAMPS = ("started_at", "expires_at", "cancelled_at", "failed_at", "completed_at")
_POOL_SIZE = 1000


def build_threads(
    n_threads: int, max_runs: int, *, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """``n_threads`` threads of 0 to ``max_runs`` realistic runs each, the same for a seed.

    ``FakeServer.seed`` draws every run afresh (about 50 µs each); thousands of threads are
    built here ten times faster by drawing a pool of runs once and giving each thread
    copies with their own ids, thread id and timestamps.
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    pool = make_runs("thread_pool", _POOL_SIZE, seed=seed) if max_runs > 0 else []
    threads: dict[str, list[dict[str, Any]]] = {}
    for position in range(n_threads):
        thread_id = make_id("thread_", "demo", seed, position)
        runs = []
        for index in range(rng.randint(0, max_runs)):
            run = dict(pool[rng.randrange(_POOL_SIZE)])
            created_at = BASE_CREATED_AT + 60 * index + rng.randrange(60)
            shift = created_at - run["created_at"]
            run["id"] = make_id("run_", thread_id, index)
            run["thread_id"] = thread_id
            run["created_at"] = created_at
            for key in _TIMESTAMPS:
                if run[key] is not None:
                    run[key] += shift
            runs.append(run)
        threads[thread_id] = runs
    return threads


def _seeded_server(
    *, api_key: str, port: int, n_threads: int, max_runs: int, seed: int, chaos: float
) -> FakeServer:
    server = FakeServer(api_key=api_key, host="127.0.0.1", port=port)
    # FakeServer.threads is its public store of runs, served as stored.
    server.threads.update(build_threads(n_threads, max_runs, seed=seed))
    if chaos:
        server.chaos(chaos, seed=seed)
    return server


def _traffic_text(rate_limit: RateLimit | None, latency: float) -> str:
    text = ""
    if rate_limit is not None:
        text += (
            f"  rate limit: {rate_limit.requests_per_second:g} requests/s, bursts of "
            f"{rate_limit.burst} ({rate_limit.headers} headers)\n"
        )
    if latency:
        text += f"  latency:    {latency * 1000:g} ms per answer\n"
    return text


def _write_ids(path: str, thread_ids: Iterable[str]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{thread_id}\n" for thread_id in thread_ids)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None


async def _start(server: FakeServer, port: int) -> None:
    try:
        await server.start()
    except OSError as exc:
        raise CLIError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None


async def serve_fake(
    *,
    port: int,
    n_threads: int,
    max_runs: int,
    seed: int,
    chaos: float,
    api_key: str,
    ids_file: str | None,
    out: TextIO,
    rate_limit: RateLimit | None = None,
    latency: float = 0.0,
    quirks: str | None = None,
) -> int:
    """Serve a seeded fake server on 127.0.0.1 until Ctrl-C (or SIGTERM); returns 0."""
    server = _seeded_server(
        api_key=api_key, port=port, n_threads=n_threads, max_runs=max_runs, seed=seed, chaos=chaos
    )
    server.rate_limit = rate_limit
    server.latency = latency
    server.quirks = Quirks.of(quirks)
    total = sum(len(runs) for runs in server.threads.values())
    temp_dir = None
    if ids_file is None:
        temp_dir = tempfile.mkdtemp(prefix="aiorunlist-fake-")
        ids_file = os.path.join(temp_dir, "threads.txt")
    try:
        _write_ids(ids_file, server.threads)
        await _start(server, port)
        try:
            first = next(iter(server.threads), "thread_abc123")
            chaos_text = f"{chaos * 100:g}% of requests get a random fault" if chaos else "off"
            out.write(
                f"aiorunlist fake server listening on {server.base_url}\n"
                f"  API key:    {api_key}  (a fake key)\n"
                f"  threads:    {format_count(n_threads)} threads, {format_count(total)} runs "
                f"(seed {seed})\n"
                f"  ids file:   {ids_file}\n"
                f"  chaos:      {chaos_text}\n"
                f"  quirks:     {quirks or 'none (as the spec says)'}\n"
                f"{_traffic_text(rate_limit, latency)}"
                "\n"
                "Try, in another terminal:\n"
                f"  export OPENAI_BASE_URL={server.base_url}\n"
                f"  export OPENAI_API_KEY={api_key}\n"
                f"  aiorunlist runs {first} --format table\n"
                + _command(f"aiorunlist runs --threads-from {ids_file}", "-o runs.jsonl --summary")
                + "\nPress Ctrl-C to stop.\n"
            )
            out.flush()
            await _serve_until_signal(server)
        finally:
            await server.close()
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


def _screen_width() -> int:
    """The width to fit text in: ``COLUMNS``, else the terminal's, else 80 (at most 120)."""
    return min(shutil.get_terminal_size((80, 24)).columns, 120)


def _command(start: str, end: str) -> str:
    """``  start end``, on two lines (a shell continuation) where one would wrap."""
    line = f"  {start} {end}"
    if len(line) <= _screen_width():
        return line + "\n"
    return f"  {start} \\\n      {end}\n"


def _paragraph(text: str) -> str:
    """``text`` wrapped at word boundaries to the screen's width, with a final newline."""
    return (
        textwrap.fill(text, width=_screen_width(), break_long_words=False, break_on_hyphens=False)
        + "\n"
    )


async def _serve_until_signal(server: FakeServer) -> None:
    stopped = anyio.Event()

    def stop(signum: signal.Signals) -> None:
        stopped.set()

    with on_interrupt(stop):
        while not stopped.is_set():
            # The record of requests would grow without end in a long-lived server.
            server.requests.clear()
            with anyio.move_on_after(1):
                await stopped.wait()


async def run_demo(
    *,
    n_threads: int,
    max_runs: int,
    chaos: float,
    concurrency: int,
    page_size: int,
    seed: int,
    out: TextIO,
    progress: Progress,
    echo: Callable[[str], None],
) -> int:
    """List every run of a seeded in-process fake server and print what was found."""
    progress.show(f"preparing {format_count(n_threads)} threads ...")
    server = _seeded_server(
        api_key=DEMO_KEY, port=0, n_threads=n_threads, max_runs=max_runs, seed=seed, chaos=chaos
    )
    total = sum(len(runs) for runs in server.threads.values())
    await _start(server, 0)
    try:
        progress.clear()
        chaos_text = f"; {chaos * 100:g}% of requests get a random fault" if chaos else ""
        out.write(
            _paragraph(
                f"A fake server at {server.base_url} holds {format_count(n_threads)} threads "
                f"with {format_count(total)} runs (seed {seed}{chaos_text})."
            )
            + _paragraph(
                f"Listing them all, {page_size} runs per request, {concurrency} requests at a "
                "time ..."
            )
        )
        out.flush()
        client = Client(
            DEMO_KEY,
            base_url=server.base_url,
            retry=Retries(max_retries=4, initial_delay=0.05, max_delay=0.5),
            timeout=30,
        )
        summary = Summary()
        export = Export(
            client,
            ThreadIds(list(server.threads)),
            concurrency=concurrency,
            page_size=page_size,
            summary=summary,
            progress=progress,
        )
        with LogWarnings(progress.stream, progress):
            async with client:
                await export.run()
        requests = len(server.requests)
    finally:
        await server.close()
    if export.error is not None:
        raise export.error
    elapsed = max(export.elapsed, 1e-9)
    out.write("\n" + summary.render() + "\n")
    out.write(
        _paragraph(
            f"Listed {format_count(export.runs)} runs from "
            f"{format_count(export.threads_finished())} threads in {elapsed:.2f} s: "
            f"{format_count(export.runs / elapsed)} runs/s, {format_count(requests)} requests "
            f"({format_count(requests / elapsed)}/s), {format_count(client.retries)} retries, "
            f"{format_count(len(export.failures))} failed threads"
        )
    )
    out.flush()
    if export.interrupted is not None:
        echo("aiorunlist: interrupted")
        return 128 + export.interrupted
    if export.failures:
        for thread_id, error in list(export.failures.items())[:10]:
            echo(f"{thread_id}: {error}")
        if len(export.failures) > 10:
            echo(f"... and {len(export.failures) - 10} more failed threads")
        return 1
    out.write(
        "\n"
        + _paragraph(
            "Next: `aiorunlist fake-server` serves such data on 127.0.0.1 for `aiorunlist runs` "
            "(or any client) to try."
        )
    )
    return 0
