"""A wrong base URL or a dead server: a handful of lines on stderr, a hint and a total.

The real console script, as a subprocess, against the shipped fake server in another process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiorunlist._cli._failures import SHOWN_PER_CAUSE, failure_lines
from aiorunlist.exceptions import APIConnectionError, NotFoundError

SCRIPT = str(Path(sys.executable).with_name("aiorunlist"))
KEY = "sk-fake-aiorunlist"


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return {**base, "PYTHONWARNINGS": "error", **extra}


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``aiorunlist fake-server`` with 300 threads: its base URL and its file of ids."""
    ids = tmp_path_factory.mktemp("fake") / "ids.txt"
    args = ["fake-server", "--threads", "300", "--runs", "3", "--ids-file", str(ids)]
    process = subprocess.Popen(  # noqa: S603 - the project's own console script
        [SCRIPT, *args], stdout=subprocess.PIPE, text=True, env=env()
    )
    try:
        assert process.stdout is not None
        banner = ""
        while "Ctrl-C" not in banner:
            line = process.stdout.readline()
            assert line, "the fake server stopped"
            banner += line
        url = re.search(r"http://127\.0\.0\.1:\d+/v1", banner)
        assert url
        yield url[0], ids
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [SCRIPT, "runs", *args, "-o", os.devnull],
        capture_output=True,
        text=True,
        env=env(OPENAI_API_KEY=KEY),
        timeout=120,
        check=False,
    )


def test_a_base_url_without_v1_prints_a_handful_of_lines(fake_server: tuple[str, Path]) -> None:
    url, ids = fake_server
    result = run("--threads-from", str(ids), "--base-url", url.removesuffix("/v1"))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 4, result.stderr  # not 300
    assert ": failed with HTTP 404: Invalid URL" in lines[0]
    assert lines[1] == "aiorunlist: ... and 299 more threads failed the same way"
    assert lines[-2].startswith("aiorunlist: hint: every thread got HTTP 404: does the base URL")
    assert "/v1?" in lines[-2]
    assert re.fullmatch(r"0 runs from 300 threads \(300 failed\) in .*", lines[-1])


def test_a_dead_server_prints_a_handful_of_lines(fake_server: tuple[str, Path]) -> None:
    _, ids = fake_server
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("--threads-from", str(ids), "--base-url", f"http://127.0.0.1:{port}/v1")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) <= 2 * 2 + 3, result.stderr  # at most two causes (budget spent or not)
    assert any(line.startswith("aiorunlist: hint: no thread got an answer") for line in lines)
    assert re.fullmatch(r"0 runs from 300 threads \(300 failed\) in .*", lines[-1])


def test_a_base_url_with_whitespace_is_refused_in_one_line(fake_server: tuple[str, Path]) -> None:
    url, ids = fake_server
    result = run("--threads-from", str(ids), "--base-url", url.replace("/v1", "/v 1"))
    assert result.returncode == 2
    assert result.stderr.startswith("aiorunlist: error: base_url ")
    assert "whitespace" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_full_disk_names_the_file(fake_server: tuple[str, Path]) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    url, ids = fake_server
    result = subprocess.run(  # noqa: S603
        [SCRIPT, "runs", "--threads-from", str(ids), "--base-url", url, "-o", "/dev/full"],
        capture_output=True,
        text=True,
        env=env(OPENAI_API_KEY=KEY),
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == "aiorunlist: error: cannot write /dev/full: No space left on device\n"


def test_distinct_causes_each_get_a_few_lines_and_a_count() -> None:
    failures: dict[str, Exception] = {}
    for i in range(50):
        tid = f"thread_{i}"
        failures[tid] = NotFoundError(
            f"listing runs of thread {tid!r} failed with HTTP 404: No thread found with id "
            f"{tid!r} [request id req_{i}]",
            status_code=404,
            thread_id=tid,
        )
    failures["thread_x"] = APIConnectionError("listing runs of thread 'thread_x': reset")
    lines = failure_lines(failures, base_url="http://127.0.0.1:1/v1", none_succeeded=False)
    assert lines == [
        "thread_0: failed with HTTP 404: No thread found with id 'thread_0' [request id req_0]",
        "aiorunlist: ... and 49 more threads failed the same way",
        "thread_x: reset",
    ]
    few = dict(list(failures.items())[:SHOWN_PER_CAUSE])
    assert len(failure_lines(few, base_url="http://h/v1", none_succeeded=False)) == 3


def test_a_hint_only_when_nothing_succeeded() -> None:
    failures: dict[str, Exception] = {
        "thread_a": NotFoundError("listing runs of thread 'thread_a' failed", status_code=404)
    }
    some = failure_lines(failures, base_url="http://h/api", none_succeeded=False)
    assert some == ["thread_a: failed"]
    none = failure_lines(failures, base_url="http://h/api", none_succeeded=True)
    assert none[-1] == (
        "aiorunlist: hint: every thread got HTTP 404: does the base URL end in /v1? "
        "It is http://h/api"
    )
