"""The SQLite sink's writer: a process of its own by default, a thread of the exporting process
as the fallback. Both keep every guarantee of the sink; the process dies with the export, and
an export whose writer died stops with one line and is resumed by running it again."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aiorunlist.sinks import (
    PageWrite,
    SinkError,
    SinkSettingsError,
    SinkUnavailableError,
    ThreadState,
    _sqlite,
    _sqlite_core,
    open_sink,
)
from aiorunlist.sinks._rows import row_params
from aiorunlist.sinks._sqlite import SQLiteProcessSink, SQLiteSink, open_sqlite
from aiorunlist.testing import Fault
from tests.conftest import API_KEY
from tests.test_cli import PYTHON, LiveServer, invoke, killed_after, runs_args, subprocess_env
from tests.test_sinks import (
    _ids_file,
    _run,
    _start,
    _wait_for_rows,
    assert_all_stored,
    query,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")


@pytest.fixture
def live() -> Any:
    with LiveServer() as server:
        yield server


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.fixture(params=["process", "thread"])
def writer(request: pytest.FixtureRequest) -> Any:
    return request.param


async def _open(path: Path, writer: Any, **settings: str) -> Any:
    return await open_sqlite(str(path), f"sqlite:///{path}", settings or None, writer=writer)


@pytest.mark.anyio
async def test_both_writers_keep_every_guarantee(tmp_path: Path, writer: Any) -> None:
    path = tmp_path / "runs.db"
    runs = [_run("thread_a", i) for i in range(3)]
    sink = await _open(path, writer, order="desc")
    assert isinstance(sink, SQLiteProcessSink if writer == "process" else SQLiteSink)
    async with sink:
        await sink.start_sync()
        first = PageWrite("thread_a", runs, None, "pending", runs[-1]["id"], runs[0]["id"])
        assert await sink.write_page(first)
        # Another writer that started from the same state loses, and writes nothing.
        other = PageWrite("thread_a", [_run("thread_a", 9)], None, "pending", "x", "y")
        assert not await sink.write_page(other)
        state = (await sink.threads(["thread_a", "thread_b"]))["thread_a"]
        assert (state.state, state.cursor, state.runs) == ("pending", runs[-1]["id"], 3)
        changed = {**runs[1], "status": "failed", "last_error": {"code": "server_error"}}
        assert await sink.write_page(
            PageWrite("thread_a", [changed], state, "done", state.cursor, state.head)
        )
        assert not await sink.write_page(
            PageWrite("thread_a", [], ThreadState("thread_a", "pending"), "done", "a", "b")
        )
        totals = await sink.totals()
        await sink.finish_sync()
        # The fleet's operations: record threads, list them by state, count them.
        assert await sink.add_threads(["thread_c", "thread_a", "thread_b", "thread_c"]) == [
            "thread_c",
            "thread_b",
        ]
        pending = await sink.list_threads(["pending"], after="thread_b")
        assert [state.thread_id for state in pending] == ["thread_c"]
        assert await sink.thread_counts() == {"done": 1, "pending": 2}
    assert totals.runs == 3
    assert dict(totals.errors_by_code) == {"server_error": 1}
    assert query(f"sqlite:///{path}", "SELECT count(*) FROM syncs WHERE finished_at > 0") == [(1,)]
    with pytest.raises(SinkError, match="closed"):
        await sink.threads(["thread_a"])
    await sink.aclose()  # idempotent
    # Settings are checked, and an empty file is refused when reading only, by either writer.
    with pytest.raises(SinkSettingsError, match="order desc, not asc"):
        await _open(path, writer, order="asc")
    with pytest.raises(SinkUnavailableError, match="no such database file"):
        await open_sqlite(str(tmp_path / "none.db"), "x", None, create=False, writer=writer)


@pytest.mark.anyio
async def test_integers_beyond_64_bits_are_stored_exactly(tmp_path: Path, writer: Any) -> None:
    # Regression: the raw JSON was made by orjson, which refuses such integers: the page failed.
    run = _run("thread_a", 1, metadata={"big": 2**70}, usage={"total_tokens": -(2**64)})
    async with await _open(tmp_path / "runs.db", writer) as sink:
        assert await sink.write_page(PageWrite("thread_a", [run], None, "done", run["id"], None))
    [(raw, tokens)] = query(
        f"sqlite:///{tmp_path / 'runs.db'}", "SELECT raw, total_tokens FROM runs"
    )
    assert json.loads(raw) == run
    assert tokens is None  # beyond the column's 64 bits


@pytest.mark.anyio
async def test_the_writer_is_a_thread_where_no_process_can_be_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any) -> Any:
        raise NotImplementedError  # e.g. an event loop without subprocess support

    monkeypatch.setattr(SQLiteProcessSink, "start", refuse)
    async with await open_sink(f"sqlite:///{tmp_path / 'runs.db'}") as sink:
        assert isinstance(sink, SQLiteSink)
    with pytest.raises(ValueError, match="writer must be"):
        await open_sqlite("x.db", "x", None, writer="fork")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_writer_that_cannot_start_leaves_it_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Python that cannot run the writer (here: one that exits at once) still exports.
    monkeypatch.setattr(_sqlite, "_BOOT", "import sys; sys.stderr.write('no orjson\\n')")
    async with await open_sink(f"sqlite:///{tmp_path / 'runs.db'}") as sink:
        assert isinstance(sink, SQLiteSink)


@pytest.mark.anyio
async def test_requests_after_the_writer_died_fail_with_one_line(tmp_path: Path) -> None:
    runs = [_run("thread_a", i) for i in range(2)]
    async with await open_sink(f"sqlite:///{tmp_path / 'runs.db'}") as sink:
        assert isinstance(sink, SQLiteProcessSink)
        sink._process.kill()
        with pytest.raises(SinkError, match=r"writer process exited unexpectedly \(exit code -9\)"):
            await sink.write_page(PageWrite("thread_a", runs, None, "done", runs[-1]["id"], None))
        with pytest.raises(SinkError, match="run the same command again"):
            await sink.threads(["thread_a"])
    assert query(f"sqlite:///{tmp_path / 'runs.db'}", "SELECT count(*) FROM runs") == [(0,)]


@pytest.mark.anyio
async def test_the_writer_leaves_ctrl_c_to_the_export(tmp_path: Path) -> None:
    # Ctrl-C reaches the writer too (the terminal signals the whole group): it keeps storing
    # the pages handed over until the export ends its input.
    runs = [_run("thread_a", i) for i in range(2)]
    async with await open_sink(f"sqlite:///{tmp_path / 'runs.db'}") as sink:
        assert isinstance(sink, SQLiteProcessSink)
        assert await sink.threads(["thread_a"]) == {}  # the writer is up, its handler set
        sink._process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.2)
        assert await sink.write_page(PageWrite("thread_a", runs, None, "done", "x", None))
    assert sink._process.returncode == 0


@pytest.mark.anyio
async def test_a_cancelled_request_does_not_shift_the_answers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    runs = [_run("thread_a", i) for i in range(3)]
    async with await open_sink(url) as sink:
        other = sqlite3.connect(tmp_path / "runs.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the writer waits for this lock
        first = asyncio.ensure_future(
            sink.write_page(PageWrite("thread_a", runs[:1], None, "pending", runs[0]["id"], None))
        )
        await asyncio.sleep(0.2)
        first.cancel()  # the write still happens; its answer is dropped
        other.execute("COMMIT")
        other.close()
        state = (await sink.threads(["thread_a"]))["thread_a"]
        assert (state.cursor, state.runs) == (runs[0]["id"], 1)
    assert first.cancelled()


def test_the_writer_dies_with_a_killed_export(live: LiveServer, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    tids = live.seed(30, 20, seed=21)
    live.do(lambda: live.server.add_fault(Fault(delay=0.02, times=100_000)))
    process = _start(live, url, _ids_file(tmp_path, tids))
    with killed_after(process, 90):
        _wait_for_rows(url, 40, process)
        [writer] = _children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while not _gone(writer):
        assert time.monotonic() < deadline, "the writer outlived the export"
        time.sleep(0.02)
    stored = query(url, "SELECT count(*) FROM runs")
    time.sleep(0.3)
    assert query(url, "SELECT count(*) FROM runs") == stored  # nothing written afterwards


def test_an_export_whose_writer_died_stops_then_a_rerun_completes(
    live: LiveServer, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    tids = live.seed(30, 20, seed=22)
    live.do(lambda: live.server.add_fault(Fault(delay=0.02, times=100_000)))
    ids_file = _ids_file(tmp_path, tids)
    process = _start(live, url, ids_file)
    with killed_after(process, 90):
        _wait_for_rows(url, 40, process)
        [writer] = _children(process.pid)
        os.kill(writer, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert stdout == b""
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, "\n".join(lines)
    assert "the SQLite writer process exited unexpectedly (exit code -9)" in lines[0]
    assert "run the same command again to resume" in lines[0]
    live.do(live.server.clear_faults)
    again = _start(live, url, ids_file)
    with killed_after(again, 90):
        stdout, stderr = again.communicate(timeout=90)
    assert again.returncode == 0, stderr
    assert_all_stored(live, url, tids)


def test_ctrl_c_in_a_terminal_stops_the_export_not_its_writer(
    live: LiveServer, tmp_path: Path
) -> None:
    # A terminal's Ctrl-C reaches the whole process group, the writer too: the export stops as
    # usual (exit code 130, the resume hint), and the same command completes it.
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    tids = live.seed(30, 20, seed=23)
    live.do(lambda: live.server.add_fault(Fault(delay=0.02, times=100_000)))
    ids_file = _ids_file(tmp_path, tids)
    command = [*PYTHON, "runs", "--threads-from", str(ids_file), "--page-size", "5"]
    command += ["--concurrency", "4", "--sink", url]
    env = subprocess_env(OPENAI_BASE_URL=live.url, OPENAI_API_KEY=API_KEY)
    process = subprocess.Popen(  # noqa: S603 - our own command line with our own interpreter
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
    )
    with killed_after(process, 90):
        _wait_for_rows(url, 40, process)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"run the same command again to resume" in stderr
    assert b"Traceback" not in stderr
    assert b"writer" not in stderr
    live.do(live.server.clear_faults)
    again = _start(live, url, ids_file)
    with killed_after(again, 90):
        _, stderr = again.communicate(timeout=90)
    assert again.returncode == 0, stderr
    assert_all_stored(live, url, tids)


def test_the_writer_imports_nothing_of_aiorunlist(tmp_path: Path) -> None:
    # It starts in a few milliseconds: no aiohttp, attrs, cattrs (what importing aiorunlist
    # costs), and nothing from the working directory.
    (tmp_path / "orjson.py").write_text("raise SystemExit('shadowed')\n")
    argv = [_sqlite._CORE_FILE, "runs.db", "null", "1", str(os.getpid())]
    code = (
        f"import sys\nsys.argv = ['-c', *{argv!r}]\nsys.stdin = open({os.devnull!r})\n"
        f"exec({_sqlite._BOOT!r})\n"
        "assert not {'aiorunlist', 'aiohttp', 'attrs', 'cattrs'} & set(sys.modules)\n"
        "assert sys.modules['orjson'].__name__ == 'orjson'\n"
        "sys.stderr.write('ran')\n"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, check=False
    )
    assert (out.returncode, out.stderr) == (0, b"ran")
    assert (tmp_path / "runs.db").exists()


def test_the_writer_protocol_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What the writer process does, run here: requests in, answers out, in order; errors are
    # answers, not the end of the writer; the end of the input closes the database.
    runs = [_run("thread_a", i) for i in range(2)]
    params = row_params("thread_a", runs, 1.0)
    values = ("done", runs[-1]["id"], None, None, 1.0, "w")
    requests = [
        ("threads", ["thread_a"]),
        ("write_page", "thread_a", params, 2, None, values),
        ("write_page", "thread_a", params, 2, None, values),  # lost: the row exists now
        ("threads", ["thread_a"]),
        ("start_sync",),
        ("finish_sync",),
        ("totals",),
        ("write_page", "thread_a", params[:3], 2, None, values),  # wrong parameter count
        ("close",),
    ]

    class Stream:
        def __init__(self, data: bytes = b"") -> None:
            self.buffer = io.BytesIO(data)

    stdin = Stream(b"".join(_sqlite_core.frame(request) for request in requests))
    stdout = Stream()
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(_sqlite_core, "_die_with_parent", lambda parent: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # Ctrl-C stays pytest's
    _sqlite_core.serve([str(tmp_path / "runs.db"), '{"order": "asc"}', "1", str(os.getppid())])
    stdout.buffer.seek(0)
    answers = []
    while (answer := _sqlite_core.read_frame(stdout.buffer)) is not None:
        answers.append(answer)
    assert answers[:5] == [("ok", None), ("ok", []), ("ok", True), ("ok", False), answers[4]]
    assert answers[4][1][0][:3] == ("thread_a", "done", runs[-1]["id"])
    assert answers[5:8] == [("ok", None), ("ok", None), answers[7]]
    assert answers[7][1][0] == 2
    assert answers[8][:2] == ("error", "sqlite")
    assert answers[9:] == [("ok", None)]  # closed
    # A database of another export is refused in an answer, before any request.
    stdin.buffer = io.BytesIO()
    stdout.buffer = io.BytesIO()
    _sqlite_core.serve([str(tmp_path / "runs.db"), '{"order": "desc"}', "1", str(os.getppid())])
    stdout.buffer.seek(0)
    kind, message = _sqlite_core.read_frame(stdout.buffer)[1:]
    assert kind == "settings"
    assert "order asc, not desc" in message


def test_an_export_leaves_the_garbage_collector_as_it_found_it(
    live: LiveServer, tmp_path: Path
) -> None:
    tids = live.seed(3, 5, seed=24)
    before = (gc.get_threshold(), gc.get_freeze_count())
    result = invoke(runs_args(live, *tids, "--sink", f"sqlite:///{tmp_path / 'runs.db'}"))
    assert result.exit_code == 0, result.stderr
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
