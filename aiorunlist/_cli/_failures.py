"""The failed threads of an export, told in a few lines however many there are.

A wrong base URL or a dead server makes every thread fail the same way: thousands of
identical lines would hide the one thing to fix. Failures are grouped by their cause (the
error's text with the thread id and request id taken out); each cause shows its threads if
they are few, else the first one and how many more failed alike; then a hint where the cause
suggests one (a 404 on every thread: the base URL's ``/v1``; nothing answering: the server).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from ..exceptions import APIConnectionError, APIStatusError, NotFoundError, RunListError

__all__ = ["SHOWN_PER_CAUSE", "describe", "failure_lines"]

#: Up to this many threads that failed alike are each listed; of more, the first one is, and
#: the others are counted.
SHOWN_PER_CAUSE = 3

_REQUEST_ID = re.compile(r"\s*\[request id [^\]]*\]")


def describe(thread_id: str, error: Exception) -> str:
    """The error's text for a line that already starts with ``thread_id:``."""
    text = " ".join(str(error).split())
    for prefix in (f"listing runs of thread {thread_id!r}", f"listing runs of thread {thread_id}"):
        if text.startswith(prefix):
            text = text[len(prefix) :].lstrip(": ") or text
            break
    return text


def _cause(thread_id: str, error: Exception) -> tuple[str, str]:
    # The message without why it was not retried (a spent budget is not another cause).
    message = error.message if isinstance(error, RunListError) else str(error)
    text = _REQUEST_ID.sub("", describe(thread_id, RuntimeError(message)))
    return type(error).__name__, text.replace(thread_id, "{thread}")


def _hint(error: Exception, base_url: str, none_succeeded: bool) -> str | None:
    if not none_succeeded:
        return None
    if isinstance(error, NotFoundError):
        path = urlsplit(base_url).path.rstrip("/")
        if not path.endswith("/v1"):
            return f"every thread got HTTP 404: does the base URL end in /v1? It is {base_url}"
        return (
            f"every thread got HTTP 404: are these thread ids from the server at {base_url}, "
            "and is that the API's root?"
        )
    if isinstance(error, APIConnectionError):
        return f"no thread got an answer: is the server at {base_url} running, and the URL right?"
    if isinstance(error, APIStatusError) and error.status_code in (400, 405):
        return f"every thread got HTTP {error.status_code}: is {base_url} the API's root?"
    return None


def failure_lines(
    failures: Mapping[str, Exception],
    *,
    base_url: str,
    none_succeeded: bool,
    scrub: Callable[[str], str] = lambda text: text,
) -> list[str]:
    """The lines that tell ``failures`` (thread id -> error): a few per distinct cause."""
    groups: dict[tuple[str, str], list[tuple[str, Exception]]] = {}
    for thread_id, error in failures.items():
        groups.setdefault(_cause(thread_id, error), []).append((thread_id, error))
    lines: list[str] = []
    for members in groups.values():
        # A few threads are all named; of many that failed alike, one stands for the others.
        shown = members if len(members) <= SHOWN_PER_CAUSE else members[:1]
        for thread_id, error in shown:
            lines.append(f"{thread_id}: {scrub(describe(thread_id, error))}")
        more = len(members) - len(shown)
        if more > 0:
            alike = "thread" if more == 1 else "threads"
            lines.append(f"aiorunlist: ... and {more:,} more {alike} failed the same way")
    if len({cause[0] for cause in groups}) == 1:  # every thread failed with one kind of error
        hint = _hint(next(iter(failures.values())), base_url, none_succeeded)
        if hint is not None:
            lines.append(f"aiorunlist: hint: {scrub(hint)}")
    return lines
