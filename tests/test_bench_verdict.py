"""The benchmark's verdict lines test the current targets (benchmarks/bench.py)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_under_test", ROOT / "benchmarks/bench.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def rounds(aiorunlist_us: float, raw_us: float) -> list[dict[str, dict[str, Any]]]:
    def one(cpu: float) -> dict[str, Any]:
        return {"cpu_us_per_run": cpu, "gc_us_per_run": 0.0, "wall_s": 1.0, "peak_rss_mb": 40.0}

    return [{"aiorunlist": one(aiorunlist_us), "raw": one(raw_us)} for _ in range(3)]


def verdict_line(bench: ModuleType, capsys: pytest.CaptureFixture[str], ratio: float) -> str:
    args = bench.parse_args(["--quick"])
    bench.report(args, {"machine": "test", "rounds": rounds(20.0 * ratio, 20.0)})
    lines = [line for line in capsys.readouterr().out.splitlines() if "raw floor" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("ratio", "word"), [(0.83, "PASS"), (1.0, "PASS"), (1.07, "FAIL"), (1.9, "FAIL")]
)
def test_cpu_verdict_is_at_most_the_raw_floor(
    bench: ModuleType, capsys: pytest.CaptureFixture[str], ratio: float, word: str
) -> None:
    line = verdict_line(bench, capsys, ratio)
    assert line.startswith(f"- {word}: aiorunlist CPU/run is {ratio:.2f}x the raw floor")
    assert "target <= 1.0x" in line


def test_help_states_the_targets(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "aiorunlist <= 1.0x the raw aiohttp + orjson floor" in out
    assert isinstance(bench.parse_args([]), argparse.Namespace)
