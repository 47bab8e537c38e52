"""The command line against careless arguments and a hostile server (regressions)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import API_KEY
from tests.test_cli import invoke

BIG = 2**64 + 1


@pytest.fixture(autouse=True)
def _no_openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OPENAI_"):
            monkeypatch.delenv(name)


@contextlib.contextmanager
def serving(body: bytes) -> Iterator[str]:
    """A server on 127.0.0.1 answering every request with ``body`` (a 200 list page)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_jsonl_keeps_integers_beyond_64_bits_exact() -> None:
    body = (
        b'{"object":"list","data":[{"id":"run_1","created_at":%d,"thread_id":"thread_1",'
        b'"metadata":{"n":"x"}}],"has_more":false}' % BIG
    )
    with serving(body) as url:
        result = invoke(["runs", "thread_1", "--base-url", url, "--api-key", API_KEY])
    assert result.exit_code == 0, result.stderr
    [line] = result.stdout_bytes.splitlines()
    assert json.loads(line) == {
        "id": "run_1",
        "created_at": BIG,
        "thread_id": "thread_1",
        "metadata": {"n": "x"},
    }


def test_resume_into_an_unwritable_device_is_one_line_and_leaves_no_state(
    tmp_path: Path,
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    state = tmp_path / "state"
    result = invoke(
        [
            "runs",
            "thread_1",
            "-o",
            "/dev/full",
            "--resume",
            str(state),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--api-key",
            API_KEY,
        ]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("aiorunlist: error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert not state.exists()


@pytest.mark.parametrize("which", ["state_first", "output_first"])
def test_a_state_file_hard_linked_to_the_output_is_refused(tmp_path: Path, which: str) -> None:
    state, output = tmp_path / "state", tmp_path / "runs.jsonl"
    first, second = (state, output) if which == "state_first" else (output, state)
    first.write_bytes(b"")
    os.link(first, second)
    result = invoke(
        [
            "runs",
            "thread_1",
            "-o",
            str(output),
            "--resume",
            str(state),
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--api-key",
            API_KEY,
        ]
    )
    assert result.exit_code == 2
    assert "must be different files" in result.stderr
    assert state.read_bytes() == b""  # nothing written to either name
