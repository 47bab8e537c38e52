"""How values from callers and servers are shown in messages: quoted, and cut when long."""

from __future__ import annotations

__all__ = ["cut", "shown"]

#: Characters of a value shown in a message; a longer one is cut (its length is said).
LIMIT = 100


def shown(value: object, limit: int = LIMIT) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a 10 MB thread id stays a line."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    if len(text) > limit + 2:
        return f"{text[:limit]}... ({len(text):,} characters)"
    return text


def cut(text: str, limit: int = LIMIT) -> str:
    """``text`` as it is, or cut to ``limit`` characters when longer (for log lines)."""
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text):,} characters)"
    return text
