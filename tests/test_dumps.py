"""aiorunlist.dumps: a run as JSON, exactly, integers of any width included."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiorunlist
from aiorunlist import Run, structure, unstructure
from aiorunlist._protocol import loads
from aiorunlist.testing import MockResponse, MockTransport, make_runs
from tests.conftest import SOCKETLESS_URL, fast_client

pytestmark = pytest.mark.anyio

WIDE = 2**64 + 7  # wider than orjson encodes (it refuses beyond 64 bits)

#: Integers of every width, biased to the edges of 64 bits where orjson's range ends.
INTS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, -(2**64)]),
)


def _run_holding(ints: list[int]) -> dict[str, Any]:
    """A realistic run with ``ints`` where servers put integers: metadata, usage, unknown keys,
    a tool's JSON schema, nested arrays."""
    [d] = make_runs("thread_1", 1, seed=3)
    d = copy.deepcopy(d)
    first, rest = ints[0], ints[1:]
    d["usage"] = {"prompt_tokens": first, "completion_tokens": 1, "total_tokens": first + 1}
    d["metadata"] = {"n": first, "list": rest}
    d["x_counter"] = {"deep": [{"v": i} for i in rest]}
    d["tools"] = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "integer", "maximum": first}},
        },
        {"type": "a_new_tool", "limit": first},
    ]
    return d


def test_a_run_with_an_integer_beyond_64_bits_is_written_exactly() -> None:
    d = _run_holding([WIDE, -WIDE])
    run = structure(d, Run)
    with pytest.raises(TypeError, match="64-bit"):  # what dumps exists for
        orjson.dumps(unstructure(run))
    text = aiorunlist.dumps(run)
    assert json.loads(text) == d
    assert str(WIDE).encode() in text
    assert structure(json.loads(text), Run) == run


@settings(max_examples=150, deadline=None)
@given(st.lists(INTS, min_size=1, max_size=4))
def test_dumps_is_exact_for_integers_of_any_width(ints: list[int]) -> None:
    d = _run_holding(ints)
    run = structure(copy.deepcopy(d), Run)
    assert unstructure(run) == d
    text = aiorunlist.dumps(run)
    assert json.loads(text) == d
    assert loads(text) == d  # the library's own decoder keeps them exact too
    if all(-(2**63) <= i < 2**64 and -(2**63) <= i + 1 < 2**64 for i in ints):
        assert text == orjson.dumps(unstructure(run))  # orjson writes every run it can
    # A page and a list of runs as well.
    page = structure({"object": "list", "data": [d, d], "has_more": False}, aiorunlist.RunPage)
    assert json.loads(aiorunlist.dumps(page))["data"] == [d, d]
    assert json.loads(aiorunlist.dumps([run, run])) == [d, d]


def test_dumps_keeps_text_a_server_sent_as_escapes() -> None:
    # A lone surrogate escape is JSON; decoded exactly it is a str orjson will not encode.
    body = b'{"id": "run_1", "metadata": {"n": 18446744073709551616, "s": "\\ud800\\u00e9"}}'
    run = structure(loads(body), Run)
    text = aiorunlist.dumps(run)
    assert json.loads(text) == loads(body)
    # Without a lone surrogate, non-ASCII text stays UTF-8 on the exact path too.
    d = {"id": "run_1", "metadata": {"n": WIDE, "s": "é"}}
    expected = '{"id":"run_1","metadata":{"n":' + str(WIDE) + ',"s":"é"}}'
    assert aiorunlist.dumps(structure(d, Run)) == expected.encode()


def test_dumps_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        aiorunlist.dumps(Run(id="run_1", metadata={"n": WIDE, "when": object()}))


@pytest.mark.parametrize("wide", [False, True], ids=["orjson", "exact"])
def test_dumps_writes_floats_that_are_not_finite_as_null(wide: bool) -> None:
    """Regression: the docstring promised a ValueError, orjson wrote null, and the exact
    encoder raised: both encoders now write null (JSON has no form for them)."""
    metadata: dict[str, Any] = {"x": float("nan"), "y": [float("inf"), -float("inf"), 1.5]}
    if wide:
        metadata["n"] = WIDE
    data = json.loads(aiorunlist.dumps(Run(id="run_1", metadata=metadata)))
    assert data["metadata"]["x"] is None
    assert data["metadata"]["y"] == [None, None, 1.5]


async def test_a_listed_run_with_a_wide_integer_dumps_as_sent() -> None:
    d = _run_holding([WIDE, 2**100])
    body = json.dumps({"object": "list", "data": [d], "has_more": False}).encode()

    async with fast_client(
        SOCKETLESS_URL, transport=MockTransport(lambda r: MockResponse(200, body=body))
    ) as client:
        runs = [r async for r in client.runs("thread_1")]
        async with client.pages_many(["thread_1"]) as pages:
            [page] = [p async for p in pages]
    assert json.loads(aiorunlist.dumps(runs[0])) == d  # listed: nested fields typed late
    assert runs[0].usage is not None
    assert runs[0].usage.prompt_tokens == WIDE
    assert json.loads(aiorunlist.dumps(page.runs[0])) == d
