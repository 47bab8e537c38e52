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
