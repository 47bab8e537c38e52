"""Factories for realistic run objects, as the Assistants API v2 returns them."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

__all__ = ["BASE_CREATED_AT", "make_id", "make_run", "make_runs"]

#: ``created_at`` of index 0 when no timestamp is given (2024-04-25T...Z); later indexes are later.
BASE_CREATED_AT = 1_714_000_000

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

_STATUSES = (
    "completed",
    "failed",
    "cancelled",
    "expired",
    "incomplete",
    "requires_action",
    "in_progress",
    "queued",
    "cancelling",
)
_STATUS_WEIGHTS = (55, 8, 6, 4, 5, 7, 6, 5, 4)
_TERMINAL = frozenset({"completed", "failed", "cancelled", "expired", "incomplete"})
_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4-turbo", "o3-mini", "o1")
_REASONING_MODELS = frozenset({"o3-mini", "o1"})
_INSTRUCTIONS = (
    "You are a helpful assistant.",
    "You are a personal math tutor. Write and run code to answer math questions.",
    "You are a customer support agent for Acme Corp. Use the provided files to answer.",
    "Answer in French, concisely.",
    "",
)
_LAST_ERRORS = (
    ("server_error", "Sorry, something went wrong."),
    ("rate_limit_exceeded", "Rate limit reached for gpt-4o on tokens per min (TPM)."),
    ("invalid_prompt", "Your prompt was flagged as potentially violating our usage policy."),
)
_FUNCTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "get_weather",
        "Get the current weather in a given location",
        {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city, e.g. San Francisco"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    ),
    (
        "lookup_order",
        "Look up an order by its number",
        {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
            "additionalProperties": False,
        },
    ),
    (
        "send_email",
        "Send an email to a customer",
        {
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "subject": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["to", "subject", "body"],
        },
    ),
)
_FUNCTION_ARGUMENTS = {
    "get_weather": '{"location":"Paris, France","unit":"celsius"}',
    "lookup_order": '{"order_id":"A-10293"}',
    "send_email": '{"to":"jo@example.com","subject":"Your order","body":"It shipped."}',
}


def make_id(prefix: str, *parts: object, length: int = 24) -> str:
    """Return a stable, realistic-looking id such as ``run_Ab3...`` derived from ``parts``.

    The same ``parts`` always give the same id; different ``parts`` give different ids (up to
    a negligible chance of collision).
    """
    digest = hashlib.blake2b(
        "\x1f".join(map(str, parts)).encode(), digest_size=max(16, length)
    ).digest()
    return prefix + "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


def _function_tool(rng: random.Random, name: str, description: str, params: dict[str, Any]) -> Any:
    function: dict[str, Any] = {"name": name, "description": description, "parameters": params}
    if rng.random() < 0.5:
        function["strict"] = rng.choice((True, False, None))
    return {"type": "function", "function": function}


def _tools(rng: random.Random) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    if rng.random() < 0.5:
        tools.append({"type": "code_interpreter"})
    if rng.random() < 0.45:
        tool: dict[str, Any] = {"type": "file_search"}
        if rng.random() < 0.5:
            tool["file_search"] = {
                "max_num_results": rng.randint(1, 50),
                "ranking_options": {
                    "ranker": rng.choice(("auto", "default_2024_08_21")),
                    "score_threshold": round(rng.random(), 2),
                },
            }
        tools.append(tool)
    for name, description, params in _FUNCTIONS:
        if rng.random() < 0.35:
            tools.append(_function_tool(rng, name, description, params))
    return tools


def _tool_resources(rng: random.Random, thread_id: str, index: int, tools: list[Any]) -> Any:
    kinds = {tool["type"] for tool in tools}
    resources: dict[str, Any] = {}
    if "code_interpreter" in kinds:
        count = rng.randint(0, 3)
        resources["code_interpreter"] = {
            "file_ids": [
                make_id("file-", thread_id, index, "ci", i, length=22) for i in range(count)
            ]
        }
    if "file_search" in kinds:
        resources["file_search"] = {"vector_store_ids": [make_id("vs_", thread_id, "vs")]}
    return resources


def _tool_choice(rng: random.Random, tools: list[Any]) -> Any:
    roll = rng.random()
    if roll < 0.7 or not tools:
        return rng.choice(("auto", "auto", "none", "required")) if tools else "auto"
    tool = rng.choice(tools)
    if tool["type"] == "function":
        return {"type": "function", "function": {"name": tool["function"]["name"]}}
    return {"type": tool["type"]}


def _response_format(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.7:
        return "auto"
    if roll < 0.8:
        return {"type": "text"}
    if roll < 0.9:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "description": "A short structured answer.",
            "schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
                "required": ["answer", "confidence"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }


def _usage(rng: random.Random) -> dict[str, int]:
    prompt = rng.randint(20, 12_000)
    completion = rng.randint(1, 2_000)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def make_run(
    thread_id: str,
    index: int,
    *,
    rng: random.Random | None = None,
    created_at: int | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """Return a realistic run object (a ``RunObject`` of the spec) as a JSON-ready ``dict``.

    ``index`` is the run's position in its thread (0 = oldest); the id is derived from
    ``thread_id`` and ``index`` (so it is unique across threads), and the default ``created_at``
    (``BASE_CREATED_AT + 60 * index`` plus a jitter below 60 s) grows strictly with ``index``.
    Everything else (status, timestamps, tools, usage, ...) is drawn from ``rng``, which defaults
    to a ``random.Random`` seeded from ``thread_id`` and ``index``: without ``rng`` the result
    depends only on the arguments. ``status`` forces a status instead of drawing one.

    Besides every key the spec requires, the run has ``tool_resources`` and, for reasoning models,
    ``reasoning_effort``: keys the real service sends that the spec's schema does not list.
    """
    if rng is None:
        rng = random.Random(f"{thread_id}\x1f{index}")  # noqa: S311 - test data, not secrets
    if created_at is None:
        created_at = BASE_CREATED_AT + 60 * index + rng.randrange(60)
    if status is None:
        status = rng.choices(_STATUSES, weights=_STATUS_WEIGHTS)[0]
    elif status not in _STATUSES:
        raise ValueError(f"unknown run status {status!r}; expected one of {_STATUSES}")

    model = rng.choice(_MODELS)
    tools = _tools(rng)
    started_at: int | None = None if status == "queued" else created_at + rng.randint(0, 3)
    end = (started_at or created_at) + rng.randint(1, 240)
    expires_at: int | None = (
        None if status in _TERMINAL and status != "expired" else created_at + 600
    )
    run: dict[str, Any] = {
        "id": make_id("run_", thread_id, index),
        "object": "thread.run",
        "created_at": created_at,
        "assistant_id": make_id("asst_", thread_id, rng.randrange(3)),
        "thread_id": thread_id,
        "status": status,
        "started_at": started_at,
        "expires_at": expires_at,
        "cancelled_at": end if status == "cancelled" else None,
        "failed_at": end if status == "failed" else None,
        "completed_at": end if status == "completed" else None,
        "required_action": None,
        "last_error": None,
        "model": model,
        "instructions": rng.choice(_INSTRUCTIONS),
        "tools": tools,
        "tool_resources": _tool_resources(rng, thread_id, index, tools),
        "metadata": rng.choice(
            ({}, {}, {"user_id": f"user_{rng.randrange(1000)}"}, {"env": "prod"})
        ),
        "incomplete_details": None,
        "usage": _usage(rng) if status in _TERMINAL and status != "expired" else None,
        "temperature": rng.choice((1.0, 1.0, 0.2, 0.7, None)),
        "top_p": rng.choice((1.0, 1.0, 0.9, None)),
        "max_prompt_tokens": rng.choice((None, None, 1000, 4096, 20_000)),
        "max_completion_tokens": rng.choice((None, None, 256, 1000, 4096)),
        "truncation_strategy": rng.choice(
            (
                {"type": "auto", "last_messages": None},
                {"type": "auto", "last_messages": None},
                {"type": "last_messages", "last_messages": rng.randint(1, 20)},
            )
        ),
        "response_format": _response_format(rng),
        "tool_choice": _tool_choice(rng, tools),
        "parallel_tool_calls": rng.random() < 0.85,
    }
    if model in _REASONING_MODELS:
        run["reasoning_effort"] = rng.choice(("low", "medium", "high"))
        run["temperature"] = 1.0
        run["top_p"] = 1.0
    if status == "failed":
        code, message = rng.choice(_LAST_ERRORS)
        run["last_error"] = {"code": code, "message": message}
    elif status == "incomplete":
        reason = rng.choice(("max_completion_tokens", "max_prompt_tokens"))
        run["incomplete_details"] = {"reason": reason}
        run[reason] = run[reason] or 1000
    elif status == "requires_action":
        _add_required_action(run, rng, thread_id, index)
    return run


def _add_required_action(
    run: dict[str, Any], rng: random.Random, thread_id: str, index: int
) -> None:
    functions = [tool["function"]["name"] for tool in run["tools"] if tool["type"] == "function"]
    if not functions:
        name, description, params = _FUNCTIONS[0]
        run["tools"].append(_function_tool(rng, name, description, params))
        functions = [name]
    calls = [
        {
            "id": make_id("call_", thread_id, index, i),
            "type": "function",
            "function": {"name": name, "arguments": _FUNCTION_ARGUMENTS[name]},
        }
        for i, name in enumerate(rng.choices(functions, k=rng.randint(1, 3)))
    ]
    run["required_action"] = {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {"tool_calls": calls},
    }


def make_runs(
    thread_id: str,
    count: int,
    *,
    seed: int | None = None,
    start: int = 0,
    created_at: Callable[[int], int] | None = None,
) -> list[dict[str, Any]]:
    """Return ``count`` runs of ``thread_id`` in creation order (oldest first).

    The runs have indexes ``start .. start + count - 1`` (see `make_run`). With ``seed`` one
    ``random.Random(seed)`` draws them all; without, each run depends only on its thread and
    index. ``created_at(index)`` overrides the timestamps (e.g. to create ties).
    """
    rng = None if seed is None else random.Random(seed)  # noqa: S311 - test data, not secrets
    return [
        make_run(
            thread_id,
            index,
            rng=rng,
            created_at=None if created_at is None else created_at(index),
        )
        for index in range(start, start + count)
    ]
