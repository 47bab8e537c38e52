"""The API reference as a reader sees it: no private names, every field of a run described."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from aiorunlist import Run

ROOT = Path(__file__).resolve().parent.parent


def test_every_field_of_a_run_is_described() -> None:
    doc = Run.__doc__ or ""
    names = [field.alias or field.name for field in attrs.fields(Run)]
    public = [name for name in names if not name.startswith("_")]
    missing = [name for name in public if f":param {name}:" not in doc]
    assert missing == []
    assert ":param created_at: when the run was created, in Unix seconds." in doc


def test_the_api_reference_shows_no_private_names(tmp_path: Path) -> None:
    for module in ("sphinx", "myst_parser", "furo"):
        pytest.importorskip(module, reason="the docs group is not installed (nox -s docs)")
    result = subprocess.run(  # noqa: S603 - Sphinx on this project's pages
        [sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-b", "html", "docs", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = html.unescape(re.sub(r"<[^>]+>", "", (tmp_path / "api.html").read_text("utf-8")))
    assert "_absent" not in text
    assert re.findall(r"\b_[a-z]\w*=", text) == []  # no private parameter in a signature
    assert "created_at (int | None) \u2013 when the run was created, in Unix seconds." in text


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", _pages(), ids=lambda page: page.name)
def test_pages_speak_to_users_not_of_development_history(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    hashes = [
        token
        for token in re.findall(r"\b[0-9a-f]{7,40}\b", text)
        if re.search(r"[a-f]", token) and re.search(r"\d", token)
    ]
    assert hashes == []  # commit hashes
    assert re.findall(r"aiorunlist\._\w+|\b_[a-z]\w*\.py\b", text) == []  # private modules
    assert "PASS:" not in text
