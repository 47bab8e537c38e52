"""Micro-benchmark of structuring alone: microseconds to build one typed ``Run``.

Prints one JSON object. ``benchmarks/bench.py`` runs it (also against an older tree of the
package with ``--baseline-ref``, to show before/after); it runs on its own too::

    python benchmarks/micro.py
    PYTHONPATH=/tmp/old-tree python benchmarks/micro.py   # another copy of aiorunlist

Measured, each as the best of several repeats over the same prepared dicts:

* ``full_us``: a spec-shaped run from ``aiorunlist.testing.make_runs`` (tools, usage,
  truncation strategy, response format, ...), as a listing builds it (nested objects are
  typed on first read);
* ``full_read_us``: the same, then every field read (every nested object typed);
* ``eager_us``: the same run with every nested object typed at once, as
  ``aiorunlist.structure`` does;
* ``minimal_us``: a run of five keys (id, object, created_at, thread_id, status);
* ``page_us``: per run, a decoded page of 100 spec-shaped runs into a ``RunPage``;
* ``loads_us``: per run, ``orjson.loads`` of that page: the floor's own cost, for scale.
"""

from __future__ import annotations

import json
import sys
import timeit
from collections.abc import Callable
from typing import Any

import attrs
import orjson

import aiorunlist
from aiorunlist import _convert
from aiorunlist.testing import make_runs

REPEAT = 9


def best_us_per_item(fn: Callable[[], object], items: int, number: int) -> float:
    """Best (lowest) time per item over ``REPEAT`` repeats of ``number`` calls, in us."""
    return min(timeit.repeat(fn, number=number, repeat=REPEAT)) / number / items * 1e6


def main() -> None:
    runs: list[dict[str, Any]] = []
    for t in range(10):
        runs.extend(make_runs(f"thread_micro{t:03d}", 100, seed=t))
    minimal = [
        {
            "id": f"run_{i:06d}",
            "object": "thread.run",
            "created_at": 1_714_000_000 + i,
            "thread_id": "thread_micro",
            "status": "completed",
        }
        for i in range(1000)
    ]
    page = {
        "object": "list",
        "data": runs[:100],
        "first_id": runs[0]["id"],
        "last_id": runs[99]["id"],
        "has_more": True,
    }
    body = orjson.dumps(page)

    # The invariant the speed must not cost: a lossless round trip.
    for run in runs[:200] + minimal[:10]:
        assert aiorunlist.unstructure(aiorunlist.structure(run, aiorunlist.Run)) == run

    hook = getattr(_convert, "structure_run", None) or (
        lambda d: aiorunlist.structure(d, aiorunlist.Run)
    )
    eager = getattr(_convert, "structure_run_eager", hook)  # older trees: the same hook
    names = [f.name for f in attrs.fields(aiorunlist.Run)]

    def build_and_read() -> None:
        for r in runs:
            run = hook(r)
            for name in names:
                getattr(run, name)

    page_hook = _convert.structure_page_body
    result = {
        "full_us": best_us_per_item(lambda: [hook(r) for r in runs], len(runs), 5),
        "full_read_us": best_us_per_item(build_and_read, len(runs), 5),
        "eager_us": best_us_per_item(lambda: [eager(r) for r in runs], len(runs), 5),
        "minimal_us": best_us_per_item(lambda: [hook(r) for r in minimal], len(minimal), 5),
        "page_us": best_us_per_item(lambda: page_hook(page), 100, 50),
        "loads_us": best_us_per_item(lambda: orjson.loads(body), 100, 50),
        "bytes_per_run": len(body) / 100,
        "aiorunlist": aiorunlist.__file__,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
