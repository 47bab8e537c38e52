"""The fleet: ``aiorunlist fleet enqueue | worker | status`` against a real redis-server, a real
SQLite file or PostgreSQL database, and a fake server in a background thread; workers run as
real subprocesses (SIGTERM, exit codes, several at once)."""

from __future__ import annotations

import builtins
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("streaq", reason="the fleet's queue needs streaq (Python 3.11+)")

import redis

from aiorunlist.fleet import check_export_name
from aiorunlist.fleet._export import slice_id
from aiorunlist.sinks._base import mask_url
from tests.conftest import API_KEY
from tests.postgres import PostgresServer
from tests.redis_server import RedisServer
from tests.test_cli import PYTHON, LiveServer, invoke, subprocess_env
from tests.test_sinks import assert_all_stored, query

EXPORT = "test-export"


@pytest.fixture
def live() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def fleet_args(
    command: str, rds: RedisServer, sink: str, *args: str, export: str = EXPORT
) -> list[str]:
    return ["fleet", command, "--export", export, "--redis", rds.url, "--sink", sink, *args]


def enqueue(rds: RedisServer, sink: str, *args: str) -> dict[str, int]:
    result = invoke([*fleet_args("enqueue", rds, sink, "--json"), *args])
    assert result.exit_code == 0, result.stderr
    counts: dict[str, int] = json.loads(result.stdout)
    return counts


def status(rds: RedisServer, sink: str) -> dict[str, Any]:
    result = invoke(fleet_args("status", rds, sink, "--json"))
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def start_worker(
    live: LiveServer,
    rds: RedisServer,
    sink: str,
    *args: str,
    key: str = API_KEY,
    export: str = EXPORT,
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - this package's own command line
        [*PYTHON, *fleet_args("worker", rds, sink, *args, export=export)],
        env=subprocess_env(OPENAI_API_KEY=key, OPENAI_BASE_URL=live.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"the worker did not exit within {timeout} s: {err.decode()[-2000:]}")
    return process.returncode, err.decode()


def wait_for_runs(sink: str, runs: int, timeout: float = 30) -> None:
    """Wait until the workers stored at least ``runs`` runs in the sink."""
    deadline = time.monotonic() + timeout
    while query(sink, "SELECT count(*) FROM runs")[0][0] < runs:
        assert time.monotonic() < deadline, f"the workers stored fewer than {runs} runs"
        time.sleep(0.05)


def queued_ids(rds: RedisServer) -> set[str]:
    """The task ids in the export's queue (live and delayed)."""
    client = redis.Redis.from_url(rds.url, decode_responses=True)
    try:
        prefix = f"streaq:aiorunlist:{EXPORT}:queues:"
        entries: Any = client.xrange(prefix + "normal")
        delayed: Any = client.zrange(prefix + "delayed:normal", 0, -1)
        return {str(fields["task_id"]) for _, fields in entries} | {str(t) for t in delayed}
    finally:
        client.close()


def test_enqueue_is_idempotent_and_counts(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tids = live.seed(6, 5)
    assert enqueue(redis_server, sqlite_url, *tids[:4]) == {
        "added": 4,
        "already_known": 0,
        "already_done": 0,
        "requeued": 0,
    }
    again = enqueue(redis_server, sqlite_url, *tids)
    assert (again["added"], again["already_known"]) == (2, 4)
    assert queued_ids(redis_server) == {slice_id(tid, None) for tid in tids}
    assert query(sqlite_url, "SELECT count(*) FROM threads WHERE state = 'pending'") == [(6,)]
    # The plain-text form, from a file, with the variables instead of the options.
    ids = Path(sqlite_path := sqlite_url[len("sqlite:///") :]).with_suffix(".txt")
    ids.write_text("\n".join(tids) + "\n")
    result = invoke(["fleet", "enqueue", "--export", EXPORT, "--threads-from", str(ids)])
    assert result.exit_code == 2  # no --redis / --sink
    monkeypatch.setenv("AIORUNLIST_REDIS_URL", redis_server.url)
    monkeypatch.setenv("AIORUNLIST_SINK", sqlite_url)
    result = invoke(["fleet", "enqueue", "--export", EXPORT, "--threads-from", str(ids)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "added 0, already known 6, already done 0\n"
    assert Path(sqlite_path).exists()
    # The other commands with a --sink read the same variable.
    summary = invoke(["summary"])
    assert summary.exit_code == 0, summary.stderr
    assert "runs" in summary.stdout


def test_other_settings_are_refused_with_exit_code_2(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str, tmp_path: Path
) -> None:
    tids = live.seed(2, 3)
    assert enqueue(redis_server, sqlite_url, *tids, "--page-size", "10")["added"] == 2
    for args in (["--page-size", "20"], ["--order", "asc"], ["--slice-pages", "3"]):
        result = invoke([*fleet_args("enqueue", redis_server, sqlite_url), *args, *tids])
        assert result.exit_code == 2
        assert "was created with" in result.stderr
    other = f"sqlite:///{tmp_path / 'other.db'}"
    result = invoke([*fleet_args("enqueue", redis_server, other), *tids])
    assert result.exit_code == 2
    assert "sink" in result.stderr
    # A worker of an export Redis does not know, or for another database: refused at once.
    for export, sink in (("nope", sqlite_url), (EXPORT, other)):
        code, err = finish(start_worker(live, redis_server, sink, export=export))
        assert code == 2, err
    code, err = finish(
        subprocess.Popen(  # noqa: S603
            [*PYTHON, *fleet_args("worker", redis_server, sqlite_url)],
            env=subprocess_env(OPENAI_BASE_URL=live.url),
            stderr=subprocess.PIPE,
        )
    )
    assert code == 2
    assert "no API key" in err
    unreachable = invoke(
        [
            "fleet",
            "status",
            "--export",
            EXPORT,
            "--redis",
            "redis://127.0.0.1:1/0",
            "--sink",
            sqlite_url,
        ]
    )
    assert unreachable.exit_code == 2
    assert "cannot use Redis" in unreachable.stderr
    # Status of an export Redis does not know (a typo), or with another database: no figures
    # of something else, and --check does not pass.
    for export, sink, says in (("test-exprot", sqlite_url, "no export"), (EXPORT, other, "sink")):
        for flag in ("--json", "--check"):
            looked = invoke(fleet_args("status", redis_server, sink, flag, export=export))
            assert looked.exit_code == 2, looked.stdout
            assert says in looked.stderr
    with pytest.raises(ValueError, match="export name"):
        check_export_name("a:b")
    bad_id = invoke([*fleet_args("enqueue", redis_server, f"sqlite:///{tmp_path / 'n.db'}"), ""])
    assert bad_id.exit_code == 2
    assert not (tmp_path / "n.db").exists()  # refused before anything was created
    # In a file, after more than a batch of good ones: the line named, nothing created.
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"thread_{i}\n" for i in range(600)) + "# the last one\n..\n")
    bad_line = invoke(
        [
            *fleet_args("enqueue", redis_server, f"sqlite:///{tmp_path / 'n.db'}", export="n"),
            "--threads-from",
            str(ids),
        ]
    )
    assert bad_line.exit_code == 2
    assert f"{ids} line 602: " in bad_line.stderr
    assert not (tmp_path / "n.db").exists()
    assert settings_in_redis(redis_server, "n") == {}


def settings_in_redis(rds: RedisServer, export: str = EXPORT) -> dict[str, str]:
    client = redis.Redis.from_url(rds.url, decode_responses=True)
    try:
        stored: Any = client.hgetall(f"aiorunlist:export:{{{export}}}")
        return dict(stored)
    finally:
        client.close()


def test_the_sinks_settings_decide_before_redis_is_written(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str
) -> None:
    """A database that holds an export decides a new export's settings: other ones are
    refused with nothing written to Redis (the name stays usable), and an ``enqueue
    --requeue`` after Redis came back empty takes them from the database."""
    tids = live.seed(3, 3)
    enqueue(redis_server, sqlite_url, *tids, "--page-size", "5", "--slice-pages", "3")
    other = invoke(
        [
            *fleet_args("enqueue", redis_server, sqlite_url, export="other"),
            "--page-size",
            "20",
            *tids,
        ]
    )
    assert other.exit_code == 2
    assert settings_in_redis(redis_server, "other") == {}
    assert "5, not 20" in other.stderr
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    counts = enqueue(redis_server, sqlite_url, "--requeue")  # no settings given
    assert counts["requeued"] == 3
    stored = settings_in_redis(redis_server)
    assert (stored["order"], stored["page_size"], stored["slice_pages"]) == ("desc", "5", "3")


def test_a_password_in_the_sink_url_is_never_shown_nor_part_of_its_identity(
    live: LiveServer, redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    """``?password=`` (or ``passfile=``) in a PostgreSQL URL: stored and shown masked, and a
    rotated (or removed) password still names the export's database."""
    url = postgres_server.new_database()
    tids = live.seed(2, 3)
    enqueue(redis_server, f"{url}?password=s3cret-one&application_name=x", *tids)
    assert "s3cret" not in json.dumps(settings_in_redis(redis_server))
    for rotated in (f"{url}?application_name=x&password=s3cret-two", f"{url}?application_name=x"):
        looked = invoke(fleet_args("status", redis_server, rotated, "--json"))
        assert looked.exit_code == 0, looked.stderr
        assert "s3cret" not in looked.stdout
        assert json.loads(looked.stdout)["settings"]["sink"].endswith(
            "?password=***&application_name=x"
        )
    other = f"{postgres_server.new_database()}?passfile=/s3cret/pgpass&password=s3cret-three"
    refused = invoke([*fleet_args("enqueue", redis_server, other), *tids])
    assert refused.exit_code == 2
    assert "s3cret" not in refused.stderr
    assert "passfile=***&password=***" in refused.stderr
    assert mask_url("postgresql://u:pw@h/db?sslpassword=k#f") == (
        "postgresql://u:***@h/db?sslpassword=***#f"
    )


def test_a_small_export_completes_with_every_run_once(
    live: LiveServer, redis_server: RedisServer, sink_url: str
) -> None:
    """Two workers at once, slices of 2 pages of 5 runs: every run stored exactly once, as
    the server sent it; status says so."""
    tids = live.seed(12, lambda i: (i * 7) % 31)
    enqueue(redis_server, sink_url, *tids, "--page-size", "5", "--slice-pages", "2")
    workers = [
        start_worker(live, redis_server, sink_url, "--burst", "--concurrency", "4")
        for _ in range(2)
    ]
    for process in workers:
        code, err = finish(process)
        assert code == 0, err
    assert_all_stored(live, sink_url, tids)
    data = status(redis_server, sink_url)
    assert {k: data[k] for k in ("threads_done", "threads_pending", "threads_failed")} == {
        "threads_done": 12,
        "threads_pending": 0,
        "threads_failed": 0,
    }
    assert data["runs"] == sum(len(live.server.threads[t]) for t in tids)
    assert data["queued"] == 0
    assert data["stopped"] is None
    assert set(data) >= {"rate", "paused_for", "workers", "stopped", "runs_per_second"}
    check = invoke(fleet_args("status", redis_server, sink_url, "--check"))
    assert check.exit_code == 0
    assert "threads done 12, pending 0, failed 0" in check.stdout
    # Enqueued again once done: nothing added.
    assert enqueue(redis_server, sink_url, *tids)["already_done"] == 12


@pytest.mark.slow
def test_sigterm_hands_back_the_rest_and_another_worker_finishes(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str
) -> None:
    """SIGTERM mid-export: the worker exits 0 within 10 s, holding nothing (no slice left
    pending with it); the queue holds each unfinished thread's slice for where the sink says
    it stands (``thread:cursor``), and a second worker completes the export."""
    tids = live.seed(30, 40)
    live.do(lambda: setattr(live.server, "latency", 0.1))
    enqueue(redis_server, sqlite_url, *tids, "--page-size", "5", "--slice-pages", "3")
    process = start_worker(live, redis_server, sqlite_url, "--concurrency", "6")
    wait_for_runs(sqlite_url, 60)
    process.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    code, err = finish(process, timeout=15)
    assert code == 0, err
    assert time.monotonic() - sent < 10
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        pending = client.xpending(f"streaq:aiorunlist:{EXPORT}:queues:normal", "workers")
    finally:
        client.close()
    assert pending["pending"] == 0
    states = query(sqlite_url, "SELECT thread_id, state, cursor FROM threads")
    unfinished = {slice_id(tid, cursor) for tid, state, cursor in states if state != "done"}
    assert unfinished
    assert queued_ids(redis_server) == unfinished
    live.do(lambda: setattr(live.server, "latency", 0.0))
    code, err = finish(start_worker(live, redis_server, sqlite_url, "--burst"))
    assert code == 0, err
    assert_all_stored(live, sqlite_url, tids)


@pytest.mark.slow
def test_a_sigterm_while_starting_or_a_second_one_never_kills_a_worker(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str
) -> None:
    """A SIGTERM while the worker starts (here: opening a database that does not answer)
    stops it with exit code 0, not killed by the signal; so does a second SIGTERM (or
    Ctrl-C) after the first, mid-page. Nothing is lost: a last worker finishes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(30)
        silent = f"postgresql://u@127.0.0.1:{listener.getsockname()[1]}/db"
        client = redis.Redis.from_url(redis_server.url)
        try:
            client.hset(
                "aiorunlist:export:{stuck}",
                mapping={"order": "desc", "page_size": "100", "slice_pages": "10", "sink": silent},
            )
        finally:
            client.close()
        stuck = start_worker(live, redis_server, silent, export="stuck")
        connection, _ = listener.accept()  # the worker is opening its database
        with connection:
            stuck.send_signal(signal.SIGTERM)
            code, err = finish(stuck, timeout=15)
    assert code == 0, err
    tids = live.seed(8, 30)
    live.do(lambda: setattr(live.server, "latency", 0.2))
    enqueue(redis_server, sqlite_url, *tids, "--page-size", "5", "--slice-pages", "2")
    worker = start_worker(live, redis_server, sqlite_url, "--concurrency", "4")
    wait_for_runs(sqlite_url, 5)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.05)  # the pages in flight take 0.2 s
    worker.send_signal(signal.SIGTERM)
    worker.send_signal(signal.SIGINT)
    code, err = finish(worker, timeout=20)
    assert code == 0, err
    live.do(lambda: setattr(live.server, "latency", 0.0))
    code, err = finish(start_worker(live, redis_server, sqlite_url, "--burst"))
    assert code == 0, err
    assert_all_stored(live, sqlite_url, tids)


def test_a_slice_that_loses_to_a_writer_that_stops_midway_is_taken_up_again(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str
) -> None:
    """While a slice waits for its first page, another writer (a sync_thread of the user's)
    stores that page and stops: the slice loses the compare-and-set, and the thread is
    still finished (not left pending with nothing queued)."""
    from aiorunlist.sinks import open_sink, sync_thread
    from aiorunlist.testing import Fault
    from tests.conftest import fast_client

    (tid,) = live.seed(1, 30)
    enqueue(redis_server, sqlite_url, tid, "--page-size", "5")
    live.do(lambda: live.server.add_fault(Fault(delay=2.0, thread_id=tid)))
    worker = start_worker(live, redis_server, sqlite_url, "--burst", "--lease", "1")
    deadline = time.monotonic() + 30
    while not live.server.requests:  # the slice's first request, held 2 s
        assert time.monotonic() < deadline, "the worker sent nothing"
        time.sleep(0.05)

    async def other_writer() -> None:
        async with (
            fast_client(live.url) as client,
            await open_sink(sqlite_url, settings={"order": "desc", "page_size": "5"}) as sink,
        ):
            result = await sync_thread(client, sink, tid, page_size=5, max_pages=1)
            assert (result.pages, result.more) == (1, True)

    anyio.run(other_writer)
    code, err = finish(worker)
    assert code == 0, err
    assert_all_stored(live, sqlite_url, [tid])


@pytest.mark.slow
@pytest.mark.parametrize("control", ["shared", "local"])
def test_a_401_stops_every_worker_and_status_check_says_why(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str, control: str
) -> None:
    """One worker with a rejected key stops the whole fleet: the good worker stops taking
    work too (exit 1, the reason named, never the key), and ``status --check`` exits 1. So
    it does when each worker has its own traffic control (``--control local``): the stop
    goes through Redis all the same."""
    tids = live.seed(40, 30)
    live.do(lambda: setattr(live.server, "latency", 0.05))
    enqueue(redis_server, sqlite_url, *tids, "--page-size", "5", "--slice-pages", "2")
    good = start_worker(live, redis_server, sqlite_url, "--concurrency", "4", "--control", control)
    wait_for_runs(sqlite_url, 20)
    bad_key = "sk-rejected-key-0123456789"
    bad = start_worker(
        live, redis_server, sqlite_url, "--concurrency", "4", "--control", control, key=bad_key
    )
    code, err = finish(bad, timeout=20)
    assert code == 1, err
    stopped = time.monotonic()
    assert "AuthenticationError" in err
    assert bad_key not in err
    code, err = finish(good, timeout=20)
    assert code == 1, err
    assert time.monotonic() - stopped < 10
    assert "the fleet is stopped" in err
    check = invoke(fleet_args("status", redis_server, sqlite_url, "--check"))
    assert check.exit_code == 1
    assert "401" in check.stderr
    assert status(redis_server, sqlite_url)["stopped"].startswith("AuthenticationError")
    # Nothing was marked failed, and nothing is lost: every unfinished thread is queued.
    assert query(sqlite_url, "SELECT count(*) FROM threads WHERE state = 'failed'") == [(0,)]
    unfinished = {
        tid
        for tid, state in query(sqlite_url, "SELECT thread_id, state FROM threads")
        if state != "done"
    }
    assert {task.rsplit(":", 1)[0] for task in queued_ids(redis_server)} == unfinished
    # The cause fixed, the stop cleared: a worker finishes the export.
    resumed = invoke(["fleet", "resume", "--export", EXPORT, "--redis", redis_server.url])
    assert resumed.exit_code == 0
    assert resumed.stdout == f"export {EXPORT}: stop cleared\n"
    live.do(lambda: setattr(live.server, "latency", 0.0))
    code, err = finish(start_worker(live, redis_server, sqlite_url, "--burst"))
    assert code == 0, err
    assert_all_stored(live, sqlite_url, tids)
    assert invoke(fleet_args("status", redis_server, sqlite_url, "--check")).exit_code == 0


@pytest.mark.slow
def test_requeue_after_redis_lost_everything_completes_the_export(
    live: LiveServer, redis_server: RedisServer, sink_url: str
) -> None:
    """FLUSHALL mid-export (a Redis restarted empty): ``enqueue --requeue`` rebuilds the queue
    from the sink's threads, and the export completes, every run once."""
    tids = live.seed(20, 25)
    live.do(lambda: setattr(live.server, "latency", 0.05))
    enqueue(redis_server, sink_url, *tids, "--page-size", "5", "--slice-pages", "2")
    process = start_worker(live, redis_server, sink_url, "--concurrency", "4")
    wait_for_runs(sink_url, 50)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process, timeout=15)
    assert code == 0, err
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    code, err = finish(start_worker(live, redis_server, sink_url, "--burst"))
    assert code == 2  # the export is gone from Redis: say how to rebuild it
    assert "--requeue" in err
    counts = enqueue(redis_server, sink_url, "--requeue", "--page-size", "5", "--slice-pages", "2")
    assert counts["requeued"] == len(
        query(sink_url, "SELECT thread_id FROM threads WHERE state = 'pending'")
    )
    assert counts["requeued"] > 0
    live.do(lambda: setattr(live.server, "latency", 0.0))
    code, err = finish(start_worker(live, redis_server, sink_url, "--burst", "--concurrency", "8"))
    assert code == 0, err
    assert_all_stored(live, sink_url, tids)


def test_the_fleet_imports_without_streaq() -> None:
    """``import aiorunlist.fleet`` works where streaq cannot be installed; using the queue
    then says what to install."""
    code = (
        "import sys; sys.modules['streaq'] = None\n"
        "import aiorunlist, aiorunlist.fleet\n"
        "try:\n"
        "    aiorunlist.fleet.open_queue('x', 'redis://127.0.0.1:1')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(  # noqa: S603
        [sys.executable, "-W", "error", "-c", code], capture_output=True, check=True, text=True
    ).stdout
    assert "streaq" in out
    assert "pip install" in out


@pytest.mark.slow
def test_workers_outlive_redis_killed_and_restarted_with_aof(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str
) -> None:
    """Redis SIGKILLed mid-export and started again from its append-only file: the workers
    start again once it answers (leaving nothing unclosed behind them), and the export
    completes with every run once."""
    redis_server.kill()
    redis_server.start("--appendonly", "yes")
    tids = live.seed(20, 25)
    live.do(lambda: setattr(live.server, "latency", 0.05))
    enqueue(redis_server, sqlite_url, *tids, "--page-size", "5", "--slice-pages", "2")
    workers = [
        start_worker(
            live, redis_server, sqlite_url, "--burst", "--lease", "2", "--concurrency", "4"
        )
        for _ in range(2)
    ]
    wait_for_runs(sqlite_url, 60)
    redis_server.kill()
    time.sleep(1.0)
    redis_server.start("--appendonly", "yes")
    for process in workers:
        code, err = finish(process)
        assert code == 0, err
        assert "starts again" in err
        # Every start that Redis cut short closed what it opened.
        assert "ResourceWarning" not in err, err
        assert "Exception ignored" not in err, err
    assert_all_stored(live, sqlite_url, tids)


@pytest.mark.anyio
async def test_enqueue_checks_a_list_of_ids_before_writing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from aiorunlist.fleet import enqueue as add

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    ids = [f"thread_{i}" for i in range(600)] + [".."]
    with pytest.raises(ValueError, match="not a thread id"):
        await add(EXPORT, redis_server.url, url, ids)
    with pytest.raises(TypeError, match="not one string"):
        await add(EXPORT, redis_server.url, url, "thread_1")
    assert not (tmp_path / "runs.db").exists()
    assert settings_in_redis(redis_server) == {}


def test_the_worker_overrides_match_streaq_s_methods() -> None:
    """The worker replaces some of streaq's Worker methods (streaq is pinned below 8): a
    release that renamed or added a parameter would make streaq's own call of them fail
    inside its shielded finish, every slice then redelivered after each lease."""
    import inspect

    import streaq

    from aiorunlist.fleet._queue import _StreaqWorker

    overridden = [
        name
        for name, value in vars(_StreaqWorker).items()
        if callable(value) and not name.startswith("__") and hasattr(streaq.Worker, name)
    ]
    assert "finish_task" in overridden
    for name in overridden:
        ours = list(inspect.signature(getattr(_StreaqWorker, name)).parameters)
        theirs = list(inspect.signature(getattr(streaq.Worker, name)).parameters)
        assert ours == theirs, (name, ours, theirs)


def test_a_local_control_has_the_shared_one_s_settings() -> None:
    """Regression: ``--control local`` learned a pace from 429s (a client's default), which
    the shared control never does, so the comparison differed in more than the sharing."""
    from aiorunlist.fleet import WorkerOptions

    for rate, workers in ((None, 1), (None, 4), (100.0, 4)):
        shared = WorkerOptions(workers=workers, rate=rate).pacing()
        local = WorkerOptions(workers=workers, rate=rate, control="local").pacing()
        assert local is not None
        assert not local.adaptive
        expected = None if rate is None else rate / workers
        assert local.requests_per_second == expected
        assert (shared.requests_per_second if shared else None) == rate


@pytest.mark.anyio
async def test_a_worker_with_bad_options_is_refused_before_anything(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from aiorunlist.fleet import run_worker

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"control": "both"}, "control must be 'shared' or 'local', got 'both'"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"workers": 0}, "workers must be an integer >= 1"),
        ({"lease": 0.5}, "lease must be a number of seconds >= 1"),
        ({"rate": 0}, "rate must be a number of requests per second > 0"),
        ({"rate": float("nan")}, "rate must be a number of requests per second > 0"),
        ({"rate": True}, "rate must be a number of requests per second > 0"),
    ]
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            await run_worker(EXPORT, redis_server.url, url, **options)
    assert not (tmp_path / "runs.db").exists()
    assert settings_in_redis(redis_server) == {}


@pytest.mark.anyio
async def test_the_worker_in_process_finishes_a_burst_and_reports(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The library's entry points in one process: enqueue from an async iterable, run_worker
    with burst, fleet_status; a thread the server does not know is failed, not retried."""
    from aiorunlist.fleet import enqueue as add
    from aiorunlist.fleet import fleet_status, resume, run_worker
    from aiorunlist.testing import FakeServer, Fault
    from tests.conftest import fast_client

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    async with FakeServer(api_key=API_KEY) as server:
        tids = server.seed(8, lambda i: i * 3)

        async def ids() -> Any:
            for tid in [*tids, "thread_missing"]:
                yield tid

        # Two 503s no retry cures (no retries here): the slice is queued again, not failed.
        server.add_fault(Fault(status=503, thread_id=tids[5], times=2))
        counts = await add(EXPORT, redis_server.url, url, ids(), page_size=4, slice_pages=1)
        assert (counts.added, counts.known, counts.done) == (9, 0, 0)
        result = await run_worker(
            EXPORT,
            redis_server.url,
            url,
            concurrency=3,
            burst=True,
            client=lambda control: fast_client(server.base_url, control=control, max_retries=0),
        )
        assert result.stopped is None
        assert result.runs == sum(len(server.threads[t]) for t in tids)
        assert result.slices > 9  # threads of more than one page went on in new slices
        state = await fleet_status(EXPORT, redis_server.url, url)
        assert (state.threads_done, state.threads_pending, state.threads_failed) == (8, 0, 1)
        assert state.runs == result.runs
        assert state.runs_per_second > 0
        assert state.pages_per_second > 0
        assert state.queued == 0
        assert state.settings is not None
        assert (state.settings.page_size, state.settings.slice_pages) == (4, 1)
        assert server.pending_faults == []
        assert not await resume(EXPORT, redis_server.url)
    # Every slice ended: nothing of one is left in Redis (its data, its tries, a result), and
    # the stream holds no entry.
    rds = redis.Redis.from_url(redis_server.url)
    try:
        prefix = f"streaq:aiorunlist:{EXPORT}"
        left = sorted(k.decode() for k in rds.scan_iter(match=f"{prefix}:task:*"))
        assert left == []
        assert rds.scard(f"{prefix}:index:running") == 0
        assert rds.xlen(f"{prefix}:queues:normal") == 0
    finally:
        rds.close()
        again = await add(EXPORT, redis_server.url, url, tids)
        assert (again.added, again.done) == (0, 8)


def test_the_worker_command_in_process(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str
) -> None:
    """``fleet worker`` run in this process: exit 0 with --burst, 1 on a rejected key."""
    tids = live.seed(4, 12)
    enqueue(redis_server, sqlite_url, *tids, "--page-size", "5")
    common = ["--base-url", live.url, "--max-retries", "0", "--concurrency", "2"]
    bad = invoke(
        [*fleet_args("worker", redis_server, sqlite_url), *common, "--api-key", "sk-bad-key-99"]
    )
    assert bad.exit_code == 1
    assert "the fleet is stopped: AuthenticationError" in bad.stderr
    assert (
        invoke(["fleet", "resume", "--export", EXPORT, "--redis", redis_server.url]).exit_code == 0
    )
    good = invoke(
        [*fleet_args("worker", redis_server, sqlite_url), *common, "--api-key", API_KEY, "--burst"]
    )
    assert good.exit_code == 0, good.stderr
    assert "worker stopped" in good.stderr
    assert "the slice failed" not in bad.stderr + good.stderr, bad.stderr + good.stderr
    assert_all_stored(live, sqlite_url, tids)


@pytest.mark.slow
def test_slices_of_a_killed_worker_are_taken_over(
    live: LiveServer, redis_server: RedisServer, sqlite_url: str
) -> None:
    """SIGKILL a worker in the middle of its slices (long ones: 20 pages): once their lease
    ran out, the other worker lists those threads on from the sink's cursors, and every run
    is stored once."""
    tids = live.seed(8, 100)
    live.do(lambda: setattr(live.server, "latency", 0.05))
    enqueue(redis_server, sqlite_url, *tids, "--page-size", "5", "--slice-pages", "20")
    args = ("--burst", "--lease", "2", "--concurrency", "4")
    victim = start_worker(live, redis_server, sqlite_url, *args)
    deadline = time.monotonic() + 30
    writer = f":{victim.pid}:"
    while not query(sqlite_url, f"SELECT 1 FROM threads WHERE writer LIKE '%{writer}%'"):  # noqa: S608
        assert time.monotonic() < deadline, "the worker stored nothing"
        time.sleep(0.05)
    victim.kill()
    finish(victim)
    held = {
        tid
        for tid, state in query(
            sqlite_url,
            f"SELECT thread_id, state FROM threads WHERE writer LIKE '%{writer}%'",  # noqa: S608
        )
        if state == "pending"
    }
    assert held
    code, err = finish(start_worker(live, redis_server, sqlite_url, *args))
    assert code == 0, err
    assert_all_stored(live, sqlite_url, tids)


def test_the_burst_count_is_one_transaction(redis_server: RedisServer) -> None:
    """Regression: --burst counted the live queue and the delayed one in two commands, and a
    slice moved from the second to the first between them was missed (the worker left work
    behind). The count is now one MULTI ... EXEC."""
    from aiorunlist.fleet import open_queue

    async def count() -> int:
        async with open_queue(EXPORT, redis_server.url) as queue:
            await queue.publish([("thread_a", None)], delay=60)
            await queue.publish([("thread_b", None)])
            return await queue.left()

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]
            assert anyio.run(count) == 2
            other = redis.Redis.from_url(redis_server.url)
            other.echo("end-of-test")
            other.close()
            commands: list[str] = []
            while "end-of-test" not in (command := str(monitor.next_command()["command"])):
                commands.append(command.split(maxsplit=1)[0].upper())
    finally:
        client.close()
    at = commands.index("XLEN")
    assert commands[at - 1 : at + 3] == ["MULTI", "XLEN", "ZCARD", "EXEC"]


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _database_refused() -> None:
    """What asyncpg raises when PostgreSQL is not there: a connection refused (an OSError)."""
    import asyncpg

    await asyncpg.connect(
        f"postgresql://exporter@127.0.0.1:{_free_loopback_port()}/runs", timeout=5
    )


async def _ping(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _caught(function: Any) -> BaseException:
    try:
        anyio.run(function)
    except BaseException as exc:
        return exc
    pytest.fail("no error")


# The queue's own client, streaq's (coredis), leaves the memory streams of a connection it
# could not make unclosed, to be collected whenever: its errors are classified in a process of
# their own, so that no later test meets them.
_QUEUE_ERROR = """
import sys, anyio
from aiorunlist.fleet import open_queue
from aiorunlist.fleet._export import redis_lost

async def count():
    async with open_queue("acceptance", sys.argv[1]) as queue:
        await queue.left()

try:
    anyio.run(count)
except BaseException as exc:
    print(type(exc).__name__, redis_lost(exc))
else:
    print("no error")
"""


def _queue_error(url: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own code
        [sys.executable, "-W", "ignore::ResourceWarning", "-c", _QUEUE_ERROR, url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_only_errors_from_redis_count_as_redis_lost(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Regression: every OSError or TimeoutError was taken for Redis lost, so a database that
    refused a connection (asyncpg's is an OSError) was reported as "Redis cannot be used" and
    the worker kept starting again for a minute. Only an error of a Redis client, or one
    raised while talking to Redis, now is; a killed redis-server still is."""
    import sqlite3

    from aiorunlist.fleet._export import origin, redis_lost

    database = _caught(_database_refused)
    assert isinstance(database, OSError)
    assert origin(database) == "database"
    assert not redis_lost(database)

    (tmp_path / "runs.db").write_bytes(b"not a database at all, " * 100)

    async def read_garbage() -> None:
        con = sqlite3.connect(tmp_path / "runs.db")
        try:
            con.execute("SELECT * FROM threads")
        finally:
            con.close()

    garbage = _caught(read_garbage)
    assert isinstance(garbage, sqlite3.DatabaseError)
    assert (origin(garbage), redis_lost(garbage)) == ("database", False)

    ping = partial(_ping, redis_server.url)
    redis_server.kill()
    gone = _caught(ping)
    assert redis_lost(gone), repr(gone)
    name, lost = _queue_error(redis_server.url).split()  # through the queue's own client
    assert lost == "True", name

    # A group counts as Redis lost only if every error in it does (the queue needs 3.11+).
    group: Any = vars(builtins)["ExceptionGroup"]
    assert not redis_lost(group("both", [_caught(ping), database]))
    assert redis_lost(group("redis", [_caught(ping), _caught(ping)]))
    # An OSError of no one's in particular is not Redis's either.
    assert not redis_lost(OSError("disk full"))
    # Nor the engine's own usage errors, nor a command the Redis client refuses (a bug, or a
    # Redis too old): waiting for Redis to come back would not cure them.
    import coredis.exceptions
    import streaq

    assert not redis_lost(streaq.StreaqError("Unable to serialize task slice!"))
    assert not redis_lost(coredis.exceptions.CommandNotSupportedError("XREADGROUP", "7.2"))
    assert redis_lost(coredis.exceptions.ConnectionError("Connection refused"))


def test_a_database_error_is_not_reported_as_redis(redis_server: RedisServer) -> None:
    """Regression: the command line said "cannot use Redis at ..." for any OSError, a
    database's too. It now names the database (its password masked)."""
    from aiorunlist._cli._fleet import _run
    from aiorunlist._cli._inputs import CLIError

    sink = "postgresql://exporter:hunter2secret@127.0.0.1:5/runs"
    with pytest.raises(CLIError) as raised:
        _run(_database_refused(), redis_server.url, sink)
    message = str(raised.value)
    assert message.startswith("cannot use the database postgresql://exporter:***@127.0.0.1:5/runs")
    assert "Redis" not in message
    assert "hunter2secret" not in message

    ping = partial(_ping, redis_server.url)

    redis_server.kill()
    with pytest.raises(CLIError, match=r"cannot use Redis at redis://127\.0\.0\.1:"):
        _run(ping(), redis_server.url, sink)
