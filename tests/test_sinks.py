"""Database sinks: ``aiorunlist.sinks`` and ``aiorunlist runs --sink URL``.

Every test that concerns a sink runs against both backends (the ``sink_url`` fixture): a real
SQLite file, and a fresh database on a real, throwaway PostgreSQL server. The command line runs
in-process (CliRunner) against a fake server in a background thread, and as real subprocesses
where the property is about processes (kill -9, two writers at once, a database restart).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiorunlist import ThreadPage
from aiorunlist._cli._inputs import ThreadIds
from aiorunlist._cli._sinkexport import SinkExport
from aiorunlist.sinks import (
    SCHEMA_VERSION,
    PageWrite,
    Sink,
    SinkError,
    SinkSettingsError,
    ThreadState,
    Totals,
    open_sink,
    sqlite_path,
)
from aiorunlist.sinks._walk import plan_walk
from aiorunlist.testing import FakeServer, Fault, MockTransport, make_run
from tests.conftest import API_KEY, SOCKETLESS_URL, fast_client
from tests.postgres import PostgresServer
from tests.test_cli import PYTHON, LiveServer, invoke, killed_after, runs_args, subprocess_env


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENAI_"):
            monkeypatch.delenv(name)


@pytest.fixture
def live() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


# --- reading a sink back, whatever the backend ----------------------------------------------------


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders on SQLite, ``$1`` on PostgreSQL)."""
    if url.startswith("sqlite:"):
        con = sqlite3.connect(sqlite_path(url))
        try:
            rows = con.execute(sql, args).fetchall()
            con.commit()
            return rows
        finally:
            con.close()

    async def fetch() -> list[tuple[Any, ...]]:
        import asyncpg

        con = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await con.fetch(sql, *args)]
        finally:
            await con.close()

    return asyncio.run(fetch())


def stored_runs(url: str) -> dict[str, dict[str, Any]]:
    """Run id -> the run as stored in ``raw`` (key order kept), every row exactly once."""
    rows = query(
        url, "SELECT id, raw::text FROM runs" if "postgres" in url else "SELECT id, raw FROM runs"
    )
    runs = {run_id: orjson.loads(raw) for run_id, raw in rows}
    assert len(runs) == len(rows)
    return runs


def assert_all_stored(live: LiveServer, url: str, tids: list[str]) -> None:
    """Every run of every thread stored exactly once, as the server holds it, key order too."""
    runs = stored_runs(url)
    expected = {run["id"]: run for tid in tids for run in live.runs_of(tid)}
    assert runs.keys() == expected.keys()
    for run_id, run in expected.items():
        assert runs[run_id] == run
        assert list(runs[run_id]) == list(run)
    states = dict(query(url, "SELECT thread_id, state FROM threads"))
    assert states == dict.fromkeys(tids, "done")
    counts = dict(query(url, "SELECT thread_id, runs FROM threads"))
    assert counts == {tid: len(live.server.threads[tid]) for tid in tids}


def sink_args(live: LiveServer, url: str, tids: list[str], *args: str) -> list[str]:
    return runs_args(live, *tids, "--sink", url, *args)


# --- the library: schema, settings, one transaction per page --------------------------------------


@pytest.mark.anyio
async def test_the_schema_is_versioned_and_the_settings_stored(sink_url: str) -> None:
    async with await open_sink(sink_url, settings={"order": "desc", "page_size": "100"}):
        pass
    assert await asyncio.to_thread(query, sink_url, "SELECT version FROM schema_version") == [
        (SCHEMA_VERSION,)
    ]
    settings = await asyncio.to_thread(query, sink_url, "SELECT name, value FROM settings")
    assert dict(settings) == {"order": "desc", "page_size": "100"}
    # Opened again: nothing migrated twice, the same settings accepted, reading checks nothing.
    async with await open_sink(sink_url, settings={"order": "desc", "page_size": "100"}):
        pass
    async with await open_sink(sink_url):
        pass
    with pytest.raises(SinkSettingsError, match="order desc, not asc"):
        await open_sink(sink_url, settings={"order": "asc", "page_size": "100"})
    with pytest.raises(SinkSettingsError, match="page_size 100, not 20"):
        await open_sink(sink_url, settings={"order": "desc", "page_size": "20"})


@pytest.mark.anyio
async def test_a_newer_schema_is_refused(sink_url: str) -> None:
    async with await open_sink(sink_url):
        pass
    await asyncio.to_thread(query, sink_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(SinkSettingsError, match="schema version 99, newer"):
        await open_sink(sink_url)


def _run(thread_id: str, index: int, **changes: Any) -> dict[str, Any]:
    """A run newer than any the fake server seeds."""
    run = make_run(thread_id, index, created_at=1_900_000_000 + index)
    run.update(changes)
    return run


@pytest.mark.anyio
async def test_a_page_is_upserted_with_a_compare_and_set_of_the_cursor(sink_url: str) -> None:
    runs = [_run("thread_a", i) for i in range(3)]
    async with await open_sink(sink_url) as sink:
        first = PageWrite("thread_a", runs, None, "pending", runs[-1]["id"], runs[0]["id"])
        assert await sink.write_page(first)
        # A second writer that started from the same (empty) state lost: nothing written.
        other = [_run("thread_a", 9)]
        assert not await sink.write_page(
            PageWrite("thread_a", other, None, "pending", other[0]["id"], other[0]["id"])
        )
        state = (await sink.threads(["thread_a", "thread_b"]))["thread_a"]
        assert (state.state, state.cursor, state.head, state.runs) == (
            "pending",
            runs[-1]["id"],
            runs[0]["id"],
            3,
        )
        fetched = dict(await asyncio.to_thread(query, sink_url, "SELECT id, fetched_at FROM runs"))
        assert set(fetched) == {run["id"] for run in runs}
        # An identical run writes nothing; a changed one is updated; a stale cursor loses.
        changed = {**runs[1], "status": "completed"}
        again = PageWrite("thread_a", [runs[0], changed], state, "done", state.cursor, state.head)
        assert not await sink.write_page(
            PageWrite("thread_a", [changed], ThreadState("thread_a", "pending"), "done", "x", "y")
        )
        assert await sink.write_page(again)
        after = dict(await asyncio.to_thread(query, sink_url, "SELECT id, fetched_at FROM runs"))
        assert after[runs[0]["id"]] == fetched[runs[0]["id"]]
        assert after[runs[2]["id"]] == fetched[runs[2]["id"]]
        assert after[runs[1]["id"]] >= fetched[runs[1]["id"]]
        statuses = await asyncio.to_thread(query, sink_url, "SELECT id, status FROM runs")
        status = [(dict(statuses)[runs[1]["id"]],)]
        assert status == [("completed",)]
        assert (await sink.threads(["thread_a"]))["thread_a"].state == "done"


# --- the command line -----------------------------------------------------------------------------


def test_export_then_rerun_adds_nothing(live: LiveServer, sink_url: str) -> None:
    tids = live.seed(12, lambda i: i * 3, seed=5)
    result = invoke(sink_args(live, sink_url, tids, "--page-size", "7"))
    assert result.exit_code == 0, result.stderr
    assert_all_stored(live, sink_url, tids)
    live.do(live.server.reset_stats)
    before = query(sink_url, "SELECT id, fetched_at FROM runs")
    again = invoke(sink_args(live, sink_url, tids, "--page-size", "7"))
    assert again.exit_code == 0, again.stderr
    assert sorted(query(sink_url, "SELECT id, fetched_at FROM runs")) == sorted(before)
    assert_all_stored(live, sink_url, tids)
    # Each thread asked once for what is new, plus the pages holding runs not yet final.
    asked = Counter(request.thread_id for request in live.server.requests)
    assert set(asked) == set(tids)
    syncs = query(sink_url, "SELECT started_at, finished_at FROM syncs ORDER BY started_at")
    assert len(syncs) == 2
    assert all(finished is not None and finished >= started for started, finished in syncs)


def _status_of(live: LiveServer, tid: str, run_id: str, status: str) -> None:
    def change() -> None:
        for run in live.server.threads[tid]:
            if run["id"] == run_id:
                run["status"] = status

    live.do(change)


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_a_rerun_lists_what_is_new_and_refreshes_runs_not_final(
    live: LiveServer, sink_url: str, order: str
) -> None:
    tids = live.seed(6, 9, seed=8)
    # Every run final, but one thread's third-oldest run still in progress.
    for tid in tids:
        for run in live.server.threads[tid]:
            run["status"] = "completed"
    busy = tids[0]
    open_run = live.server.threads[busy][2]["id"]
    _status_of(live, busy, open_run, "in_progress")
    args = ("--page-size", "4", "--order", order)
    assert invoke(sink_args(live, sink_url, tids, *args)).exit_code == 0
    assert_all_stored(live, sink_url, tids)
    # Then: two new runs in one thread, one in another, and the open run completes.
    grown = tids[1:3]
    live.do(lambda: live.server.add_runs(grown[0], [_run(grown[0], 100), _run(grown[0], 101)]))
    live.do(lambda: live.server.add_runs(grown[1], [_run(grown[1], 100)]))
    for tid in grown:
        for run in live.server.threads[tid]:
            run["status"] = "completed"
    _status_of(live, busy, open_run, "completed")
    live.do(live.server.reset_stats)
    result = invoke(sink_args(live, sink_url, tids, *args))
    assert result.exit_code == 0, result.stderr
    assert_all_stored(live, sink_url, tids)
    # One request per thread for what is new (page size 4: two new runs fit in one page);
    # the busy thread lists from the run just older than its open one: 7 runs, 2 pages.
    asked = Counter(request.thread_id for request in live.server.requests)
    assert asked == {**dict.fromkeys(tids, 1), busy: 2}
    changed = query(
        sink_url,
        "SELECT id FROM runs WHERE fetched_at >= (SELECT max(started_at) FROM syncs)",
    )
    new_ids = {run["id"] for tid in grown for run in live.server.threads[tid][9:]}
    assert {row[0] for row in changed} == new_ids | {open_run}
    # A third run: nothing new, nothing open: one request per thread, nothing written.
    live.do(live.server.reset_stats)
    assert invoke(sink_args(live, sink_url, tids, *args)).exit_code == 0
    assert Counter(request.thread_id for request in live.server.requests) == dict.fromkeys(tids, 1)
    assert (
        query(
            sink_url, "SELECT id FROM runs WHERE fetched_at >= (SELECT max(started_at) FROM syncs)"
        )
        == []
    )


def test_raw_is_the_servers_run_exactly(live: LiveServer, sink_url: str) -> None:
    odd = {
        "zeta_unknown": {"nested": [1, 2, {"b": 1, "a": 2}]},
        "id": "run_odd",
        "created_at": 1_700_000_000,
        "object": "thread.run",
        "thread_id": "thread_odd",
        "status": "a_status_from_the_future",
        "usage": {"total_tokens": 5, "prompt_tokens": 2, "completion_tokens": 3},
        "alpha_unknown": "é ☃ \u2028",
    }
    live.do(lambda: live.server.add_thread("thread_odd", [odd]))
    result = invoke(sink_args(live, sink_url, ["thread_odd"]))
    assert result.exit_code == 0, result.stderr
    raw = stored_runs(sink_url)["run_odd"]
    assert raw == odd
    assert list(raw) == list(odd)
    assert list(raw["zeta_unknown"]["nested"][2]) == ["b", "a"]
    row = query(sink_url, "SELECT status, total_tokens, prompt_tokens, model FROM runs")
    assert row == [("a_status_from_the_future", 5, 2, None)]


def test_summary_from_the_sink_matches_the_exports(live: LiveServer, sink_url: str) -> None:
    tids = live.seed(15, 12, seed=3)
    exported = invoke(sink_args(live, sink_url, tids, "--summary"))
    assert exported.exit_code == 0
    result = invoke(["summary", "--sink", sink_url])
    assert result.exit_code == 0, result.stderr
    tables = exported.stderr.split("\n\n", 1)[1]
    assert _sorted_lines(result.stdout) == _sorted_lines(tables)


def _sorted_lines(text: str) -> list[str]:
    # Rows with equal counts may come in either order.
    return sorted(line for line in text.splitlines() if line.strip())


def test_a_thread_that_fails_is_recorded_and_resumed(live: LiveServer, sink_url: str) -> None:
    tids = live.seed(3, 10, seed=4)
    bad = tids[1]
    live.do(lambda: live.server.add_fault(Fault(thread_id=bad, status=404, times=100)))
    result = invoke(sink_args(live, sink_url, tids, "--page-size", "4"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{bad}: ")
    rows = query(sink_url, "SELECT thread_id, state, last_error FROM threads")
    state = [row[1:] for row in rows if row[0] == bad]
    assert state[0][0] == "failed"
    assert state[0][1]
    live.do(live.server.clear_faults)
    assert invoke(sink_args(live, sink_url, tids, "--page-size", "4")).exit_code == 0
    assert_all_stored(live, sink_url, tids)


# --- bad input: one line, exit code 2 -------------------------------------------------------------


def test_bad_sinks_are_one_line_and_exit_code_2(
    live: LiveServer, tmp_path: Path, sink_url: str
) -> None:
    tids = live.seed(2, 3)
    assert invoke(sink_args(live, sink_url, tids)).exit_code == 0
    cases = {
        "mysql://me@127.0.0.1/db": "unsupported sink URL",
        "sqlite://": "names no file",
        f"sqlite:///{tmp_path}/no/such/dir/runs.db": "cannot open the SQLite database",
        "postgresql://me@127.0.0.1:1/db": "cannot connect to postgresql://me@127.0.0.1:1/db",
        "postgresql://me:secret-pw@127.0.0.1:1/db": "postgresql://me:***@127.0.0.1:1/db",
        "postgresql://me@127.0.0.1:notaport/db": "not a valid postgresql:// URL",
        "runs.db": "unsupported sink URL",
    }
    for url, message in cases.items():
        result = invoke(runs_args(live, *tids, "--sink", url))
        assert result.exit_code == 2, (url, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("aiorunlist: error: ")
        assert message in result.stderr, result.stderr
        assert "secret-pw" not in result.stderr
    other = invoke(sink_args(live, sink_url, tids, "--order", "asc"))
    assert other.exit_code == 2
    assert other.stderr.count("\n") == 1
    assert "order desc, not asc" in other.stderr
    for extra in (["-o", str(tmp_path / "x.jsonl")], ["--resume", "s"], ["--format", "csv"]):
        result = invoke(sink_args(live, sink_url, tids, *extra))
        assert result.exit_code == 2
        assert "cannot be combined" in result.stderr
    assert invoke(["summary", "--sink", "nope://x"]).exit_code == 2


def test_without_asyncpg_a_postgresql_sink_says_what_to_install(tmp_path: Path) -> None:
    code = "import sys; sys.modules['asyncpg'] = None; from aiorunlist._cli import main; main()"
    result = subprocess.run(  # noqa: S603 - our own command line with our own interpreter
        [sys.executable, "-c", code, "runs", "thread_a", "--sink", "postgresql://u@h/db"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=subprocess_env(OPENAI_API_KEY=API_KEY),
    )
    assert result.returncode == 2
    assert result.stderr == (
        "aiorunlist: error: a postgresql:// sink needs asyncpg: pip install 'asyncpg>=0.29'\n"
    )


def test_the_core_imports_no_extra() -> None:
    code = (
        "import sys, aiorunlist\n"
        "assert not {'sqlite3', 'asyncpg', 'click', 'aiorunlist.sinks'} & set(sys.modules)\n"
        "assert not {'redis', 'aiorunlist.fleet'} & set(sys.modules)\n"
        "import aiorunlist.sinks\n"
        "assert not {'sqlite3', 'asyncpg'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603


# --- processes: kill -9, two writers, a database restart ------------------------------------------


def _start(live: LiveServer, url: str, ids_file: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [
        *PYTHON,
        "runs",
        "--threads-from",
        str(ids_file),
        "--page-size",
        "5",
        "--concurrency",
        "4",
        "--sink",
        url,
        *extra,
    ]
    env = subprocess_env(OPENAI_BASE_URL=live.url, OPENAI_API_KEY=API_KEY)
    return subprocess.Popen(  # noqa: S603 - our own command line with our own interpreter
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _ids_file(tmp_path: Path, tids: list[str]) -> Path:
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(tids) + "\n", encoding="utf-8")
    return path


def _wait_for_rows(url: str, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if query(url, "SELECT count(*) FROM runs")[0][0] >= count:
                return
        except Exception:  # noqa: S110 - the schema may not exist yet
            pass
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError("nothing stored")


@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_interrupted_mid_export_then_a_rerun(
    live: LiveServer, sink_url: str, tmp_path: Path, how: str
) -> None:
    tids = live.seed(40, 20, seed=11)
    live.do(lambda: live.server.add_fault(Fault(delay=0.02, times=100_000)))  # slow server
    ids_file = _ids_file(tmp_path, tids)
    process = _start(live, sink_url, ids_file)
    with killed_after(process, 90):
        _wait_for_rows(sink_url, 60, process)
        process.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    if how == "kill -9":
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130
        assert b"run the same command again to resume" in stderr
        assert b"Traceback" not in stderr
    stored = query(sink_url, "SELECT count(*) FROM runs")[0][0]
    assert 0 < stored < 40 * 20
    live.do(live.server.clear_faults)
    again = _start(live, sink_url, ids_file)
    with killed_after(again, 90):
        stdout, stderr = again.communicate(timeout=90)
    assert again.returncode == 0, stderr
    assert stdout == stderr == b""
    assert_all_stored(live, sink_url, tids)


def test_two_processes_export_the_same_ids_at_once(
    live: LiveServer, sink_url: str, tmp_path: Path
) -> None:
    tids = live.seed(60, 12, seed=12)
    live.do(lambda: live.server.add_fault(Fault(delay=0.005, times=100_000)))
    ids_file = _ids_file(tmp_path, tids)
    # The database exists first, so that both processes race on the data, not the schema.
    assert (
        invoke(
            sink_args(live, sink_url, [], "--threads-from", os.devnull, "--page-size", "5")
        ).exit_code
        == 0
    )
    first = _start(live, sink_url, ids_file)
    second = _start(live, sink_url, ids_file)
    with killed_after(first, 120), killed_after(second, 120):
        out1, err1 = first.communicate(timeout=120)
        out2, err2 = second.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), (err1, err2)
    assert out1 == out2 == err1 == err2 == b""
    assert_all_stored(live, sink_url, tids)


def test_a_postgresql_restart_mid_export(
    live: LiveServer, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.new_database()
    tids = live.seed(40, 20, seed=13)
    live.do(lambda: live.server.add_fault(Fault(delay=0.02, times=100_000)))
    process = _start(live, url, _ids_file(tmp_path, tids))
    with killed_after(process, 120):
        _wait_for_rows(url, 60, process)
        postgres_server.restart()
        assert query(url, "SELECT count(*) FROM runs")[0][0] < 40 * 20  # still going
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert stdout == stderr == b""
    assert_all_stored(live, url, tids)


def test_a_run_without_an_id_fails_its_thread_and_stores_nothing_of_it(
    live: LiveServer, sink_url: str
) -> None:
    tids = live.seed(3, 4, seed=9)
    bad = tids[0]
    body = orjson.dumps(
        {
            "object": "list",
            "data": [{"object": "thread.run", "created_at": 1, "status": "queued"}],
            "first_id": None,
            "last_id": None,
            "has_more": False,
        }
    )
    live.do(lambda: live.server.add_fault(Fault(thread_id=bad, body=body, times=100)))
    result = invoke(sink_args(live, sink_url, tids))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{bad}: ")
    assert "string 'id'" in result.stderr
    assert dict(query(sink_url, "SELECT thread_id, state FROM threads"))[bad] == "failed"
    assert {row[0] for row in query(sink_url, "SELECT DISTINCT thread_id FROM runs")} == set(
        tids[1:]
    )


# --- the documentation's queries ---------------------------------------------------------------


DOCS = Path(__file__).resolve().parent.parent / "docs" / "sinks.md"


def documented_queries() -> list[tuple[str, str]]:
    """(the databases it is for, the query) of every ```sql block of the sinks page."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```sql\n")[1:]]
    queries = []
    for block in blocks:
        first, _, body = block.partition("\n")
        assert first.startswith("-- "), first
        queries.append((first[3:], body.strip()))
    return queries


def test_the_documented_queries_run_as_written(live: LiveServer, sink_url: str) -> None:
    queries = documented_queries()
    assert len(queries) >= 10
    tids = live.seed(30, 15, seed=21)
    live.do(lambda: live.server.add_fault(Fault(thread_id=tids[0], status=404, times=100)))
    assert invoke(sink_args(live, sink_url, tids)).exit_code == 1
    backend = "SQLite" if sink_url.startswith("sqlite") else "PostgreSQL"
    ran = 0
    for databases, sql in queries:
        assert databases in {"SQLite", "PostgreSQL", "SQLite and PostgreSQL"}
        if backend not in databases:
            continue
        rows = query(sink_url, sql.rstrip(";"))
        assert rows, sql
        ran += 1
    assert ran >= 7


# --- property: however often a sync is cut short, and whatever changed, it converges ---------


class _Crashing(Sink):
    """A sink that fails (like a lost database) after ``budget`` page writes."""

    def __init__(self, inner: Sink, budget: int) -> None:
        self.inner = inner
        self.budget = budget
        self.url = inner.url

    async def threads(self, thread_ids: Sequence[str]) -> dict[str, ThreadState]:
        return await self.inner.threads(thread_ids)

    async def write_page(self, write: PageWrite) -> bool:
        if self.budget <= 0:
            raise SinkError("crash")
        self.budget -= 1
        return await self.inner.write_page(write)

    async def start_sync(self) -> None:
        await self.inner.start_sync()

    async def finish_sync(self) -> None:
        await self.inner.finish_sync()

    async def totals(self) -> Totals:
        return await self.inner.totals()

    async def aclose(self) -> None:
        await self.inner.aclose()


_FINAL = ["completed", "failed", "cancelled", "expired", "incomplete"]
_NOT_FINAL = ["queued", "in_progress", "requires_action", "cancelling"]


@st.composite
def _histories(draw: st.DrawFn) -> dict[str, Any]:
    threads = draw(st.integers(1, 4))
    return {
        "order": draw(st.sampled_from(["asc", "desc"])),
        "page_size": draw(st.integers(1, 4)),
        "sizes": draw(st.lists(st.integers(0, 7), min_size=threads, max_size=threads)),
        "statuses": draw(st.lists(st.sampled_from(_FINAL + _NOT_FINAL), min_size=40, max_size=40)),
        # Between syncs: (thread, new runs, finish the in-flight runs?), and where it crashes.
        "steps": draw(
            st.lists(
                st.tuples(
                    st.integers(0, threads - 1),
                    st.integers(0, 3),
                    st.booleans(),
                    st.one_of(st.none(), st.integers(0, 6)),
                ),
                max_size=4,
            )
        ),
    }


async def _sync(
    server: FakeServer, url: str, tids: list[str], history: dict[str, Any], crash: int | None
) -> SinkExport:
    settings = {"order": history["order"], "page_size": str(history["page_size"])}
    async with await open_sink(url, settings=settings) as opened:
        sink: Sink = opened if crash is None else _Crashing(opened, crash)
        async with fast_client(SOCKETLESS_URL, transport=MockTransport(server.handle)) as client:
            export = SinkExport(
                client,
                ThreadIds(tids),
                sink,
                order=history["order"],
                page_size=history["page_size"],
                concurrency=3,
            )
            await export.run()
    return export


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=_histories())
def test_syncs_converge_however_they_are_cut_short(history: dict[str, Any]) -> None:
    statuses = iter(history["statuses"] * 10)
    server = FakeServer(api_key=API_KEY)
    tids = [f"thread_p{i}" for i in range(len(history["sizes"]))]
    clock = iter(range(1_800_000_000, 1_900_000_000, 7))

    def add(tid: str, count: int) -> None:
        start = len(server.threads.get(tid, []))
        runs = [make_run(tid, start + i, created_at=next(clock)) for i in range(count)]
        for run in runs:
            run["status"] = next(statuses)
        server.add_runs(tid, runs)

    for tid, size in zip(tids, history["sizes"], strict=True):
        server.add_thread(tid)
        add(tid, size)
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/runs.db"
        for thread, new, finish, crash in history["steps"]:
            anyio.run(_sync, server, url, tids, history, crash)
            add(tids[thread], new)
            if finish:
                for run in server.threads[tids[thread]]:
                    if run["status"] in _NOT_FINAL:
                        run["status"] = "completed"
        # A thread an earlier sync left part way continues from its cursor; what changed above
        # that cursor meanwhile comes with the sync after (once the thread is done).
        for _ in range(2):
            export = anyio.run(_sync, server, url, tids, history, None)
            assert export.error is None
            assert not export.failures
        runs = stored_runs(url)
        expected = {run["id"]: run for tid in tids for run in server.threads[tid]}
        assert runs == expected
        assert dict(query(url, "SELECT thread_id, runs FROM threads")) == {
            tid: len(server.threads[tid]) for tid in tids
        }
        # Nothing changed: the next sync writes nothing (runs still in flight are listed
        # again, in a transaction that finds them identical).
        before = sorted(query(url, "SELECT id, fetched_at FROM runs"))
        again = anyio.run(_sync, server, url, tids, history, None)
        if not any(run["status"] in _NOT_FINAL for run in expected.values()):
            assert again.writes == 0
        assert sorted(query(url, "SELECT id, fetched_at FROM runs")) == before


def test_summary_of_a_sink_that_holds_no_export(live: LiveServer, sink_url: str) -> None:
    if sink_url.startswith("sqlite"):
        result = invoke(["summary", "--sink", sink_url])
        assert result.exit_code == 2
        assert result.stderr.endswith("no such database file\n")
        assert not Path(sqlite_path(sink_url)).exists()  # nothing created
        sqlite3.connect(sqlite_path(sink_url)).close()
    result = invoke(["summary", "--sink", sink_url])
    assert result.exit_code == 2
    assert result.stderr.endswith("holds no aiorunlist export\n")
    assert result.stderr.count("\n") == 1


@pytest.mark.anyio
async def test_a_writer_that_lost_a_thread_never_takes_it_back(sink_url: str) -> None:
    # Regression: two exports list the same thread; B stores page 1 first, with exactly the
    # cursor A's page 1 would have stored. A's page 1 loses; A's page 2, handed over before
    # A learnt that, must lose too, or both would stop (each thinking the other has it).
    runs = [_run("thread_a", i) for i in range(4)]
    page1 = ThreadPage("thread_a", (), False, raw=runs[:2])
    page2 = ThreadPage("thread_a", (), True, raw=runs[2:])
    _, walk_a = plan_walk("thread_a", None, "asc", "writer A")
    _, walk_b = plan_walk("thread_a", None, "asc", "writer B")
    a1 = walk_a.page_write(page1)
    assert a1 is not None
    walk_a.written(a1)
    a2 = walk_a.page_write(page2)
    b1 = walk_b.page_write(page1)
    assert a2 is not None
    assert b1 is not None
    assert (a1.cursor, a1.head) == (b1.cursor, b1.head)
    async with await open_sink(sink_url) as sink:
        assert await sink.write_page(b1)
        assert not await sink.write_page(a1)
        assert not await sink.write_page(a2)
        walk_b.written(b1)
        b2 = walk_b.page_write(page2)
        assert b2 is not None
        assert await sink.write_page(b2)
        state = (await sink.threads(["thread_a"]))["thread_a"]
    assert (state.state, state.runs, state.writer) == ("done", 4, "writer B")


@pytest.mark.anyio
async def test_sqlite_waits_for_another_writer_off_the_event_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runs = [_run("thread_a", i) for i in range(3)]
    async with await open_sink(url) as sink:
        other = sqlite3.connect(sqlite_path(url), isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        write = asyncio.ensure_future(
            sink.write_page(PageWrite("thread_a", runs, None, "done", runs[-1]["id"], None))
        )
        # The event loop keeps running while the write waits for the lock (in the loop's own
        # thread, it would block it for the busy timeout, a minute).
        await asyncio.sleep(0.2)
        assert not write.done()
        other.execute("COMMIT")
        other.close()
        assert await write
    assert len(stored_runs(url)) == 3
