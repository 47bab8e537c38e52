"""The fleet's acceptance harness: a fake server in a thread of its own, workers as real
subprocesses of ``aiorunlist fleet``, and checks read straight from the sink's database.

Used by ``tests/test_fleet_acceptance.py`` (reduced sizes, in CI) and by
``benchmarks/fleet_acceptance.py`` (the full sizes, ``nox -s fleet``). Every scenario returns
its figures as a plain dict; the callers assert on them or print them.

What is checked comes from outside the engine: the runs the server holds (``raw`` compared
byte for byte, so key order too), the rows of the sink (read with sqlite3 or asyncpg), a
trigger that logs every rewrite of a stored run, and the fake server's request log (its own
``time.monotonic()`` at each arrival, and which worker sent it: each worker process has an
API key of its own, which the fake server, accepting any key, records).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import redis

from aiorunlist._cli._serve import build_threads
from aiorunlist.fleet._control import PROBE_INTERVAL
from aiorunlist.testing import FakeServer, Fault, RateLimit, RecordedRequest

__all__ = [
    "Fleet",
    "ServerThread",
    "SinkCheck",
    "Worker",
    "check_sink",
    "install_write_log",
    "seed_server",
    "sink_states",
]

T = TypeVar("T")

#: The export's name in every scenario.
EXPORT = "acceptance"
#: Seconds a worker may take to exit after SIGTERM (the command line's promise).
SIGTERM_GRACE = 10.0


# --- the fake server, in a thread of its own ---------------------------------------------------


class ServerThread:
    """A `FakeServer` served by an event loop in a thread of its own.

    Worker subprocesses reach it over loopback while the caller (a test, a benchmark) goes on
    in its own thread; `call` runs a function in the server's loop, where its state lives.
    """

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)
            self.loop.close()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` run in the server's loop; its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(function())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def requests(self) -> list[RecordedRequest]:
        """A copy of the server's request log."""
        return self.call(lambda: list(self.server.requests))

    def now(self) -> float:
        """The server's clock (``time.monotonic()``, shared by every thread of a process)."""
        return time.monotonic()


def seed_server(
    server: FakeServer, n_threads: int, max_runs: int, *, seed: int = 0, failing: int = 0
) -> tuple[list[str], dict[str, int]]:
    """Give ``server`` ``n_threads`` threads of 0 to ``max_runs`` runs (about ``max_runs / 2``
    each), ``failing`` of which fail for good (404 and 400 in turn). Returns every thread id,
    and the failing ones with their status."""
    threads = build_threads(n_threads, max_runs, seed=seed)
    server.threads.update(threads)
    thread_ids = list(threads)
    rng = random.Random(seed)
    chosen = rng.sample(thread_ids, failing) if failing else []
    failing_ids = {tid: (404 if i % 2 == 0 else 400) for i, tid in enumerate(chosen)}
    for status in (404, 400):
        server.fail_threads([t for t, s in failing_ids.items() if s == status], status=status)
    return thread_ids, failing_ids


# --- the fleet's processes -----------------------


class Worker:
    """One ``aiorunlist fleet worker`` process; its requests carry its own API key."""

    def __init__(self, process: subprocess.Popen[bytes], key: str, log: Path) -> None:
        self.process = process
        self.key = key
        self.log = log
        self.started_at = time.monotonic()
        self.ended_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> float:
        """SIGKILL; the monotonic time it was sent."""
        at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(timeout=30)
        self.ended_at = at
        return at

    def terminate(self, timeout: float = SIGTERM_GRACE) -> tuple[int | None, float]:
        """SIGTERM and wait up to ``timeout``: (exit code or ``None`` if still running, the
        seconds it took). A worker still running then is killed."""
        at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
            self.process.kill()
            self.process.wait(timeout=30)
        self.ended_at = time.monotonic()
        return code, self.ended_at - at

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Fleet:
    """The command lines of one export: ``enqueue``, ``worker`` processes, ``status``."""

    #: The command line the subcommands follow.
    program: tuple[str, ...] = (sys.executable, "-m", "aiorunlist", "fleet")

    def __init__(
        self,
        *,
        redis_url: str,
        sink_url: str,
        base_url: str,
        workdir: Path,
        export: str = EXPORT,
        concurrency: int = 16,
        lease: float | None = None,
        worker_args: Sequence[str] = (),
        export_args: Sequence[str] = (),
    ) -> None:
        self.redis_url = redis_url
        self.sink_url = sink_url
        self.base_url = base_url
        self.workdir = workdir
        self.export = export
        self.concurrency = concurrency
        self.lease = lease
        self.worker_args = tuple(worker_args)
        self.export_args = tuple(export_args)
        self.workers: list[Worker] = []
        self._spawned = 0

    def _base(self, command: str) -> list[str]:
        return [
            *self.program,
            command,
            "--export",
            self.export,
            "--redis",
            self.redis_url,
            "--sink",
            self.sink_url,
        ]

    @staticmethod
    def _env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AIORUNLIST_"))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(
        self, command: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``aiorunlist fleet COMMAND --export --redis --sink ARGS``, waited for."""
        return subprocess.run(  # noqa: S603 - our own command line
            [*self._base(command), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self._env(),
        )

    def enqueue(self, thread_ids: Iterable[str], *args: str) -> subprocess.CompletedProcess[str]:
        """Enqueue ``thread_ids`` (through ``--threads-from`` a file) with the export's
        settings; ``--json`` output."""
        path = self.workdir / f"threads-{time.monotonic_ns()}.txt"
        path.write_text("".join(f"{tid}\n" for tid in thread_ids), encoding="utf-8")
        return self.run("enqueue", *self.export_args, "--threads-from", str(path), "--json", *args)

    def status(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("status", *args)

    def status_json(self) -> dict[str, Any]:
        result = self.status("--json")
        if result.returncode not in (0, 1):
            raise RuntimeError(f"fleet status failed ({result.returncode}): {result.stderr}")
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def start_worker(self, *args: str, burst: bool = False) -> Worker:
        """A new worker process (``--concurrency``, ``--lease``, the fake server's URL, a key
        of its own) writing its output to a log file in the work directory."""
        self._spawned += 1
        key = f"sk-fleet-worker-{self._spawned:04d}"
        command = [
            *self._base("worker"),
            "--concurrency",
            str(self.concurrency),
            "--base-url",
            self.base_url,
            "--api-key",
            key,
            *(["--lease", f"{self.lease:g}"] if self.lease is not None else []),
            *(["--burst"] if burst else []),
            *self.worker_args,
            *args,
        ]
        log = self.workdir / f"worker-{self._spawned:04d}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own command line
                command, stdout=out, stderr=subprocess.STDOUT, env=self._env()
            )
        worker = Worker(process, key, log)
        self.workers.append(worker)
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def stop_all(self) -> list[tuple[int | None, float, float]]:
        """SIGTERM every live worker at once; their (exit code, seconds to exit, seconds they
        had been running when signalled)."""
        live = self.live()
        at = time.monotonic()
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        results: list[tuple[int | None, float, float]] = []
        for worker in live:
            left = max(0.1, at + SIGTERM_GRACE - time.monotonic())
            try:
                code: int | None = worker.process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                code = None
                worker.process.kill()
                worker.process.wait(timeout=30)
            worker.ended_at = time.monotonic()
            results.append((code, worker.ended_at - at, at - worker.started_at))
        return results

    def kill_all(self) -> None:
        for worker in self.live():
            worker.kill()

    def logs(self, chars: int = 1500) -> str:
        """The end of every worker's output, for a failure message."""
        codes = Counter(w.process.returncode for w in self.workers)
        said = [
            f"--- worker {i + 1} ({w.process.returncode}):\n{w.tail(chars)}"
            for i, w in enumerate(self.workers)
            if w.tail(chars).strip()
        ]
        return f"exit codes of {len(self.workers)} workers: {dict(codes)}\n" + "\n".join(said)


# --- the sink, read directly -----------------------


def _sqlite_file(sink_url: str) -> str:
    return sink_url.removeprefix("sqlite:///").removeprefix("sqlite://")


def _is_sqlite(sink_url: str) -> bool:
    return sink_url.startswith("sqlite:")


def _postgres(sink_url: str, query: str) -> list[tuple[Any, ...]]:
    import asyncpg

    async def fetch() -> list[tuple[Any, ...]]:
        con = await asyncpg.connect(sink_url)
        try:
            return [tuple(row) for row in await con.fetch(query)]
        finally:
            await con.close()

    rows: list[tuple[Any, ...]] = _in_a_thread(fetch)
    return rows


def _in_a_thread(function: Callable[[], Any]) -> Any:
    """``asyncio.run(function())`` in a thread of its own (the caller may be in a loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(function())).result()


def _postgres_execute(sink_url: str, statements: Sequence[str]) -> None:
    import asyncpg

    async def execute() -> None:
        con = await asyncpg.connect(sink_url)
        try:
            for statement in statements:
                await con.execute(statement)
        finally:
            await con.close()

    _in_a_thread(execute)


def execute(sink_url: str, statement: str, *args: Any) -> None:
    """One statement (``?`` placeholders, made ``$n`` for PostgreSQL) against the sink."""
    if _is_sqlite(sink_url):
        con = sqlite3.connect(_sqlite_file(sink_url), timeout=60)
        try:
            with con:
                con.execute(statement, args)
        finally:
            con.close()
        return
    import asyncpg

    parts = statement.split("?")
    numbered = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))

    async def run() -> None:
        con = await asyncpg.connect(sink_url)
        try:
            await con.execute(numbered, *args)
        finally:
            await con.close()

    _in_a_thread(run)


def query(sink_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (plain SQL both databases read) against the sink."""
    if _is_sqlite(sink_url):
        con = sqlite3.connect(_sqlite_file(sink_url), timeout=60)
        try:
            return list(con.execute(sql))
        finally:
            con.close()
    return _postgres(sink_url, sql)


def sink_states(sink_url: str) -> dict[str, int]:
    """Threads per state (``pending``, ``done``, ``failed``) in the sink; empty when the
    sink has no tables yet."""
    try:
        rows = query(sink_url, "SELECT state, count(*) FROM threads GROUP BY state")
    except Exception:
        return {}
    return {str(state): int(count) for state, count in rows}


def install_write_log(sink_url: str) -> None:
    """A trigger that logs every rewrite (UPDATE) of a stored run into ``acceptance_rewrites``:
    the proof that no page was written twice. Call it once the sink has its tables."""
    if _is_sqlite(sink_url):
        con = sqlite3.connect(_sqlite_file(sink_url), timeout=60)
        try:
            con.executescript(
                """
                CREATE TABLE IF NOT EXISTS acceptance_rewrites (id TEXT NOT NULL);
                CREATE TRIGGER IF NOT EXISTS acceptance_rewrite AFTER UPDATE ON runs
                BEGIN INSERT INTO acceptance_rewrites (id) VALUES (new.id); END;
                CREATE TRIGGER IF NOT EXISTS acceptance_delete AFTER DELETE ON runs
                BEGIN INSERT INTO acceptance_rewrites (id) VALUES ('deleted:' || old.id); END;
                """
            )
            con.commit()
        finally:
            con.close()
        return
    _postgres_execute(
        sink_url,
        [
            "CREATE TABLE IF NOT EXISTS acceptance_rewrites (id text NOT NULL)",
            """CREATE OR REPLACE FUNCTION acceptance_rewrite() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    INSERT INTO acceptance_rewrites (id) VALUES ('deleted:' || OLD.id);
                    RETURN OLD;
                END IF;
                INSERT INTO acceptance_rewrites (id) VALUES (NEW.id);
                RETURN NEW;
            END $$ LANGUAGE plpgsql""",
            "DROP TRIGGER IF EXISTS acceptance_rewrite ON runs",
            "CREATE TRIGGER acceptance_rewrite AFTER UPDATE OR DELETE ON runs "
            "FOR EACH ROW EXECUTE FUNCTION acceptance_rewrite()",
        ],
    )


class SinkCheck:
    """What the sink holds, compared with what the server holds."""

    def __init__(
        self,
        sink_url: str,
        server_threads: Mapping[str, list[dict[str, Any]]],
        failing: Mapping[str, int],
        thread_ids: Sequence[str],
    ) -> None:
        rows = query(sink_url, "SELECT id, thread_id, raw FROM runs")
        threads = query(sink_url, "SELECT thread_id, state, last_error FROM threads")
        try:
            rewrites = query(sink_url, "SELECT id FROM acceptance_rewrites")
        except Exception:
            rewrites = []
        wanted = set(thread_ids) - set(failing)
        expected: dict[str, tuple[str, str]] = {}
        for tid in wanted:
            for run in server_threads[tid]:
                expected[run["id"]] = (tid, orjson.dumps(run).decode())
        ids = Counter(str(row[0]) for row in rows)
        #: Runs the server holds (in the threads that should be done) and the sink does not.
        self.missing = sorted(set(expected) - set(ids))
        #: Rows for runs the server does not hold in those threads.
        self.unexpected = sorted(set(ids) - set(expected))
        #: Run ids stored more than once.
        self.duplicates = sorted(run_id for run_id, n in ids.items() if n > 1)
        self.rows = len(rows)
        self.expected = len(expected)
        self.raw_differs: list[str] = []
        self.key_order_differs: list[str] = []
        self.wrong_thread: list[str] = []
        for run_id, thread_id, raw in rows:
            want = expected.get(run_id)
            if want is None:
                continue
            if thread_id != want[0]:
                self.wrong_thread.append(run_id)
            if raw != want[1]:
                self.raw_differs.append(run_id)
                stored = orjson.loads(raw)
                if stored == orjson.loads(want[1]) and list(stored) != list(orjson.loads(want[1])):
                    self.key_order_differs.append(run_id)
        #: Rewrites (and deletions) of stored runs, from the trigger.
        self.rewrites = [str(row[0]) for row in rewrites]
        states = {str(tid): str(state) for tid, state, _ in threads}
        self.errors = {str(tid): error for tid, _, error in threads if error}
        self.states = Counter(states.values())
        self.failed = {tid for tid, state in states.items() if state == "failed"}
        self.not_done = sorted(tid for tid in wanted if states.get(tid) != "done")
        #: Threads failed that were not seeded to fail, and seeded ones that did not fail.
        self.wrongly_failed = sorted(self.failed - set(failing))
        self.not_failed = sorted(set(failing) - self.failed)

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.unexpected
            or self.duplicates
            or self.raw_differs
            or self.wrong_thread
            or self.rewrites
            or self.not_done
            or self.wrongly_failed
            or self.not_failed
        )

    def figures(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "expected": self.expected,
            "lost": len(self.missing),
            "unexpected": len(self.unexpected),
            "duplicates": len(self.duplicates),
            "rewrites": len(self.rewrites),
            "raw_differs": len(self.raw_differs),
            "key_order_differs": len(self.key_order_differs),
            "threads_not_done": len(self.not_done),
            "wrongly_failed": len(self.wrongly_failed),
            "seeded_not_failed": len(self.not_failed),
            "states": dict(self.states),
        }

    def __repr__(self) -> str:
        sample = {
            name: getattr(self, name)[:5]
            for name in (
                "missing",
                "unexpected",
                "duplicates",
                "raw_differs",
                "rewrites",
                "not_done",
                "wrongly_failed",
                "not_failed",
            )
            if getattr(self, name)
        }
        return f"SinkCheck({self.figures()}, samples={sample})"


def check_sink(
    sink_url: str,
    server: FakeServer,
    thread_ids: Sequence[str],
    failing: Mapping[str, int],
) -> SinkCheck:
    """Compare the sink with ``server``'s threads (read them only while nothing changes)."""
    return SinkCheck(sink_url, server.threads, failing, thread_ids)


# --- waiting -----------------------


def wait_until(
    condition: Callable[[], bool], timeout: float, *, every: float = 0.25, what: str = ""
) -> bool:
    """Poll ``condition`` until it holds (``True``) or ``timeout`` passes (``False``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def finished(sink_url: str, n_threads: int) -> bool:
    """Every thread of the export is done or failed in the sink."""
    states = sink_states(sink_url)
    return (
        states.get("pending", 0) == 0
        and states.get("done", 0) + states.get("failed", 0) >= n_threads
    )


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aiorunlist-fleet-") as name:
        yield Path(name)


def by_worker(requests: Iterable[RecordedRequest]) -> dict[str, list[RecordedRequest]]:
    """The listing requests of each worker (by the API key it sent)."""
    out: dict[str, list[RecordedRequest]] = {}
    for request in requests:
        if request.thread_id is None:
            continue
        key = request.headers.get("Authorization", "").partition(" ")[2]
        out.setdefault(key, []).append(request)
    return out


# --- the scenarios -----------------------


class HarnessError(RuntimeError):
    """The fleet's command line did not do its part (the message has its output)."""


def _checked(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise HarnessError(
            f"{what} exited with {result.returncode}:\n{result.stdout[-2000:]}\n"
            f"{result.stderr[-2000:]}"
        )
    return result.stdout


def _window_rate(times: Sequence[float], low: float = 0.1, high: float = 0.9) -> float:
    """Events per second between the ``low`` and ``high`` quantiles of ``times`` (the busy
    middle of a run, without its start and its tail)."""
    if len(times) < 10:
        return 0.0
    ordered = sorted(times)
    first = ordered[int(low * (len(ordered) - 1))]
    last = ordered[int(high * (len(ordered) - 1))]
    if last <= first:
        return 0.0
    return (high - low) * len(ordered) / (last - first)


class Scenario:
    """A fake server in a thread, seeded threads, and a fleet of workers for one export.

    The server is ``server``, or a new `FakeServer` with ``latency`` and ``rate_limit``.
    A scenario :meth:`start` s the export and its workers, and ends with :meth:`result`.
    """

    def __init__(
        self,
        *,
        redis_url: str,
        sink_url: str | None,
        directory: Path,
        n_threads: int,
        max_runs: int,
        failing: int = 0,
        seed: int = 0,
        concurrency: int = 16,
        lease: float | None = None,
        page_size: int | None = None,
        worker_args: Sequence[str] = (),
        server: FakeServer | None = None,
        latency: float = 0.0,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.fake = (
            server
            if server is not None
            else FakeServer(api_key=None, latency=latency, rate_limit=rate_limit)
        )
        self.thread_ids, self.failing = seed_server(
            self.fake, n_threads, max_runs, seed=seed, failing=failing
        )
        self.server = ServerThread(self.fake)
        self.sink_url = sink_url or f"sqlite:///{directory / 'runs.db'}"
        export_args = ["--page-size", str(page_size)] if page_size is not None else []
        self.redis_url = redis_url
        self.directory = directory
        self.fleet: Fleet | None = None
        self._fleet_args: dict[str, Any] = {
            "redis_url": redis_url,
            "sink_url": self.sink_url,
            "workdir": directory,
            "concurrency": concurrency,
            "lease": lease,
            "worker_args": worker_args,
            "export_args": export_args,
        }

    def __enter__(self) -> Scenario:
        self.server.__enter__()
        self.fleet = Fleet(base_url=self.server.base_url, **self._fleet_args)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self.fleet is not None:
                self.fleet.kill_all()
        finally:
            self.server.__exit__(*exc_info)

    @property
    def f(self) -> Fleet:
        assert self.fleet is not None
        return self.fleet

    def enqueue(self, *args: str, thread_ids: Iterable[str] | None = None) -> dict[str, Any]:
        """Enqueue the threads (``--json``), then install the sink's rewrite log."""
        ids = self.thread_ids if thread_ids is None else thread_ids
        out = _checked(self.f.enqueue(ids, *args), "fleet enqueue")
        install_write_log(self.sink_url)
        try:
            data: dict[str, Any] = json.loads(out)
        except ValueError:
            data = {"output": out.strip()}
        return data

    def finished(self) -> bool:
        return finished(self.sink_url, len(self.thread_ids))

    def wait_finished(self, timeout: float, *, supervise: bool = False) -> tuple[bool, int]:
        """Wait until the sink has every thread done or failed; with ``supervise``, start a
        new worker for each one that exited meanwhile. (finished, workers restarted)."""
        restarted = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.finished():
                return True, restarted
            if supervise:
                for worker in self.f.workers:
                    if not worker.alive and worker.ended_at is None:
                        worker.ended_at = time.monotonic()
                        self.f.start_worker()
                        restarted += 1
            elif not self.f.live():
                return self.finished(), restarted
            time.sleep(0.25)
        return self.finished(), restarted

    def check(self) -> SinkCheck:
        return self.server.call(
            lambda: check_sink(self.sink_url, self.fake, self.thread_ids, self.failing)
        )

    def listing(self) -> list[RecordedRequest]:
        return [r for r in self.server.requests() if r.thread_id is not None]

    def start(self, workers: int, *, burst: bool = False) -> float:
        """Enqueue the threads (:attr:`enqueued`: what ``enqueue`` said), then start
        ``workers`` workers; the monotonic time they were started."""
        self.enqueued = self.enqueue()
        started = time.monotonic()
        for _ in range(workers):
            self.f.start_worker(burst=burst)
        return started

    def busy(self, after: float) -> None:
        """Wait until the fleet has sent some requests, then ``after`` seconds more."""
        wait_until(lambda: len(self.listing()) > 50, 60)
        time.sleep(after)

    def result(self, done: bool, figures: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The scenario's ``figures``, whether it finished (``done``), the sink's check and its
        figures, and the workers' logs if anything is wrong. Call it once the workers are
        stopped."""
        check = self.check()
        return {
            "finished": done,
            **(figures or {}),
            "check": check,
            **check.figures(),
            "logs": self.f.logs() if not check.ok or not done else "",
        }


def kill_chaos(
    redis_url: str,
    directory: Path,
    *,
    sink_url: str | None = None,
    n_threads: int = 2000,
    max_runs: int = 60,
    workers: int = 3,
    concurrency: int = 16,
    fault_rate: float = 0.05,
    kill_every: float = 2.0,
    min_kills: int = 10,
    page_size: int = 10,
    latency: float = 0.0,
    failing: int | None = None,
    lease: float = 3.0,
    seed: int = 0,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Kill chaos: ``workers`` workers, one SIGKILLed every ``kill_every`` s and restarted at
    once, with ``fault_rate`` injected faults, until the sink has every thread (and at least
    ``min_kills`` kills if the export lasts that long)."""
    rng = random.Random(seed)
    n_failing = max(2, n_threads // 100) if failing is None else failing
    figures: dict[str, Any] = {}
    with Scenario(
        redis_url=redis_url,
        sink_url=sink_url,
        directory=directory,
        n_threads=n_threads,
        max_runs=max_runs,
        failing=n_failing,
        seed=seed,
        concurrency=concurrency,
        lease=lease,
        page_size=page_size,
        latency=latency,
    ) as s:
        s.server.call(lambda: s.fake.chaos(fault_rate, seed=seed))
        started = s.start(workers)
        figures["enqueue"] = s.enqueued
        kills: list[float] = []
        next_kill = started + kill_every
        done = False
        while time.monotonic() - started < timeout:
            if s.finished():
                done = True
                break
            if time.monotonic() >= next_kill:
                # Only a worker that has sent requests: killing workers still starting up (a
                # second or more on a loaded machine) would leave nobody working.
                now = time.monotonic()
                working = set(by_worker(s.server.requests()))
                grown = [w for w in s.f.live() if w.key in working]
                if grown:
                    kills.append(rng.choice(grown).kill())
                    s.f.start_worker()
                next_kill = max(next_kill + kill_every, now)
            for worker in s.f.workers:
                if not worker.alive and worker.ended_at is None:  # died by itself
                    worker.ended_at = time.monotonic()
                    figures.setdefault("crashed", []).append(worker.tail(800))
                    s.f.start_worker()
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        working = set(by_worker(s.server.requests()))
        live = s.f.live()
        stops = s.f.stop_all()
        requests = s.listing()
        figures.update(
            seconds=round(elapsed, 1),
            kills=len(kills),
            workers_started=len(s.f.workers),
            requests=len(requests),
            faults=sum(1 for r in requests if r.fault is not None),
            # Workers that had sent requests (the others may still have been starting up).
            sigterm_exit_codes=sorted(
                {c for w, (c, _, _) in zip(live, stops, strict=True) if w.key in working}, key=str
            ),
            sigterm_young=[
                (c, round(age, 2))
                for w, (c, _, age) in zip(live, stops, strict=True)
                if w.key not in working
            ],
            sigterm_max_seconds=round(max((t for _, t, _ in stops), default=0.0), 2),
            failed_threads_seeded=len(s.failing),
        )
        out = s.result(done, figures)
        out["runs_per_second"] = round(out["rows"] / elapsed, 1) if elapsed else 0.0
    return out


def redelivery(
    redis_url: str,
    directory: Path,
    *,
    n_threads: int = 8,
    runs: int = 2000,
    page_size: int = 10,
    latency: float = 0.05,
    lease: float = 3.0,
    concurrency: int = 16,
    kills: int = 1,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """A worker holding every slice is SIGKILLed; a second one, idle until then, must resume
    each of them within 5 s (lease 3 s). Gap per slice: from the kill to the first request for
    that thread afterwards (the server's clock). Repeated ``kills`` times on new workers."""
    figures: dict[str, Any] = {}
    gaps: list[float | None] = []
    with Scenario(
        redis_url=redis_url,
        sink_url=None,
        directory=directory,
        n_threads=0,
        max_runs=0,
        concurrency=concurrency,
        lease=lease,
        page_size=page_size,
        latency=latency,
    ) as s:
        s.thread_ids = s.server.call(lambda: s.fake.seed(n_threads, runs))
        s.start(1)
        holder = s.f.workers[0]
        for round_ in range(kills):
            # Wait until the holder has asked for every unfinished thread's pages.
            def holds_all(w: Worker = holder) -> bool:
                seen = {r.thread_id for r in by_worker(s.listing()).get(w.key, [])}
                pending = set(s.thread_ids) - _done_threads(s.sink_url)
                return bool(pending) and pending <= seen

            if not wait_until(holds_all, 60):
                figures["error"] = f"round {round_}: the worker never held every slice"
                break
            spare = s.f.start_worker()  # idle until the kill: every slice is held
            time.sleep(1.5)
            killed_at = holder.kill()
            pending = set(s.thread_ids) - _done_threads(s.sink_url)
            if not pending:
                break

            def resumed(p: set[str] = pending, k: float = killed_at) -> bool:
                seen = {r.thread_id for r in s.listing() if r.received_at > k}
                return p <= seen

            wait_until(resumed, timeout)
            after = _by_thread(s.listing())
            for tid in pending:
                later = [r.received_at for r in after.get(tid, []) if r.received_at > killed_at]
                gaps.append(round(min(later) - killed_at, 2) if later else None)
            holder = spare
        done, _ = s.wait_finished(timeout)
        s.f.stop_all()
        known = [g for g in gaps if g is not None]
        figures.update(
            gaps=gaps,
            slices=len(gaps),
            not_resumed=sum(1 for g in gaps if g is None),
            max_gap=max(known, default=None),
        )
        return s.result(done, figures)


def _done_threads(sink_url: str) -> set[str]:
    try:
        return {
            str(r[0])
            for r in query(sink_url, "SELECT thread_id FROM threads WHERE state <> 'pending'")
        }
    except Exception:
        return set()


def _by_thread(requests: Iterable[RecordedRequest]) -> dict[str, list[RecordedRequest]]:
    out: dict[str, list[RecordedRequest]] = {}
    for request in requests:
        if request.thread_id is not None:
            out.setdefault(request.thread_id, []).append(request)
    return out


def redis_loss(
    redis: Any,
    directory: Path,
    *,
    empty: bool,
    n_threads: int = 400,
    max_runs: int = 60,
    workers: int = 2,
    concurrency: int = 16,
    page_size: int = 10,
    latency: float = 0.01,
    kill_after: float = 30.0,
    down_for: float = 1.0,
    lease: float = 3.0,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Redis SIGKILLed mid-export and restarted (``redis``: a `RedisServer`, with ``aof=True``
    for the first case), with its data or ``empty``; then, when empty, ``fleet enqueue
    --requeue`` with every thread id. Workers that exit meanwhile are restarted (as a service
    manager would); the figures say how many."""
    figures: dict[str, Any] = {}
    with Scenario(
        redis_url=redis.url,
        sink_url=None,
        directory=directory,
        n_threads=n_threads,
        max_runs=max_runs,
        concurrency=concurrency,
        lease=lease,
        page_size=page_size,
        latency=latency,
    ) as s:
        started = s.start(workers)
        # Mid-export: once a quarter of the threads are done (or after ``kill_after`` s).
        wait_until(lambda: len(_done_threads(s.sink_url)) >= n_threads // 4, kill_after)
        figures["done_at_kill"] = len(_done_threads(s.sink_url))
        figures["mid_export"] = figures["done_at_kill"] < n_threads
        redis.kill()
        time.sleep(down_for)
        redis.restart(empty=empty)
        if empty:
            requeue = s.f.enqueue(s.thread_ids, "--requeue")
            figures["requeue_exit"] = requeue.returncode
            figures["requeue"] = (requeue.stdout.strip() or requeue.stderr.strip())[-500:]
        done, restarted = s.wait_finished(timeout, supervise=True)
        figures["seconds"] = round(time.monotonic() - started, 1)
        figures["workers_restarted"] = restarted
        s.f.stop_all()
        return s.result(done, figures)


def shared_rate(
    redis_url: str,
    directory: Path,
    *,
    k: int,
    concurrency: int = 32,
    seconds: float = 10.0,
    rate: float = 300.0,
    burst: int = 30,
    worker_args: Sequence[str] = (),
    sink_url: str | None = None,
    control: str = "shared",
    headers: str = "bucket",
    timeout: float = 300.0,
) -> dict[str, Any]:
    """K burst workers x ``concurrency`` against a server limited to ``rate``/s (burst
    ``burst``; rate-limit headers in the style ``headers``), about ``seconds`` of work (one
    page per thread). Share of the limit over the busy middle (10th to 90th percentile of
    the successes), and 429s per 100 requests.

    ``control``: the workers' ``--control``, ``"shared"`` (the fleet's, in Redis) or
    ``"local"`` (each worker its own: the figure without the shared control)."""
    with Scenario(
        redis_url=redis_url,
        sink_url=sink_url,
        directory=directory,
        n_threads=int(rate * seconds),
        max_runs=4,
        concurrency=concurrency,
        worker_args=[*worker_args, "--control", control],
        rate_limit=RateLimit(rate, burst=burst, headers=headers),
    ) as s:
        started = s.start(k, burst=True)
        done, _ = s.wait_finished(timeout)
        elapsed = time.monotonic() - started
        s.f.stop_all()
        requests = s.listing()
        ok = [r.received_at for r in requests if r.status == 200]
        throttled = sum(1 for r in requests if r.status == 429)
        figures = {
            "k": k,
            "control": control,
            "seconds": round(elapsed, 1),
            "requests": len(requests),
            "throttled": throttled,
            "share": _window_rate(ok) / rate,
            "per_100": 100 * throttled / len(requests) if requests else 0.0,
        }
        return s.result(done, figures)


#: Seconds after the pause reached Redis within which a request granted just before it may
#: still arrive (sent in the same step as its grant's answer, then loopback and the server's
#: own event loop).
KNOWN_SLACK = 0.005


def _pause_field(redis_url: str, export: str) -> bytes | None:
    with redis.Redis.from_url(redis_url) as client:
        value: bytes | None = client.hget(f"aiorunlist:fleet:{{{export}}}", "pause")
        return value


def _pause_recorded(
    redis_url: str, export: str, seconds: float, before: bytes | None, timeout: float = 5.0
) -> float | None:
    """When the fleet's next pause of ``seconds`` reached Redis (the field changed from
    ``before``), on this machine's monotonic clock (the fake server's); ``None``: never."""
    key = f"aiorunlist:fleet:{{{export}}}"
    with redis.Redis.from_url(redis_url) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = client.hget(key, "pause")
            if value is not None and value != before:
                # Redis's clock is the wall clock: map it onto the monotonic one.
                offset = time.time() - time.monotonic()
                return float(value) - seconds - offset
            time.sleep(0.001)
        return None


def shared_pause(
    redis_url: str,
    directory: Path,
    *,
    k: int = 2,
    concurrency: int = 32,
    n_threads: int = 1500,
    latency: float = 0.005,
    after: float = 1.5,
    sink_url: str | None = None,
    worker_args: Sequence[str] = (),
    timeout: float = 300.0,
) -> dict[str, Any]:
    """One 429 with ``retry-after-ms: 500`` while K workers list: the requests any worker
    sent that arrived within 450 ms after it left the server (server timestamps), and when
    the pause reached Redis."""
    with Scenario(
        redis_url=redis_url,
        sink_url=sink_url,
        directory=directory,
        n_threads=n_threads,
        max_runs=30,
        concurrency=concurrency,
        page_size=10,
        latency=latency,
        worker_args=worker_args,
    ) as s:
        s.start(k, burst=True)
        s.busy(after)
        old_pause = _pause_field(redis_url, EXPORT)
        fault = Fault(status=429, headers={"retry-after-ms": "500"})
        s.server.call(lambda: s.fake.add_fault(fault))
        known = _pause_recorded(redis_url, EXPORT, 0.5, old_pause)
        done, _ = s.wait_finished(timeout)
        s.f.stop_all()
        requests = s.listing()
        hit = [r for r in requests if r.status == 429 and r.fault is not None]
        out = s.result(done)
        if not hit:
            out["error"] = "the 429 was never sent"
            return out
        # From when the 429 left the server: a client cannot answer it before that.
        t = hit[0].answered_at or hit[0].received_at
        inside = sorted(r.received_at - t for r in requests if t < r.received_at <= t + 0.45)
        before = sum(1 for r in requests if t - 0.45 <= r.received_at < t)
        later = [r.received_at - t for r in requests if r.received_at > t]
        if known is not None:
            # The fleet knew of the pause from ``known`` on (Redis's clock): a request that
            # arrived before that was sent before any worker could have known.
            out["recorded_after_ms"] = round(1000 * (known - t), 1)
            out["arrived_once_known"] = sum(1 for d in inside if t + d > known + KNOWN_SLACK)
        out.update(
            within_450ms=len(inside),
            in_the_450ms_before=before,
            latest_within_ms=round(1000 * inside[-1], 1) if inside else None,
            within_first_20ms=sum(1 for d in inside if d <= 0.02),
            first_after_ms=round(1000 * min(later), 1) if later else None,
            first_after_20ms_ms=(
                round(1000 * min(d for d in later if d > 0.02), 1)
                if any(d > 0.02 for d in later)
                else None
            ),
        )
        return out


def outage(
    redis_url: str,
    directory: Path,
    *,
    k: int = 2,
    concurrency: int = 16,
    n_threads: int = 1000,
    seconds: float = 10.0,
    after: float = 1.0,
    budget: int = 500,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Every request answers 503 for ``seconds``: the fleet's requests during the outage,
    and whether every thread completes afterwards."""
    with Scenario(
        redis_url=redis_url,
        sink_url=None,
        directory=directory,
        n_threads=n_threads,
        max_runs=60,
        concurrency=concurrency,
        page_size=10,
        latency=0.005,
    ) as s:
        s.start(k)
        s.busy(after)

        def begin() -> float:
            s.fake.outage(seconds)
            return time.monotonic()

        start = s.server.call(begin)
        done, restarted = s.wait_finished(timeout + seconds, supervise=True)
        s.f.stop_all()
        requests = s.listing()
        # A retry asks for the same page (thread and query) as an earlier request.
        seen: set[tuple[str | None, tuple[tuple[str, str], ...]]] = set()
        retries = firsts = 0
        for r in requests:
            page = (r.thread_id, tuple(sorted(r.query.items())))
            if start <= r.received_at < start + seconds:
                if page in seen:
                    retries += 1
                else:
                    firsts += 1
            seen.add(page)
        during = [r for r in requests if start <= r.received_at < start + seconds]
        figures = {
            "workers_restarted": restarted,
            "during_outage": len(during),
            "retries_during": retries,
            "first_attempts_during": firsts,
            "answered_503": sum(1 for r in during if r.status == 503),
            # The shared budget's retries (5 tokens each), one first try per slot, and once
            # the budget is spent, one request of the fleet a second.
            "bound": budget // 5 + k * concurrency + math.ceil(seconds / PROBE_INTERVAL),
        }
        return s.result(done, figures)


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that exited and were waited
    for, with those of their own waited-for children (a worker's SQLite writer process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_cpu() -> float:
    """CPU seconds (user + system) of this process: the fake server's thread, mostly."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of a running process so far, from ``/proc`` (``None``
    where it cannot be read)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RedisCommands:
    """Counts the commands a Redis server runs (those a script runs included), through a
    connection of its own: :meth:`since` is the count since the first call."""

    def __init__(self, redis_url: str) -> None:
        self._client = redis.Redis.from_url(redis_url, single_connection_client=True)
        self._start = self._now()

    def _now(self) -> int:
        return int(self._client.info("stats")["total_commands_processed"])

    def since(self) -> int:
        """Commands run since this counter was made (without its own)."""
        try:
            return self._now() - self._start - 1
        finally:
            self._client.close()


def _per_1000(cpu: float | None, requests: int) -> float | None:
    return None if cpu is None or not requests else round(1000 * cpu / requests, 2)


def scaling(
    redis_url: str,
    directory: Path,
    *,
    k: int,
    concurrency: int = 32,
    latency: float = 0.1,
    seconds: float = 8.0,
    sink_url: str | None = None,
    timeout: float = 300.0,
    redis_pid: int | None = None,
) -> dict[str, Any]:
    """K burst workers against a server ``latency`` away with no limit: requests answered per
    second over the busy middle of the export, and the CPU seconds per 1,000 requests the
    workers spent (with their SQLite writer processes; exact, from the kernel's accounting of
    the waited-for workers), the fake server (this process) and redis-server (``redis_pid``).
    ``worker_listing_cpu_per_1000`` leaves out what a worker spends whatever it lists (a burst
    worker that finds nothing to do, run afterwards), which weighs on short runs.

    CPU per request depends far less on what else the machine runs than throughput does.
    """
    with Scenario(
        redis_url=redis_url,
        sink_url=sink_url,
        directory=directory,
        n_threads=int(k * concurrency / latency * seconds / 2),  # about two pages each
        max_runs=8,
        concurrency=concurrency,
        page_size=2,
        latency=latency,
    ) as s:
        s.enqueue()
        # Every child waited for from here to stop_all() is a worker (the enqueue command
        # was waited for above; redis-server runs on).
        children, own = _children_cpu(), _own_cpu()
        redis_before = None if redis_pid is None else process_cpu(redis_pid)
        commands = RedisCommands(redis_url)
        started = time.monotonic()
        for _ in range(k):
            s.f.start_worker(burst=True)
        done, _ = s.wait_finished(timeout)
        elapsed = time.monotonic() - started
        s.f.stop_all()
        workers_cpu = _children_cpu() - children
        commands_run = commands.since()
        server_cpu = _own_cpu() - own
        redis_after = None if redis_pid is None else process_cpu(redis_pid)
        redis_cpu = (
            None if redis_before is None or redis_after is None else redis_after - redis_before
        )
        listing = s.listing()
        ok = [r.received_at for r in listing if r.status == 200]
        # What a worker costs whatever it lists (starting: imports, the sink's writer, Redis;
        # stopping): one more burst worker, finding nothing left to do.
        before_idle = _children_cpu()
        idle = s.f.start_worker(burst=True)
        idle.process.wait(timeout=60)
        start_cpu = _children_cpu() - before_idle
        figures = {
            "k": k,
            "seconds": round(elapsed, 1),
            "requests_per_second": round(_window_rate(ok), 1),
            "ideal": round(k * concurrency / latency, 1),
            "requests": len(listing),
            "worker_cpu_seconds": round(workers_cpu, 3),
            "worker_start_cpu_seconds": round(start_cpu, 3),
            "worker_cpu_per_1000": _per_1000(workers_cpu, len(listing)),
            # The same without what each worker spends whatever it lists.
            "worker_listing_cpu_per_1000": _per_1000(
                max(0.0, workers_cpu - k * start_cpu), len(listing)
            ),
            "server_cpu_per_1000": _per_1000(server_cpu, len(listing)),
            "redis_cpu_per_1000": _per_1000(redis_cpu, len(listing)),
            # Commands Redis ran (those its scripts ran included) per request.
            "redis_commands_per_request": round(commands_run / max(1, len(listing)), 2),
        }
        return s.result(done, figures)


def fatal(
    redis_url: str,
    directory: Path,
    *,
    k: int = 2,
    concurrency: int = 16,
    n_threads: int = 1000,
    after: float = 1.0,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """A 401 from some moment on: how long after the first 401 each worker still sent
    requests, how the workers exited, and what ``fleet status --check`` says."""
    with Scenario(
        redis_url=redis_url,
        sink_url=None,
        directory=directory,
        n_threads=n_threads,
        max_runs=60,
        concurrency=concurrency,
        page_size=10,
        latency=0.005,
    ) as s:
        s.start(k)
        s.busy(after)
        s.server.call(lambda: s.fake.outage(status=401, error_code="invalid_api_key"))
        exited = wait_until(lambda: not s.f.live(), timeout)
        time.sleep(0.5)
        codes = [w.process.poll() for w in s.f.workers]
        s.f.stop_all()
        requests = s.listing()
        first = min((r.received_at for r in requests if r.status == 401), default=None)
        per_worker = {
            key: max(r.received_at for r in reqs) - first if first is not None else None
            for key, reqs in by_worker(requests).items()
        }
        status = s.f.status("--check")
        return {
            "workers_exited": exited,
            "exit_codes": codes,
            "last_request_after_401": {
                k_: round(v, 3) if v is not None else None for k_, v in per_worker.items()
            },
            "max_after_401": round(
                max((v for v in per_worker.values() if v is not None), default=0.0), 3
            ),
            "status_check_exit": status.returncode,
            "status_check_output": (status.stdout + status.stderr).strip()[-800:],
            "logs": s.f.logs(),
        }
