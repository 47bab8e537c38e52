"""The ``runs`` row of a run's JSON: shared by both sinks, and by the SQLite writer process,
which loads this module by itself (it imports nothing but orjson and the standard library)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["COLUMNS", "OPEN_STATUSES", "SCHEMA_VERSION", "row_params", "run_row"]

#: The schema this version of aiorunlist writes (``schema_version.version``).
SCHEMA_VERSION = 1

#: Statuses that are not final: a re-run lists such runs again so that their new status lands.
OPEN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")

#: The columns of ``runs``, in the order of :func:`run_row`.
COLUMNS = (
    "id",
    "thread_id",
    "assistant_id",
    "status",
    "model",
    "created_at",
    "started_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "last_error_code",
    "incomplete_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "raw",
    "fetched_at",
)

_EMPTY: Mapping[str, Any] = {}
_BIG = 2**63


def _int(value: object) -> int | None:
    # ``type() is int``: not a bool; and within a 64-bit column.
    return value if type(value) is int and -_BIG <= value < _BIG else None


def _dumps(value: Any) -> bytes:
    """JSON of ``value``, key order kept; exact for integers beyond 64 bits too (which orjson
    refuses: the standard library's encoder writes those)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def run_row(thread_id: str, run: Mapping[str, Any], fetched_at: float) -> tuple[Any, ...]:
    """The ``runs`` row of one run as the server sent it (values of the wrong type: NULL)."""
    get = run.get
    usage = get("usage")
    if not isinstance(usage, Mapping):
        usage = _EMPTY
    error = get("last_error")
    code = error.get("code") if isinstance(error, Mapping) else None
    incomplete = get("incomplete_details")
    reason = incomplete.get("reason") if isinstance(incomplete, Mapping) else None
    assistant_id, status, model = get("assistant_id"), get("status"), get("model")
    return (
        get("id"),
        thread_id,
        assistant_id if type(assistant_id) is str else None,
        status if type(status) is str else None,
        model if type(model) is str else None,
        _int(get("created_at")),
        _int(get("started_at")),
        _int(get("completed_at")),
        _int(get("failed_at")),
        _int(get("cancelled_at")),
        code if type(code) is str else None,
        reason if type(reason) is str else None,
        _int(usage.get("prompt_tokens")),
        _int(usage.get("completion_tokens")),
        _int(usage.get("total_tokens")),
        _dumps(run).decode(),
        fetched_at,
    )


def row_params(thread_id: str, runs: Sequence[Mapping[str, Any]], now: float) -> list[Any]:
    """The parameters of :func:`upsert` for ``runs``, flat."""
    return [value for run in runs for value in run_row(thread_id, run, now)]
