"""The command line on a screen: the table fits the width, progress never mixes with output.

The real console script runs as a subprocess; where a terminal matters it gets a real one
(a pseudo-terminal from ``pty.openpty``, with its size set), and what the terminal received is
read back from the other end.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiorunlist import Client
from aiorunlist._cli._export import Export
from aiorunlist._cli._inputs import ThreadIds
from aiorunlist._cli._output import Writer, fit_table
from aiorunlist._convert import structure
from aiorunlist._models import Run
from aiorunlist.testing import Fault, make_run
from tests.conftest import API_KEY
from tests.test_cli import LiveServer

SCRIPT = str(Path(sys.executable).with_name("aiorunlist"))
ELLIPSIS = "\u2026"
STATUSES = {
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "cancelled",
    "failed",
    "completed",
    "incomplete",
    "expired",
}


def env(**extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OPENAI_") and k not in ("COLUMNS", "LINES")
    }
    return {**base, "PYTHONWARNINGS": "error", "TERM": "xterm", **extra}


@pytest.fixture
def live() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


def long_threads(live: LiveServer) -> list[str]:
    """Three threads with ids as long as some servers make them (43 characters)."""
    tids = []
    for n in range(3):
        tid = f"thread_{n}" + "x" * 35
        assert len(tid) == 43
        live.do(partial(live.server.add_thread, tid, [make_run(tid, i) for i in range(7)]))
        tids.append(tid)
    return tids


class Terminal:
    """A pseudo-terminal ``columns`` wide; ``output`` is all that was shown on it."""

    def __init__(self, columns: int, rows: int = 40) -> None:
        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer has closed its end
                return
            if not data:
                return
            self._chunks.append(data)

    def run(self, args: list[str], *, stdout: Any = None, **kwargs: Any) -> bytes | None:
        """Run ``args`` with standard error (and output, unless given) on this terminal;
        returns what went to a ``subprocess.PIPE`` standard output."""
        self._reader.start()
        try:
            process = subprocess.Popen(  # noqa: S603 - the project's own console script
                args,
                stdin=subprocess.DEVNULL,
                stdout=self.slave if stdout is None else stdout,
                stderr=self.slave,
                start_new_session=True,
                **kwargs,
            )
        finally:
            os.close(self.slave)
        try:
            out: bytes | None = process.communicate(timeout=120)[0]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self._reader.join(timeout=30)
        os.close(self.master)
        assert process.returncode == 0
        return out

    @property
    def output(self) -> str:
        return b"".join(self._chunks).decode().replace("\r\n", "\n")


def _table_rows(text: str, width: int) -> tuple[str, list[str]]:
    header, *rows = text.splitlines()
    assert all(len(line) <= width for line in [header, *rows]), max(map(len, [header, *rows]))
    return header, rows


def _matches(cell: str, full: str) -> bool:
    """Whether ``cell`` shows ``full``, whole or shortened in the middle."""
    if ELLIPSIS not in cell:
        return cell == full
    head, _, tail = cell.partition(ELLIPSIS)
    return full.startswith(head) and full.endswith(tail) and len(cell) < len(full)


@pytest.mark.parametrize("width", [80, 120])
def test_table_fits_the_width_of_columns(live: LiveServer, width: int) -> None:
    tids = long_threads(live)
    result = subprocess.run(  # noqa: S603
        [SCRIPT, "runs", *tids, "--base-url", live.url, "--format", "table"],
        capture_output=True,
        text=True,
        env=env(OPENAI_API_KEY=API_KEY, COLUMNS=str(width)),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    header, rows = _table_rows(result.stdout, width)
    assert header.startswith("THREAD ")
    assert len(rows) == 21
    runs = {run["id"]: run for tid in tids for run in live.runs_of(tid)}
    status_at = header.index("STATUS")
    run_at = header.index("RUN")
    for row in rows:
        thread_cell = row[:run_at].strip()
        run_cell = row[run_at:status_at].strip()
        [run_id] = [r for r in runs if _matches(run_cell, r)]
        assert _matches(thread_cell, runs[run_id]["thread_id"])
        # Every column in line: the status starts right under its title.
        status = row[status_at:].split()[0]
        assert status.rstrip(ELLIPSIS) == runs[run_id]["status"][: len(status.rstrip(ELLIPSIS))]
        assert row[status_at - 1] == " "
    if width == 80:
        assert all(ELLIPSIS in row.split()[0] for row in rows)  # the long ids are shortened


def test_one_thread_has_no_thread_column(live: LiveServer) -> None:
    [tid] = live.seed(1, 12)
    result = subprocess.run(  # noqa: S603
        [SCRIPT, "runs", tid, "--base-url", live.url, "--format", "table"],
        capture_output=True,
        text=True,
        env=env(OPENAI_API_KEY=API_KEY, COLUMNS="80"),
        timeout=120,
        check=False,
    )
    header, rows = _table_rows(result.stdout, 80)
    assert header.split()[:2] == ["RUN", "STATUS"]
    assert "MODEL" in header  # the room the thread column left keeps the model
    assert len(rows) == 12
    for row in rows:  # a status too long for its column is cut, visibly
        status = row.split()[1]
        assert status in STATUSES or any(
            status.endswith(ELLIPSIS) and full.startswith(status[:-1]) for full in STATUSES
        )


def test_table_fits_the_terminal_when_columns_is_not_set(live: LiveServer) -> None:
    tids = long_threads(live)
    terminal = Terminal(100)
    terminal.run(
        [SCRIPT, "runs", *tids, "--base-url", live.url, "--format", "table"],
        env=env(OPENAI_API_KEY=API_KEY),
    )
    header, rows = _table_rows(terminal.output, 100)
    assert len(rows) == 21
    assert "MODEL" in header
    assert "\x1b[K" not in terminal.output  # the runs go to this terminal: no progress line


def test_table_through_a_pipe_fits_the_terminal_of_standard_error(live: LiveServer) -> None:
    tids = long_threads(live)
    terminal = Terminal(100)
    out = terminal.run(
        [SCRIPT, "runs", *tids, "--base-url", live.url, "--format", "table"],
        stdout=subprocess.PIPE,
        env=env(OPENAI_API_KEY=API_KEY),
    )
    assert out is not None
    header, rows = _table_rows(out.decode(), 100)
    assert len(header) > 80  # the terminal's 100 columns, not the fallback 80
    assert len(rows) == 21


def test_no_progress_when_the_output_is_piped_to_the_same_terminal(live: LiveServer) -> None:
    # `aiorunlist runs ... | head`: stdout is a pipe, stderr the terminal `head` prints on.
    tids = live.seed(40, 20)
    terminal = Terminal(80)
    out = terminal.run(
        [SCRIPT, "runs", *tids, "--base-url", live.url],
        stdout=subprocess.PIPE,
        env=env(OPENAI_API_KEY=API_KEY),
    )
    assert out is not None
    assert len(out.splitlines()) == 800
    assert terminal.output == ""  # no progress frame to glue to the first row


def test_progress_when_the_runs_go_to_a_file(live: LiveServer, tmp_path: Path) -> None:
    tids = live.seed(40, 20)
    terminal = Terminal(80)
    with (tmp_path / "runs.jsonl").open("wb") as file:  # `> runs.jsonl`
        terminal.run(
            [SCRIPT, "runs", *tids, "--base-url", live.url],
            stdout=file,
            env=env(OPENAI_API_KEY=API_KEY),
        )
    assert len((tmp_path / "runs.jsonl").read_bytes().splitlines()) == 800
    screen = terminal.output
    assert re.search(r"\r[|/\\-] threads ", screen)  # drawn in place ...
    assert "\r\x1b[K800 runs from 40 threads (0 failed)" in screen  # ... erased, then the total
    assert all(len(line) <= 80 for line in re.split(r"[\r\n]", screen))


def test_demo_progress_only_when_it_cannot_mix(tmp_path: Path) -> None:
    demo = [SCRIPT, "demo", "--threads", "300", "--runs", "10"]
    piped = Terminal(80)
    out = piped.run(demo, stdout=subprocess.PIPE, env=env())
    assert out is not None
    assert b"Runs by status" in out
    assert piped.output == ""
    shown = Terminal(80)
    shown.run(demo, env=env())
    screen = shown.output
    assert "Runs by status" in screen
    frames = list(re.finditer(r"\r[|/\\-] [^\r\n]*?\x1b\[K", screen))
    assert frames
    # Every frame is followed by the next one or by its erasure, never by a line of output.
    assert all(screen[frame.end()] == "\r" for frame in frames)
    rest = re.sub(r"\r[|/\\-] [^\r\n]*?\x1b\[K|\r\x1b\[K", "", screen)
    assert "\r" not in rest
    assert "\x1b" not in rest


# --- the layout, for any width ----------------------------------------------------------------


def _render(width: int | None, thread: bool, runs: list[dict[str, Any]]) -> list[str]:
    buffer = io.BytesIO()
    writer = Writer(buffer, "table", width=width, thread_column=thread)
    for raw in runs:
        writer.write(structure(raw, Run), raw)
    return buffer.getvalue().decode().splitlines()


_IDS = st.text(alphabet="abcXYZ019_", min_size=1, max_size=60)


@given(
    width=st.integers(1, 300),
    thread=st.booleans(),
    thread_id=_IDS,
    run_id=_IDS,
    model=st.text(alphabet="gpt-4o.mini", max_size=30),
    tokens=st.integers(0, 10**12),
)
def test_every_line_fits_any_width(
    width: int, thread: bool, thread_id: str, run_id: str, model: str, tokens: int
) -> None:
    run = make_run("thread_x", 0, status="failed")
    run.update(thread_id=thread_id, id=run_id, model=model)
    run["usage"] = {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}
    lines = _render(width, thread, [run])
    assert len(lines) == 2
    assert all(len(line) <= width for line in lines)
    columns, gap = fit_table(width, thread=thread)
    assert sum(w for _, w in columns) + gap * (len(columns) - 1) <= max(width, 1)
    if not thread:
        assert "thread" not in dict(columns)
    elif width >= 80:
        assert "thread" in dict(columns)


def test_without_a_width_values_are_whole() -> None:
    run = make_run("thread_" + "y" * 36, 0)
    lines = _render(None, True, [run])
    assert run["id"] in lines[1]
    assert run["thread_id"] in lines[1]
    assert ELLIPSIS not in lines[1]


# --- lines that read well at 80 columns ---------------------------------------------------------


def test_demo_lines_fit_80_columns() -> None:
    result = subprocess.run(  # noqa: S603
        [SCRIPT, "demo", "--threads", "300", "--runs", "10"],
        capture_output=True,
        text=True,
        env=env(COLUMNS="80"),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    text = " ".join(result.stdout.split())
    assert re.search(r"holds 300 threads with [\d,]+ runs \(seed 0\)\.", text)
    assert re.search(r"Listed [\d,]+ runs from 300 threads in [\d.]+ s: ", text)


def test_fake_server_banner_fits_80_columns_and_keeps_the_key_whole() -> None:
    process = subprocess.Popen(  # noqa: S603
        [SCRIPT, "fake-server", "--threads", "5"],
        stdout=subprocess.PIPE,
        text=True,
        env=env(COLUMNS="80"),
    )
    try:
        assert process.stdout is not None
        banner: list[str] = []
        while not banner or "Ctrl-C" not in banner[-1]:
            line = process.stdout.readline()
            assert line, "the fake server stopped"
            banner.append(line.rstrip("\n"))
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert max(map(len, banner)) <= 80, banner
    assert "  export OPENAI_API_KEY=sk-fake-aiorunlist" in banner
    assert any(
        re.fullmatch(r"  export OPENAI_BASE_URL=http://127\.0\.0\.1:\d+/v1", x) for x in banner
    )


def test_ctrl_c_without_resume_suggests_it(live: LiveServer, tmp_path: Path) -> None:
    tids = live.seed(40, 20)
    live.do(lambda: live.server.add_fault(Fault(delay=0.05, times=100_000)))  # slow server
    process = subprocess.Popen(  # noqa: S603
        [SCRIPT, "runs", *tids, "--base-url", live.url, "--concurrency", "1", "--page-size", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(OPENAI_API_KEY=API_KEY),
    )
    assert process.stdout is not None
    try:
        assert process.stdout.readline().startswith(b"{")  # under way
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert re.fullmatch(
        rb"aiorunlist: interrupted after [\d,]+ runs; next time, add --resume STATE "
        rb"\(with -o FILE\) to be able to carry on\n",
        stderr,
    )


def test_progress_through_a_file_agrees_with_its_bar(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"".join(b"thread_%03d\n" % i for i in range(300)))
    client = Client(API_KEY, base_url="http://127.0.0.1:9/v1")
    with path.open("rb") as source:
        ids = ThreadIds([], source, source_name=str(path))
        for _ in range(189):
            source.readline()
        ids.read = 189
        export = Export(client, ids)
        export.threads_done = 185
        line = export.status_line()
    # 189 of 300 read (63% of the file): 185 done of about 300, and the bar says so.
    assert line.startswith("threads 185/~300 [############--------]  62% ")
