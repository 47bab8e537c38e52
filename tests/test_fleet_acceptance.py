"""The fleet's acceptance checks, reduced for CI: real redis-server, workers as real
``aiorunlist fleet worker`` subprocesses, the fake server in a thread of its own, and every
check read from the sink's database and the server's request log (``tests/fleet_harness.py``).

The full sizes and the figures: ``nox -s fleet`` (``benchmarks/fleet_acceptance.py``).
Timing figures (shares of a limit, throughput) are printed there, not asserted here; what is
asserted here holds on a slow machine too.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import aiorunlist
from aiorunlist.sinks import open_sink
from aiorunlist.testing import FakeServer
from tests import fleet_harness as h
from tests.conftest import running_redis
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio


def _fleet_cli() -> bool:
    if importlib.util.find_spec("streaq") is None:
        return False
    try:
        from aiorunlist._cli._app import cli
    except ImportError:
        return False
    fleet = cli.commands.get("fleet")
    return fleet is not None and {"enqueue", "worker", "status"} <= set(
        getattr(fleet, "commands", {})
    )


needs_fleet = pytest.mark.skipif(
    sys.version_info < (3, 11) or not _fleet_cli(),
    reason="the fleet's command line (aiorunlist fleet enqueue/worker/status) is not available "
    "here: it needs Python 3.11+",
)


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    with running_redis(aof=True) as server:
        yield server


def explain(figures: dict[str, Any]) -> str:
    shown = {k: v for k, v in figures.items() if k not in ("logs", "check")}
    return f"{shown}\n{figures.get('check')!r}\n{figures.get('logs', '')}"


# --- the harness itself: its checks can fail ----------------------------------------------------


def test_the_server_thread_answers_over_loopback_and_logs_who_asked() -> None:
    fake = FakeServer(api_key=None)
    ids, failing = h.seed_server(fake, 4, 5, seed=3, failing=2)
    assert sorted(failing.values()) == [400, 404]
    with h.ServerThread(fake) as server:
        for thread_id in ids:
            request = urllib.request.Request(  # noqa: S310 - the fake server on loopback
                fake.url_for(thread_id),
                headers={"Authorization": "Bearer sk-w1", "OpenAI-Beta": "assistants=v2"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            assert status == failing.get(thread_id, 200)
        log = server.requests()
    assert [r.thread_id for r in log] == ids
    assert list(h.by_worker(log)) == ["sk-w1"]
    assert [r.status for r in log] == [failing.get(t, 200) for t in ids]


@pytest.fixture
async def synced(sink_url: str) -> tuple[str, FakeServer, list[str], dict[str, int]]:
    """A sink holding every thread of a seeded fake server, listed with `sync_thread`."""
    fake = FakeServer(api_key=None)
    ids, failing = h.seed_server(fake, 6, 12, seed=1, failing=1)
    async with fake:
        sink = await open_sink(sink_url, settings={"order": "desc", "page_size": "5"})
        try:
            await sink.add_threads(ids)
            h.install_write_log(sink_url)
            async with aiorunlist.Client(api_key="sk-x", base_url=fake.base_url) as client:
                for thread_id in ids:
                    if thread_id in failing:
                        continue
                    await aiorunlist.sinks.sync_thread(client, sink, thread_id, page_size=5)
        finally:
            await sink.aclose()
    return sink_url, fake, ids, failing


def _one_run(sink_url: str) -> tuple[str, str]:
    run_id, raw = h.query(sink_url, "SELECT id, raw FROM runs ORDER BY id LIMIT 1")[0]
    return str(run_id), str(raw)


async def test_the_sink_check_passes_a_faithful_sink_and_catches_each_defect(
    synced: tuple[str, FakeServer, list[str], dict[str, int]],
) -> None:
    sink_url, fake, ids, failing = synced
    # The seeded failing thread was never listed: still pending, so "seeded, not failed".
    check = h.check_sink(sink_url, fake, ids, failing)
    assert check.rows == check.expected > 0
    assert (check.missing, check.unexpected, check.raw_differs, check.rewrites) == ([], [], [], [])
    assert check.not_failed == list(failing)
    assert not check.ok
    failed = next(iter(failing))
    h.execute(sink_url, "UPDATE threads SET state = 'failed' WHERE thread_id = ?", failed)
    assert h.check_sink(sink_url, fake, ids, failing).ok

    run_id, raw = _one_run(sink_url)
    reordered = dict(reversed(list(orjson.loads(raw).items())))
    h.execute(
        sink_url, "UPDATE runs SET raw = ? WHERE id = ?", orjson.dumps(reordered).decode(), run_id
    )
    check = h.check_sink(sink_url, fake, ids, failing)
    assert check.raw_differs == check.key_order_differs == [run_id]
    assert check.rewrites == [run_id]  # the trigger saw the rewrite

    h.execute(sink_url, "DELETE FROM runs WHERE id = ?", run_id)
    check = h.check_sink(sink_url, fake, ids, failing)
    assert check.missing == [run_id]
    assert check.rewrites == [run_id, f"deleted:{run_id}"]
    assert h.sink_states(sink_url) == {"done": len(ids) - 1, "failed": 1}
    assert h.finished(sink_url, len(ids))


def test_a_redis_with_aof_keeps_its_data_across_sigkill(aof_redis: RedisServer) -> None:
    import redis

    def get() -> bytes | None:
        with redis.Redis.from_url(aof_redis.url) as con:
            value: bytes | None = con.get("k")
            return value

    with redis.Redis.from_url(aof_redis.url) as con:
        con.set("k", "v")
    aof_redis.restart()
    assert get() == b"v"
    aof_redis.restart(empty=True)
    assert get() is None


# --- the acceptance checks, reduced ---------------------------------------------------------


@needs_fleet
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_kill_chaos_loses_and_duplicates_nothing(
    redis_server: RedisServer, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    sink_url = None
    if database == "postgresql":
        sink_url = request.getfixturevalue("postgres_server").new_database()
    figures = h.kill_chaos(
        redis_server.url,
        tmp_path,
        sink_url=sink_url,
        n_threads=300,
        max_runs=40,
        workers=3,
        concurrency=8,
        kill_every=1.0,
        min_kills=3,
        page_size=5,
        latency=0.05,  # 1,200 pages of 50 ms: long enough for 3 kills on a fast machine
        timeout=120,
    )
    assert figures["finished"], explain(figures)
    assert figures["kills"] >= 3, explain(figures)
    assert figures["check"].ok, explain(figures)
    assert set(figures["sigterm_exit_codes"]) <= {0}, explain(figures)


@needs_fleet
def test_a_killed_workers_slices_are_resumed_after_the_lease(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    figures = h.redelivery(
        redis_server.url, tmp_path, n_threads=4, runs=1000, page_size=10, latency=0.05
    )
    assert figures["finished"], explain(figures)
    assert figures["not_resumed"] == 0, explain(figures)
    assert figures["check"].ok, explain(figures)


@needs_fleet
@pytest.mark.parametrize("empty", [False, True], ids=["aof", "empty-then-requeue"])
def test_losing_redis_loses_nothing(aof_redis: RedisServer, tmp_path: Path, empty: bool) -> None:
    figures = h.redis_loss(aof_redis, tmp_path, empty=empty, n_threads=150, timeout=180)
    assert figures["mid_export"], explain(figures)
    assert figures.get("requeue_exit", 0) == 0, explain(figures)
    assert figures["finished"], explain(figures)
    assert figures["check"].ok, explain(figures)


@needs_fleet
def test_a_shared_rate_limit_completes_with_few_429s(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    figures = h.shared_rate(redis_server.url, tmp_path, k=2, concurrency=16, seconds=4)
    assert figures["finished"], explain(figures)
    assert figures["check"].ok, explain(figures)
    assert figures["per_100"] <= 5, explain(figures)


def _two_fleets(
    redis_server: RedisServer, tmp_path: Path, fleets: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Two workers x 8 against a server limited to 50 requests/s (burst 5), once for each of
    ``fleets`` (more arguments of ``shared_rate``), each from an empty Redis; every run stored."""
    figures = {}
    for name, options in fleets.items():
        redis_server.restart(empty=True)
        directory = tmp_path / name
        directory.mkdir()
        figures[name] = h.shared_rate(
            redis_server.url, directory, k=2, concurrency=8, seconds=4, rate=50, burst=5, **options
        )
        assert figures[name]["finished"], explain(figures[name])
        assert figures[name]["check"].ok, explain(figures[name])
    return figures


@needs_fleet
def test_workers_without_the_shared_control_meet_many_more_429s(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A limit low enough for any machine to overrun it: two workers pacing alone each keep to
    # the server's rate, so together they ask about twice what it allows; sharing the control,
    # they keep to it once their first answers told them the limit.
    figures = _two_fleets(
        redis_server, tmp_path, {"shared": {"control": "shared"}, "local": {"control": "local"}}
    )
    shared, local = figures["shared"]["throttled"], figures["local"]["throttled"]
    assert local >= 3 * max(shared, 3), (explain(figures["shared"]), explain(figures["local"]))


@needs_fleet
def test_a_fleet_rate_paces_workers_against_a_server_without_headers(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # A server that sends no rate-limit headers: the fleet learns no pace from it, so two
    # workers meet its limit at every burst; `fleet worker --rate` gives the whole fleet one.
    figures = _two_fleets(
        redis_server,
        tmp_path,
        {
            "unpaced": {"headers": "none"},
            "paced": {"headers": "none", "worker_args": ["--rate", "45"]},
        },
    )
    unpaced, paced = figures["unpaced"]["throttled"], figures["paced"]["throttled"]
    assert unpaced >= 3 * max(paced, 3), (explain(figures["unpaced"]), explain(figures["paced"]))


@needs_fleet
def test_one_429_pauses_every_worker(redis_server: RedisServer, tmp_path: Path) -> None:
    # Enough threads that the export is still busy when the 429 is armed (0.5 s in).
    figures = h.shared_pause(
        redis_server.url, tmp_path, k=2, concurrency=16, n_threads=1500, after=0.5
    )
    assert "error" not in figures, explain(figures)
    assert figures["finished"], explain(figures)
    assert figures["check"].ok, explain(figures)
    # The strict figure (no request at all within 450 ms) is measured by `nox -s fleet`; here,
    # on a machine of any speed: the fleet at least halves its pace in the 450 ms after the
    # 429 (requests granted before the pause reached Redis may still arrive late).
    assert figures["within_450ms"] <= figures["in_the_450ms_before"] // 2, explain(figures)
    assert figures.get("recorded_after_ms") is not None, explain(figures)  # Redis had it


@needs_fleet
def test_an_outage_completes_after_recovery(redis_server: RedisServer, tmp_path: Path) -> None:
    figures = h.outage(redis_server.url, tmp_path, k=2, concurrency=8, n_threads=300, seconds=4)
    assert figures["finished"], explain(figures)
    assert figures["check"].ok, explain(figures)


@needs_fleet
def test_an_outage_stays_within_the_shared_budget(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    figures = h.outage(redis_server.url, tmp_path, k=2, concurrency=8, n_threads=600, seconds=6)
    # 500 tokens, 5 a retry: at most 100 retries in the whole fleet, one first try per slot
    # (2 workers x 8), then one request of the fleet a second until the outage is over.
    assert figures["during_outage"] <= figures["bound"], explain(figures)


@needs_fleet
def test_more_workers_finish_the_same_export(redis_server: RedisServer, tmp_path: Path) -> None:
    assert redis_server.process is not None
    figures = h.scaling(
        redis_server.url,
        tmp_path,
        k=2,
        concurrency=8,
        latency=0.05,
        seconds=2,
        redis_pid=redis_server.process.pid,
    )
    assert figures["finished"], explain(figures)
    assert figures["check"].ok, explain(figures)
    # The CPU figures are measured: every worker (and its writer) spent some, and so did Redis.
    assert figures["requests"] > 0, explain(figures)
    assert figures["worker_cpu_per_1000"] > 0, explain(figures)
    assert figures["worker_start_cpu_seconds"] > 0, explain(figures)
    assert figures["worker_listing_cpu_per_1000"] < figures["worker_cpu_per_1000"], explain(figures)
    assert figures["redis_cpu_per_1000"] is not None, explain(figures)


@needs_fleet
def test_a_401_stops_the_fleet(redis_server: RedisServer, tmp_path: Path) -> None:
    figures = h.fatal(redis_server.url, tmp_path, k=2, concurrency=8, n_threads=400)
    assert figures["workers_exited"], explain(figures)
    assert set(figures["exit_codes"]) == {1}, explain(figures)
    assert figures["max_after_401"] <= 2.0, explain(figures)
    assert figures["status_check_exit"] == 1, explain(figures)
    assert "401" in figures["status_check_output"] or "key" in figures["status_check_output"], (
        explain(figures)
    )
