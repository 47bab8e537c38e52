"""The README's first blocks work as written: they are read from README.md, so they cannot drift.

The first Python block runs here as it is. The command-line block (a venv, an editable
install with the ``cli`` extra, ``aiorunlist demo``) is checked here as shell and against the
project's metadata, and run verbatim in a fresh clone by ``nox -s readme`` (it installs
packages, which takes longer than a unit test should); ``README_VENV=1`` runs it here too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)


def blocks(language: str, text: str | None = None) -> list[str]:
    """The fenced blocks of ``language`` in README.md (or ``text``), in order."""
    text = README.read_text(encoding="utf-8") if text is None else text
    return [m[2] for m in _FENCE.finditer(text) if m[1] == language]


def section(title: str) -> str:
    """The text of the README section headed ``## title``."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def demo_block() -> str:
    """The first console block of the README's command-line section."""
    return blocks("console", section("Command line"))[0]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "VIRTUAL_ENV"))}
    env["PYTHONWARNINGS"] = "error"
    return env


def test_blocks_are_found() -> None:
    assert blocks("python", "intro\n```python\nx = 1\n```\n\n```console\nls\n```\n") == ["x = 1\n"]


def test_the_first_python_block_runs_as_written(tmp_path: Path) -> None:
    code = blocks("python")[0]
    assert "FakeServer" in code  # self-contained: it starts the fake server itself
    script = tmp_path / "first.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - the README's own code with this interpreter
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"run_\w+ \w+ (\d+|None)", lines[0])
    assert lines[-1].startswith("3000 runs: {")  # 100 threads of 30 runs, every one listed


def test_the_demo_block_is_a_fresh_clone_install() -> None:
    block = demo_block()
    subprocess.run(["bash", "-n", "-c", block], check=True, timeout=30)  # noqa: S603, S607
    commands = [shlex.split(line) for line in block.splitlines() if line.strip()]
    words = [word for command in commands for word in command]
    assert words[:4] == ["python3", "-m", "venv", ".venv"]
    assert "-e" in words
    target = words[words.index("-e") + 1]
    assert target == ".[cli]"  # the clone itself, with the command line's extra
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib on 3.10
    assert re.search(r'^cli = \["click>=8\.1"\]$', pyproject, re.MULTILINE)
    assert re.search(r'^aiorunlist = "aiorunlist\._cli:main"$', pyproject, re.MULTILINE)
    assert commands[-1] == ["aiorunlist", "demo"]


def test_every_install_instruction_installs_something_that_exists() -> None:
    """No page tells a reader to install a package that is not published (this one is not)."""
    texts = [README.read_text(encoding="utf-8")]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").rglob("*.md"))]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "aiorunlist").rglob("*.py"))]
    for text in texts:
        assert "pip install 'aiorunlist" not in text
        assert "pip install aiorunlist" not in text


@pytest.mark.skipif(
    os.environ.get("README_VENV") != "1",
    reason="installs into a fresh venv: run by `nox -s readme` (or README_VENV=1)",
)
def test_the_demo_block_runs_verbatim_in_a_fresh_clone(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    clone = tmp_path / "clone"
    # The files a clone has: tracked ones and new ones not ignored, as in the working tree.
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (clone / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name.decode())
    result = subprocess.run(  # noqa: S603
        ["bash", "-e", "-c", demo_block()],  # noqa: S607
        cwd=clone,
        capture_output=True,
        text=True,
        env={k: v for k, v in clean_env().items() if k != "PYTHONWARNINGS"},
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Runs by status" in result.stdout
    assert re.search(r"Listed [\d,]+ runs from 2,000 threads", result.stdout)
