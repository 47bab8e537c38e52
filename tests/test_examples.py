"""The examples run end to end against the fake server, so they cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("one_thread.py", "new runs since run_"),
        ("many_threads.py", "4500 runs from 1000 of 1003 threads"),
        ("quickstart.py", "3000 runs from 100 threads"),
        ("incremental_sync.py", "the newest one is the checkpoint: ok"),
        ("aiohttp_app.py", "-> 200 application/x-ndjson, 12 lines"),
        ("starlette_app.py", "-> 200 application/x-ndjson, 12 lines"),
        ("fastapi_app.py", "-> 200 application/x-ndjson, 12 lines"),
        ("worker.py", "batch 2: stopped by SIGTERM"),
    ],
)
def test_example_runs(script: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    result = subprocess.run(  # noqa: S603 - our own example with our own interpreter
        [sys.executable, "-W", "error", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert result.stderr == ""


def test_pytest_example_passes() -> None:
    """examples/test_with_fake_server.py is a pytest module for users to copy: it must pass."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    result = subprocess.run(  # noqa: S603 - our own example with our own interpreter
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-cov",  # the project's coverage floor is for the whole suite, not this file
            str(EXAMPLES / "test_with_fake_server.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 passed" in result.stdout
