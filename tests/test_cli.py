"""The ``aiorunlist`` command line: ``runs``, ``fake-server`` and ``demo``.

The commands run their own event loop (``asyncio.run``), so the fake server they talk to
serves from a loop of its own in a background thread (:class:`LiveServer`), or from another
process. Commands are driven with click's CliRunner, and as real subprocesses where signals,
pipes and terminals matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import inspect
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from click.testing import CliRunner, Result

from aiorunlist._cli._app import cli
from aiorunlist._cli._inputs import CLIError, ThreadIds
from aiorunlist._cli._progress import LogWarnings, Progress
from aiorunlist._cli._serve import build_threads
from aiorunlist.testing import FakeServer, Fault, make_run
from tests.conftest import API_KEY

T = TypeVar("T")

SECRET = "sk-never-print-me-0123456789abcdef"
PYTHON = [sys.executable, "-W", "error", "-m", "aiorunlist"]


class LiveServer:
    """A FakeServer serving from its own event loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-server")
        self.server = FakeServer(api_key=API_KEY)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def do(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the server's loop (the server is not thread-safe)."""

        async def call() -> T:
            return fn()

        return self.call(call())

    @property
    def url(self) -> str:
        return self.server.base_url

    def seed(self, n: int, runs: int | Callable[[int], int], seed: int = 0) -> list[str]:
        return self.do(lambda: self.server.seed(n, runs, seed=seed))

    def runs_of(self, thread_id: str, order: str = "desc") -> list[dict[str, Any]]:
        """The runs of a thread as the server holds (and serves) them, in listing order."""
        by_id = {run["id"]: run for run in self.server.threads[thread_id]}
        return [by_id[run_id] for run_id in self.server.expected_ids(thread_id, order)]

    def __enter__(self) -> LiveServer:
        self.thread.start()
        self.call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        # Connections the command line just closed end in the server's loop: let them.
        self.call(asyncio.sleep(0.05))
        self.call(self.server.close())
        # Closed transports finish closing in later loop iterations (connection_lost); stop
        # the loop only after those ran, or their sockets are left to the garbage collector.
        self.call(asyncio.sleep(0.05))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENAI_"):
            monkeypatch.delenv(name)


@pytest.fixture
def live() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


def invoke(args: list[str], *, stdin: str | None = None) -> Result:
    """Run the command line in-process, with separate stdout and stderr."""
    kwargs: dict[str, Any] = {}
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        kwargs["mix_stderr"] = False  # click < 8.2
    return CliRunner(**kwargs).invoke(cli, args, input=stdin, catch_exceptions=False)


def runs_args(live: LiveServer, *args: str) -> list[str]:
    return ["runs", "--base-url", live.url, "--api-key", API_KEY, *args]


def jsonl(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines()]


@contextlib.contextmanager
def killed_after(process: subprocess.Popen[Any], seconds: float = 30) -> Iterator[None]:
    """Kill ``process`` if the block takes longer than ``seconds`` (a blocking read hangs)."""
    timer = threading.Timer(seconds, process.kill)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(extra)
    return env


@contextlib.contextmanager
def fake_server_process(*args: str) -> Iterator[str]:
    """``aiorunlist fake-server --port 0 ARGS`` as a subprocess, its banner read: what the
    block gets. Stopped with Ctrl-C (SIGINT) after the block, which it must exit 0 from."""
    server = subprocess.Popen(  # noqa: S603 - our own command line with our own interpreter
        [*PYTHON, "fake-server", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    with killed_after(server, 60):
        try:
            assert server.stdout is not None
            banner = ""
            while "Ctrl-C" not in banner:
                line = server.stdout.readline()
                assert line, server.stderr.read() if server.stderr else ""
                banner += line
            yield banner
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=20)
    assert server.returncode == 0


def assert_exact_export(
    live: LiveServer, thread_ids: list[str], runs: list[dict[str, Any]]
) -> None:
    """Every run of every thread exactly once, each thread's runs in listing order."""
    by_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_thread[run["thread_id"]].append(run)
    assert set(by_thread) <= set(thread_ids)
    for thread_id in thread_ids:
        assert by_thread.get(thread_id, []) == live.runs_of(thread_id)
    assert len(runs) == sum(len(live.server.threads[t]) for t in thread_ids)


# --- packaging -----------------------------------------------------------------------------------


def test_the_library_never_imports_click() -> None:
    # Nor any other extra (asyncpg), nor the SQLite sink's sqlite3.
    code = (
        "import sys, aiorunlist, aiorunlist._cli; "
        "assert not {'click', 'asyncpg', 'sqlite3'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)  # noqa: S603


def test_without_click_the_command_says_what_to_install() -> None:
    code = "import sys; sys.modules['click'] = None; from aiorunlist._cli import main; main()"
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    install = f"{sys.executable} -m pip install 'click>=8.1'"
    assert result.stderr == f"aiorunlist: the command line needs click: {install}\n"


def test_no_command_prints_the_help() -> None:
    result = invoke([])
    assert result.exit_code == 0
    assert "demo" in result.stdout
    assert "fake-server" in result.stdout


# --- formats -------------------------------------------------------------------------------------


def test_jsonl_lines_are_the_servers_runs_exactly(live: LiveServer) -> None:
    tids = live.seed(12, lambda i: i * 3, seed=3)  # 0 to 33 runs
    odd = {
        **make_run("thread_odd", 0, status="failed"),
        "status": "paused_for_review",  # a status this library does not know
        "x_future_field": {"nested": [1, 2.5, None, "é"]},
        "tools": [{"type": "web_browser", "web_browser": {"depth": 2}}],
    }
    odd.pop("instructions")  # a key the server left out stays out
    live.do(lambda: live.server.add_thread("thread_odd", [odd]))
    result = invoke(runs_args(live, *tids, "thread_odd", "--page-size", "7"))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert_exact_export(live, [*tids, "thread_odd"], jsonl(result.stdout_bytes))


def test_csv_has_the_useful_columns(live: LiveServer) -> None:
    tids = live.seed(5, 9, seed=4)
    result = invoke(runs_args(live, *tids, "--format", "csv", "--order", "asc"))
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "thread_id",
        "id",
        "status",
        "created_at",
        "model",
        "total_tokens",
        "last_error_code",
    ]
    expected = [run for tid in tids for run in live.runs_of(tid, "asc")]
    assert sorted(row["id"] for row in rows) == sorted(run["id"] for run in expected)
    by_id = {run["id"]: run for run in expected}
    for row in rows:
        run = by_id[row["id"]]
        assert row["thread_id"] == run["thread_id"]
        assert row["status"] == run["status"]
        assert row["created_at"] == str(run["created_at"])
        assert row["model"] == run["model"]
        usage = run["usage"]
        assert row["total_tokens"] == ("" if usage is None else str(usage["total_tokens"]))
        error = run["last_error"]
        assert row["last_error_code"] == ("" if error is None else error["code"])


def test_table_columns_are_aligned(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # room for every column at its full width
    tids = live.seed(3, 6, seed=8)
    result = invoke(runs_args(live, *tids, "--format", "table"))
    assert result.exit_code == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == [
        "THREAD",
        "RUN",
        "STATUS",
        "CREATED",
        "(UTC)",
        "MODEL",
        "TOKENS",
        "LAST",
        "ERROR",
    ]
    assert len(lines) == 18
    by_id = {run["id"]: run for tid in tids for run in live.runs_of(tid)}
    for line in lines:
        run_id = line.split()[1]
        run = by_id[run_id]
        assert line.index(run_id) == header.index("RUN")
        assert line.index(run["status"], len(run_id)) == header.index("STATUS")
        assert line.index(run["model"], header.index("MODEL")) == header.index("MODEL")
        if run["usage"] is not None:
            tokens = f"{run['usage']['total_tokens']:,}"
            assert line.index(tokens, header.index("MODEL")) + len(tokens) == header.index(
                "TOKENS"
            ) + len("TOKENS")
        if run["last_error"] is not None:
            assert line.endswith(run["last_error"]["code"])


# --- where the thread ids come from --------------------------------------------------------------


def _ids_text(tids: list[str]) -> str:
    return (
        "# threads to export\n"
        "\n"
        f"{tids[0]}\n"
        f"   {tids[1]}   # a trailing comment\n"
        f"{tids[0]}\n"  # a repeat: exported once
        "   \n"
        "# the end\n"
        f"{tids[2]}\n"
    )


def test_threads_from_a_file(live: LiveServer, tmp_path: Path) -> None:
    tids = live.seed(4, 5, seed=1)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(_ids_text(tids), encoding="utf-8")
    result = invoke(runs_args(live, "--threads-from", str(ids_file), tids[3], "--page-size", "2"))
    assert result.exit_code == 0, result.stderr
    assert_exact_export(live, tids, jsonl(result.stdout_bytes))


def test_threads_from_standard_input(live: LiveServer) -> None:
    tids = live.seed(3, 4, seed=2)
    result = invoke(runs_args(live, "--threads-from", "-"), stdin=_ids_text(tids))
    assert result.exit_code == 0, result.stderr
    assert_exact_export(live, tids, jsonl(result.stdout_bytes))


@pytest.mark.anyio
async def test_thread_ids_are_read_lazily_one_line_at_a_time() -> None:
    source = io.BytesIO(b"\xef\xbb\xbfa\nb # note\n#c\n\nb\n d \n")
    ids = ThreadIds(["x", "a"], source)
    got = []
    async for thread_id in ids:
        got.append(thread_id)
        assert not ids.exhausted
    assert got == ["x", "a", "b", "d"]
    assert ids.exhausted
    assert ids.read == 4
    with pytest.raises(CLIError, match=r"<stdin> line 2: not valid UTF-8"):
        async for _ in ThreadIds([], io.BytesIO(b"a\n\xff\n")):
            pass


def test_after_and_before_a_run(live: LiveServer) -> None:
    (tid,) = live.seed(1, 17, seed=9)
    ids = live.server.expected_ids(tid, "asc")
    after = invoke(runs_args(live, tid, "--order", "asc", "--after", ids[4], "--page-size", "4"))
    assert after.exit_code == 0, after.stderr
    assert [run["id"] for run in jsonl(after.stdout_bytes)] == ids[5:]
    before = invoke(runs_args(live, tid, "--order", "asc", "--before", ids[10], "--page-size", "3"))
    assert before.exit_code == 0, before.stderr
    assert [run["id"] for run in jsonl(before.stdout_bytes)] == ids[:10][::-1]


# --- summary, failures, progress -----------------------------------------------------------------


def _block(text: str, title: str) -> dict[str, list[str]]:
    """The rows of one summary table: first cell -> the other cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        name, *cells = re.split(r"\s{2,}", line.strip())
        rows[name] = cells
    return rows


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def test_summary_figures(live: LiveServer, tmp_path: Path) -> None:
    tids = live.seed(20, lambda i: i % 13, seed=6)
    out = tmp_path / "runs.jsonl"
    result = invoke(runs_args(live, *tids, "--summary", "-o", str(out)))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    runs = [run for tid in tids for run in live.server.threads[tid]]
    assert len(jsonl(out.read_bytes())) == len(runs)
    assert f"{len(runs):,} runs from 20 threads (0 failed)" in result.stderr
    statuses = _block(result.stderr, "Runs by status")
    assert {s: _count(cells[0]) for s, cells in statuses.items()} == Counter(
        run["status"] for run in runs
    )
    tokens: Counter[str] = Counter()
    for run in runs:
        tokens[run["model"]] += run["usage"]["total_tokens"] if run["usage"] else 0
    models = _block(result.stderr, "Tokens by model")
    assert {m: _count(cells[1]) for m, cells in models.items()} == tokens
    assert {m: _count(cells[0]) for m, cells in models.items()} == Counter(
        run["model"] for run in runs
    )
    errors = _block(result.stderr, "Failed runs by last_error code")
    assert {code: _count(cells[0]) for code, cells in errors.items()} == Counter(
        run["last_error"]["code"] for run in runs if run["status"] == "failed"
    )


def test_failed_threads_are_listed_and_the_others_exported(live: LiveServer) -> None:
    tids = live.seed(6, 8, seed=7)
    live.do(lambda: live.server.add_fault(Fault(status=503, thread_id=tids[2], times=10)))
    result = invoke(runs_args(live, *tids, "no_such_thread", "--max-retries", "1"))
    assert result.exit_code == 1
    *lines, total = result.stderr.splitlines()
    assert sorted(line.partition(": ")[0] for line in lines) == sorted([tids[2], "no_such_thread"])
    assert any("HTTP 503" in line for line in lines)
    assert any("HTTP 404" in line for line in lines)
    # Always a closing total when threads failed, terminal or not.
    assert re.fullmatch(r"[\d,]+ runs from 7 threads \(2 failed\) in .*", total)
    ok = [tid for tid in tids if tid != tids[2]]
    assert_exact_export(live, ok, jsonl(result.stdout_bytes))


def test_a_wrong_key_stops_everything_and_is_never_printed(
    live: LiveServer, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"thread_{i}\n" for i in range(10_000)), encoding="utf-8")
    result = invoke(
        ["runs", "--base-url", live.url, "--api-key", SECRET, "--threads-from", str(ids_file)]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("aiorunlist: error: ")
    assert "HTTP 401" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert SECRET not in result.stdout + result.stderr
    assert len(live.server.requests) < 10_000  # stopped early: every thread would fail alike


def test_the_key_is_never_printed(live: LiveServer) -> None:
    live.do(lambda: setattr(live.server, "api_key", SECRET))
    tids = live.seed(3, 5)
    live.do(lambda: live.server.add_fault(Fault(status=500, thread_id=tids[0], times=5)))
    outputs = []
    for fmt in ("jsonl", "csv", "table"):
        result = invoke(
            [
                "runs",
                *tids,
                "--base-url",
                live.url,
                "--api-key",
                SECRET,
                "--summary",
                "--format",
                fmt,
                "--max-retries",
                "0",
                "--progress",
            ]
        )
        assert result.exit_code == 1
        outputs.append(result.stdout + result.stderr)
    assert all(SECRET not in text for text in outputs)


def test_progress_is_drawn_in_place_and_cut_to_the_terminal(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    tids = live.seed(30, 5)
    result = invoke(runs_args(live, *tids, "--progress", "-o", os.devnull))
    assert result.exit_code == 0
    draws = result.stderr.split("\r")
    assert draws[0] == ""
    assert any(
        draw.startswith(("| threads", "/ threads", "- threads", "\\ threads")) for draw in draws
    )
    assert all(len(draw.removesuffix("\x1b[K")) <= 49 for draw in draws[:-1])
    assert draws[-1].startswith("\x1b[K")  # cleared, then the final line
    assert "150 runs from 30 threads" in draws[-1]


def test_progress_line_unit() -> None:
    stream = io.StringIO()
    progress = Progress(stream, enabled=True)
    progress.show("threads 1/2")
    progress.clear()
    assert stream.getvalue() == "\r/ threads 1/2\x1b[K\r\x1b[K"
    quiet = io.StringIO()
    Progress(quiet, enabled=False).show("x")
    assert quiet.getvalue() == ""


def test_library_warnings_are_one_line_each_and_clear_the_progress_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream, enabled=True)
    progress.show("threads 1/2")
    logger = logging.getLogger("aiorunlist")
    with LogWarnings(stream, progress):
        logger.warning("not retrying thread %s:\nthe budget is spent", "thread_a")
        logger.info("retrying thread %s", "thread_a")  # not shown
    logger.warning("after the command: not ours to show")
    assert stream.getvalue() == (
        "\r/ threads 1/2\x1b[K\r\x1b[K"
        "aiorunlist: warning: not retrying thread thread_a: the budget is spent\n"
    )


async def _read_all(ids: ThreadIds) -> list[str]:
    return [thread_id async for thread_id in ids]


def test_progress_through_a_file_of_ids(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"".join(b"thread_%d\n" % i for i in range(10)))
    with path.open("rb") as source:
        ids = ThreadIds([], source, source_name=str(path))
        totals = [ids.total]  # unknown until the end of the file
        assert ids.fraction_read == 0
        source.readline()
        assert ids.fraction_read == pytest.approx(1 / 10)
        assert len(asyncio.run(_read_all(ids))) == 9
        totals.append(ids.total)
        assert totals == [None, 9]
        assert ids.fraction_read == 1


# --- bad input -----------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> list[list[str]]:
    not_utf8 = tmp_path / "latin1.txt"
    not_utf8.write_bytes(b"thread_\xe9t\xe9\n")
    not_state = tmp_path / "notes.txt"
    not_state.write_text("hello\n", encoding="utf-8")
    key = ["--api-key", SECRET]
    url = ["--base-url", "http://127.0.0.1:9/v1"]
    return [
        ["runs", "thread_a", "--bogus", *key],
        ["runs", "thread_a", "--threads-from", str(tmp_path / "missing.txt"), *key],
        ["runs", "--threads-from", str(tmp_path), *key],
        ["runs", "--threads-from", str(not_utf8), *key, *url],
        ["runs", "thread_a", "--base-url", "ftp://example.com/v1", *key],
        ["runs", "thread_a", "--base-url", "not a url", *key],
        ["runs", "thread_a", "--base-url", f"http://user:{SECRET}@127.0.0.1/v1", *key],
        ["runs", "thread_a"],
        ["runs", "", *key],
        ["runs", "..", *key],
        ["runs", *key],
        ["runs", "thread_a", "thread_b", "--after", "run_1", *key],
        ["runs", "--threads-from", "-", "--before", "run_1", *key],
        ["runs", "thread_a", "--page-size", "101", *key],
        ["runs", "thread_a", "--concurrency", "0", *key],
        ["runs", "thread_a", "--order", "sideways", *key],
        ["runs", "thread_a", "--format", "xml", *key],
        ["runs", "thread_a", "--resume", str(tmp_path / "state"), *key],
        ["runs", "thread_a", "-o", str(tmp_path), *key],
        ["runs", "thread_a", "-o", str(tmp_path / "o"), "--resume", str(not_state), *key, *url],
        ["runs", "thread_a", "-o", str(tmp_path / "x"), "--resume", str(tmp_path / "x"), *key],
        ["nope"],
        ["demo", "--threads", "-1"],
        ["demo", "--chaos", "2"],
        ["fake-server", "--port", "70000"],
    ]


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    for args in _bad_inputs(tmp_path):
        result = invoke(args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.startswith("aiorunlist: error: "), (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        assert SECRET not in result.stderr


def test_a_port_in_use_is_bad_input(live: LiveServer) -> None:
    port = live.server.port
    result = invoke(["fake-server", "--port", str(port)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"aiorunlist: error: cannot listen on 127.0.0.1:{port}")


# --- resume --------------------------------------------------------------------------------------


def test_resume_after_failures_and_a_crash_residue(live: LiveServer, tmp_path: Path) -> None:
    tids = live.seed(8, 23, seed=5)  # 5 pages of 5 each
    cut, dead = tids[3], tids[5]
    first_page = live.runs_of(cut)[:5]
    body = orjson.dumps(
        {
            "object": "list",
            "data": first_page,
            "first_id": first_page[0]["id"],
            "last_id": first_page[-1]["id"],
            "has_more": True,
        }
    )

    def faults() -> None:
        # `cut` fails after its first page, `dead` on its first request.
        live.server.add_fault(Fault(body=body, thread_id=cut))
        live.server.add_fault(Fault(status=500, thread_id=cut))
        live.server.add_fault(Fault(status=503, thread_id=dead))

    live.do(faults)
    out, state = tmp_path / "runs.jsonl", tmp_path / "runs.state"
    args = runs_args(
        live,
        *tids,
        "--page-size",
        "5",
        "--max-retries",
        "0",
        "-o",
        str(out),
        "--resume",
        str(state),
    )
    first = invoke(args)
    assert first.exit_code == 1
    *failed, total = first.stderr.splitlines()
    assert sorted(line.partition(":")[0] for line in failed) == sorted([cut, dead])
    assert total.startswith(f"{8 * 23 - 18 - 23} runs from 8 threads (2 failed)")
    assert len(jsonl(out.read_bytes())) == 8 * 23 - 18 - 23

    # Left by a crash after writing, before checkpointing: a run the journal does not know
    # about, and a checkpoint cut short.
    with out.open("ab") as f:
        f.write(out.read_bytes().splitlines(keepends=True)[-1])
    with state.open("ab") as f:
        f.write(b'{"offset": 99, "last": {')

    other_order = invoke([*args, "--order", "asc"])
    assert other_order.exit_code == 2
    assert "belongs to another export" in other_order.stderr

    live.do(live.server.requests.clear)
    second = invoke(args)
    assert second.exit_code == 0, second.stderr
    assert second.stderr == ""
    assert_exact_export(live, tids, jsonl(out.read_bytes()))
    # Finished threads were not asked for again; `cut` went on after its last run written.
    asked = [(r.thread_id, r.query.get("after")) for r in live.server.requests]
    assert {thread_id for thread_id, _ in asked} == {cut, dead}
    assert (cut, first_page[-1]["id"]) in asked
    assert (cut, None) not in asked

    # Done is done: a third run asks for nothing, and says the threads were skipped.
    live.do(live.server.requests.clear)
    third = invoke([*args, "--summary"])
    assert third.exit_code == 0
    assert live.server.requests == []
    assert third.stderr.startswith("0 runs from 0 threads (0 failed) in ")
    assert "; 8 threads already done, skipped\n" in third.stderr
    assert_exact_export(live, tids, jsonl(out.read_bytes()))


def test_resume_a_walk_backwards_from_a_run(live: LiveServer, tmp_path: Path) -> None:
    (tid,) = live.seed(1, 30, seed=12)
    ids = live.server.expected_ids(tid, "asc")
    start = ids[25]
    page = live.runs_of(tid, "asc")[20:25]  # the first page before `start`, in list order
    body = orjson.dumps({"object": "list", "data": page, "has_more": True})

    def faults() -> None:
        live.server.add_fault(Fault(body=body, thread_id=tid))
        live.server.add_fault(Fault(status=500, thread_id=tid))

    live.do(faults)
    out, state = tmp_path / "runs.jsonl", tmp_path / "runs.state"
    args = runs_args(live, tid, "--order", "asc", "--before", start, "--page-size", "5")
    args += ["--max-retries", "0", "-o", str(out), "--resume", str(state)]
    assert invoke(args).exit_code == 1
    assert [run["id"] for run in jsonl(out.read_bytes())] == ids[20:25][::-1]
    assert invoke(args).exit_code == 0
    assert [run["id"] for run in jsonl(out.read_bytes())] == ids[:25][::-1]


def test_resume_refuses_an_output_shorter_than_recorded(live: LiveServer, tmp_path: Path) -> None:
    tids = live.seed(2, 3)
    out, state = tmp_path / "runs.csv", tmp_path / "runs.state"
    args = runs_args(live, *tids, "-f", "csv", "-o", str(out), "--resume", str(state))
    assert invoke(args).exit_code == 0
    out.write_bytes(out.read_bytes()[:10])
    result = invoke(args)
    assert result.exit_code == 2
    assert "fewer than" in result.stderr


@pytest.mark.parametrize("resume", [False, True])
def test_a_spent_quota_stops_the_export_at_once(
    live: LiveServer, tmp_path: Path, resume: bool
) -> None:
    tids = live.seed(60, 12, seed=3)  # 3 pages of 5 each
    spent = tids[10]
    live.do(
        lambda: live.server.add_fault(
            Fault(status=429, error_code="insufficient_quota", thread_id=spent)
        )
    )
    out, state = tmp_path / "runs.jsonl", tmp_path / "runs.state"
    args = runs_args(live, *tids, "--page-size", "5", "--concurrency", "2", "-o", str(out))
    if resume:
        args += ["--resume", str(state)]
    first = invoke(args)
    assert first.exit_code == 1
    assert first.stderr.startswith("aiorunlist: error: ")
    assert "quota" in first.stderr
    assert len(first.stderr.splitlines()) == 1
    # Stopped at the first such error: the threads far after it were never asked for.
    asked = {request.thread_id for request in live.server.requests}
    assert spent in asked
    assert not asked & set(tids[20:])
    written = jsonl(out.read_bytes())
    assert 0 < len(written) < 20 * 12
    assert not {run["thread_id"] for run in written} & {spent, *tids[20:]}
    if resume:  # the journal agrees with the output: the next attempt finishes it exactly
        per_thread = Counter(run["thread_id"] for run in written)
        complete = {tid for tid, count in per_thread.items() if count == 12}
        live.do(live.server.requests.clear)
        again = invoke(args)
        assert again.exit_code == 0, again.stderr
        assert_exact_export(live, tids, jsonl(out.read_bytes()))
        asked_again = {request.thread_id for request in live.server.requests}
        assert spent in asked_again
        assert not asked_again & complete


def _start_export(live: LiveServer, tmp_path: Path, tids: list[str]) -> subprocess.Popen[bytes]:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(tids) + "\n", encoding="utf-8")
    command = [
        *PYTHON,
        "runs",
        "--threads-from",
        str(ids_file),
        "--page-size",
        "5",
        "--concurrency",
        "2",
        "-o",
        str(tmp_path / "runs.jsonl"),
        "--resume",
        str(tmp_path / "runs.state"),
    ]
    env = subprocess_env(OPENAI_BASE_URL=live.url, OPENAI_API_KEY=API_KEY)
    return subprocess.Popen(  # noqa: S603 - our own command line with our own interpreter
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def _wait_for_checkpoints(state: Path, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if state.exists() and state.read_bytes().count(b"\n") >= count + 1:
            return
        time.sleep(0.02)
    raise AssertionError("no checkpoint written")


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_resume_after_an_interruption(live: LiveServer, tmp_path: Path, how: str) -> None:
    tids = live.seed(40, 20, seed=11)
    live.do(lambda: live.server.add_fault(Fault(delay=0.02, times=100_000)))  # slow server
    process = _start_export(live, tmp_path, tids)
    _wait_for_checkpoints(tmp_path / "runs.state", 2)
    if how == "ctrl-c":
        process.send_signal(signal.SIGINT)
    else:
        process.kill()
    _, stderr = process.communicate(timeout=20)
    written = len(jsonl((tmp_path / "runs.jsonl").read_bytes()))
    assert 0 < written < 40 * 20
    if how == "ctrl-c":
        assert process.returncode == 130
        assert b"interrupted after" in stderr
        assert b"Traceback" not in stderr
    live.do(live.server.clear_faults)
    again = _start_export(live, tmp_path, tids)
    stdout, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert stdout == stderr == b""
    assert_exact_export(live, tids, jsonl((tmp_path / "runs.jsonl").read_bytes()))


# --- subprocesses: the real command line ---------------------------------------------------------


def test_fake_server_and_runs_as_subprocesses() -> None:
    with fake_server_process("--threads", "7", "--runs", "9", "--seed", "3") as banner:
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", banner)
        ids_path = re.search(r"ids file: +(\S+)", banner)
        total = re.search(r"([\d,]+) runs", banner)
        assert url
        assert ids_path
        assert total
        assert "sk-fake-aiorunlist" in banner
        ids = Path(ids_path[1]).read_text(encoding="utf-8")
        assert ids.splitlines() == list(build_threads(7, 9, seed=3))
        result = subprocess.run(  # noqa: S603
            [*PYTHON, "runs", "--threads-from", "-", "--summary"],
            input=ids.encode(),
            capture_output=True,
            timeout=60,
            env=subprocess_env(OPENAI_BASE_URL=url[0], OPENAI_API_KEY="sk-fake-aiorunlist"),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        runs = jsonl(result.stdout)
        assert len(runs) == _count(total[1])
        assert len({run["id"] for run in runs}) == len(runs)
        assert result.stderr.startswith(f"{len(runs):,} runs from 7 threads".encode())
    assert not Path(ids_path[1]).exists()  # the temporary ids file is gone with the server


def test_fake_server_rate_limit_flags_and_a_client_that_keeps_to_them() -> None:
    with fake_server_process(
        "--threads",
        "4",
        "--runs",
        "40",
        "--seed",
        "5",
        "--rate",
        "8",
        "--burst",
        "2",
        "--rate-headers",
        "per-minute",
        "--latency",
        "0.01",
    ) as banner:
        assert "rate limit: 8 requests/s, bursts of 2 (per-minute headers)" in banner
        assert "latency:    10 ms per answer" in banner
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", banner)
        ids_path = re.search(r"ids file: +(\S+)", banner)
        total = re.search(r"([\d,]+) runs", banner)
        assert url
        assert ids_path
        assert total
        ids = Path(ids_path[1]).read_text(encoding="utf-8")
        result = subprocess.run(  # noqa: S603
            [*PYTHON, "runs", "--threads-from", "-", "--page-size", "10", "--summary"],
            input=ids.encode(),
            capture_output=True,
            timeout=60,
            env=subprocess_env(OPENAI_BASE_URL=url[0], OPENAI_API_KEY="sk-fake-aiorunlist"),
            check=False,
        )
        # Pages of 10 at 8 requests a second with bursts of 2: the client waits its turn
        # (the server's 429s, if any, are retried) and every run arrives once.
        assert result.returncode == 0, result.stderr
        runs = jsonl(result.stdout)
        assert len(runs) == _count(total[1])
        assert len({run["id"] for run in runs}) == len(runs)


def test_a_closed_pipe_ends_the_export_quietly(live: LiveServer) -> None:
    tids = live.seed(20, 30)
    process = subprocess.Popen(  # noqa: S603
        [*PYTHON, "runs", *tids, "--base-url", live.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(OPENAI_API_KEY=API_KEY),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    with killed_after(process):
        assert process.stdout.readline().startswith(b"{")
        process.stdout.close()  # like `| head -1`
        stderr = process.stderr.read()
        process.wait(timeout=20)
        process.stderr.close()
    assert process.returncode == 1
    assert stderr == b""


# --- demo ----------------------------------------------------------------------------------------


def test_demo() -> None:
    result = invoke(["demo", "--threads", "40", "--runs", "12"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert "Runs by status" in result.stdout
    assert "Tokens by model" in result.stdout
    text = " ".join(result.stdout.split())  # lines are wrapped to the screen
    assert re.search(r"runs from 40 threads in [\d.]+ s: [\d,]+ runs/s, [\d,]+ requests", text)


def test_demo_with_chaos_retries() -> None:
    result = invoke(
        ["demo", "--threads", "30", "--runs", "10", "--chaos", "0.3", "--page-size", "3"]
    )
    assert result.exit_code == 0, result.stderr
    retries = re.search(r"([\d,]+) retries", " ".join(result.stdout.split()))
    assert retries
    assert _count(retries[1]) > 0


def test_fake_server_quirks_flag_serves_a_server_that_ignores_parameters() -> None:
    with fake_server_process(
        "--threads", "2", "--runs", "30", "--seed", "9", "--quirks", "ignores-parameters"
    ) as banner:
        assert "quirks:     ignores-parameters" in banner
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", banner)
        first = re.search(r"aiorunlist runs (thread_\S+)", banner)
        assert url
        assert first
        request = urllib.request.Request(  # noqa: S310 - loopback, our own server
            f"{url[0]}/threads/{first[1]}/runs?limit=1&order=desc",
            headers={
                "Authorization": "Bearer sk-fake-aiorunlist",
                "OpenAI-Beta": "assistants=v2",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            page = json.loads(answer.read())
        # limit and order ignored: every run at once, ascending, and nothing more to come.
        created = [run["created_at"] for run in page["data"]]
        assert len(created) > 1
        assert created == sorted(created)
        assert page["has_more"] is False


def test_fake_server_refuses_an_unknown_quirk() -> None:
    result = invoke(["fake-server", "--quirks", "sloppy"])
    assert result.exit_code == 2
    assert "'sloppy' is not one of" in result.stderr
