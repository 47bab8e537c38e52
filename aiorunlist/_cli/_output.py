"""Output formats (jsonl, csv, table) and the ``--summary`` figures."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, BinaryIO

import orjson

from .._convert import unstructure_run_shared
from .._models import Run

__all__ = ["FORMATS", "Summary", "Writer", "fit_table", "format_count", "render_table"]

FORMATS = ("jsonl", "csv", "table")

#: The columns of the csv and table formats.
COLUMNS = ("thread_id", "id", "status", "created_at", "model", "total_tokens", "last_error_code")

# Table columns: (title, ideal width, narrowest width, right-aligned, kind). Every value is
# cut to its column's width, so a long id never pushes a row out of line.
_TABLE_SPECS: dict[str, tuple[str, int, int, bool, str]] = {
    "thread": ("THREAD", 31, 14, False, "id"),
    "run": ("RUN", 28, 14, False, "id"),
    "status": ("STATUS", 15, 10, False, "text"),
    "created": ("CREATED (UTC)", 19, 16, False, "time"),
    "model": ("MODEL", 12, 8, False, "text"),
    "tokens": ("TOKENS", 9, 7, True, "tokens"),
    "error": ("LAST ERROR", 19, 10, False, "text"),
}
# How a table is narrowed, step by step, until it fits: (column, narrowest width at this step).
_SHRINK_STEPS = (
    ("created", 16),  # minutes are enough
    ("thread", 24),
    ("run", 24),
    ("status", 11),  # in_progress; a rare requires_action is cut
    ("thread", 20),
    ("run", 20),
    ("error", 14),
    ("tokens", 7),  # larger counts in k and M
    ("thread", 15),
    ("run", 15),
)
_GAP_STEPS = (("thread", 13), ("run", 13))
# Then the gaps between columns go from two spaces to one (and ids narrow a little more), then
# whole columns go, in this order.
_DROP_ORDER = ("model", "created", "error", "status", "tokens", "thread")
_ELLIPSIS = "\u2026"


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _row(run: Run) -> tuple[str | int | None, ...]:
    usage = run.usage
    error = run.last_error
    return (
        run.thread_id,
        run.id,
        None if run.status is None else str(run.status),
        run.created_at,
        run.model,
        None if usage is None else usage.total_tokens,
        None if error is None or error.code is None else str(error.code),
    )


def _utc(timestamp: object) -> str:
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        try:
            moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return str(timestamp)
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return _text(timestamp)


def fit_table(width: int | None, *, thread: bool = True) -> tuple[list[tuple[str, int]], int]:
    """The table's columns with their widths, and the gap between columns, for a screen
    ``width`` columns wide (``None``: every column at its ideal width); without the thread
    column when ``thread`` is false. The last column is not padded: its width is only how much
    of a value is shown, all the room that is left."""
    widths = {name: spec[1] for name, spec in _TABLE_SPECS.items() if thread or name != "thread"}
    gap = 2
    if width is None:
        return list(widths.items()), gap

    def total() -> int:
        return sum(widths.values()) + gap * (len(widths) - 1)

    for name, narrowest in _SHRINK_STEPS:
        if total() <= width:
            break
        if name in widths:
            widths[name] = max(narrowest, widths[name] - (total() - width))
    if total() > width:
        gap = 1
    for name, narrowest in _GAP_STEPS:
        if total() <= width:
            break
        if name in widths:
            widths[name] = max(narrowest, widths[name] - (total() - width))
    for name in _DROP_ORDER:
        if total() <= width or len(widths) == 1:
            break
        widths.pop(name, None)
    last = next(reversed(widths))
    widths[last] = max(widths[last] + width - total(), 1)
    return list(widths.items()), gap


def _cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    return text[: width - 1] + _ELLIPSIS if width > 0 else ""


def _cut_id(text: str, width: int) -> str:
    """``run_HUHe…3F0FSYY``: the id's prefix, the start and the end of the rest."""
    if len(text) <= width or width < 5:
        return _cut(text, width)
    prefix, sep, _ = text.partition("_")
    prefix = prefix + sep if sep and len(prefix) + 1 <= width // 2 + 1 else ""
    room = width - len(prefix) - 1
    head = room // 2
    rest = text[len(prefix) :]
    return prefix + rest[:head] + _ELLIPSIS + rest[len(rest) - (room - head) :]


def _tokens(value: object, width: int) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return _cut(_text(value), width)
    text = f"{value:,}"
    if len(text) <= width:
        return text
    for divisor, unit in ((1_000, "k"), (1_000_000, "M"), (1_000_000_000, "G")):
        short = f"{value / divisor:.1f}".removesuffix(".0") + unit
        if len(short) <= width:
            return short
    return _cut(text, width)


class _Table:
    """Lays out the rows of the table format for one screen width (see :func:`fit_table`)."""

    def __init__(self, width: int | None, *, thread: bool) -> None:
        self.columns, gap = fit_table(width, thread=thread)
        self.gap = " " * gap
        self.widths = dict(self.columns)
        #: Values are shown whole (pushing the row right) when there is no width to fit.
        self.cut = width is not None

    def line(self, cells: Mapping[str, str]) -> str:
        parts = []
        last = len(self.columns) - 1
        for index, (name, width) in enumerate(self.columns):
            _, _, _, right, kind = _TABLE_SPECS[name]
            cell = cells[name]
            if self.cut:
                cell = _cut_id(cell, width) if kind == "id" else _cut(cell, width)
            if right:
                cell = cell.rjust(width)
            elif index != last:
                cell = cell.ljust(width)
            parts.append(cell)
        return self.gap.join(parts).rstrip() + "\n"

    def header(self) -> str:
        return self.line({name: spec[0] for name, spec in _TABLE_SPECS.items()})

    def row(self, run: Run) -> str:
        thread_id, run_id, status, created_at, model, tokens, code = _row(run)
        created = _utc(created_at)
        if self.widths.get("created", 19) < 19 and len(created) == 19:
            created = created[:16]  # to the minute
        return self.line(
            {
                "thread": _text(thread_id),
                "run": _text(run_id),
                "status": _text(status),
                "created": created,
                "model": _text(model),
                "tokens": _tokens(tokens, self.widths.get("tokens", 9)),
                "error": _text(code),
            }
        )


class Writer:
    """Writes runs to a binary stream in one of :data:`FORMATS`, counting the bytes written.

    ``jsonl`` writes each run as the server sent it, one JSON object per line: from the
    server's own decoded JSON when it is given (``raw``), so keys keep the server's order and
    every value and unknown field is kept; whitespace and string escapes are orjson's.
    ``csv`` and ``table`` write the :data:`COLUMNS`; the header is written only when
    ``header`` is true (not when appending to an output that already has one). ``table`` fits
    its rows in ``width`` columns (cutting ids in the middle, narrowing and dropping columns:
    :func:`fit_table`); ``thread_column`` false leaves out the thread id (one thread: it would
    say nothing).
    """

    def __init__(
        self,
        out: BinaryIO,
        fmt: str,
        *,
        offset: int = 0,
        header: bool = True,
        width: int | None = None,
        thread_column: bool = True,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.out = out
        self.format = fmt
        #: Bytes written so far (counting from the start of the output).
        self.offset = offset
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self.write: Callable[[Run, Mapping[str, Any] | None], None] = {
            "jsonl": self._write_jsonl,
            "csv": self._write_csv,
            "table": self._write_table,
        }[fmt]
        if header and fmt == "csv":
            self._emit(",".join(COLUMNS) + "\n")
        self._table = _Table(width, thread=thread_column)
        if header and fmt == "table":
            self._emit(self._table.header())

    def _put(self, data: bytes) -> None:
        self.out.write(data)
        self.offset += len(data)

    def _emit(self, text: str) -> None:
        self._put(text.encode("utf-8"))

    def _write_jsonl(self, run: Run, raw: Mapping[str, Any] | None = None) -> None:
        data = unstructure_run_shared(run) if raw is None else raw
        try:
            line = orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # an integer beyond 64 bits: written exactly, as the server sent it
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            line = text.encode("utf-8", "surrogatepass") + b"\n"
        self._put(line)

    def _write_csv(self, run: Run, raw: Mapping[str, Any] | None = None) -> None:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._csv.writerow(["" if v is None else v for v in _row(run)])
        self._emit(buffer.getvalue())

    def _write_table(self, run: Run, raw: Mapping[str, Any] | None = None) -> None:
        self._emit(self._table.row(run))

    def flush(self) -> None:
        """Flush the stream."""
        self.out.flush()


def format_count(n: float) -> str:
    """``12,345`` for counts and rates."""
    return f"{n:,.0f}"


class Summary:
    """Running totals for ``--summary`` and the demo: runs by status, tokens by model, errors."""

    def __init__(self) -> None:
        self.runs = 0
        self.by_status: Counter[str] = Counter()
        self.runs_by_model: Counter[str] = Counter()
        self.tokens_by_model: Counter[str] = Counter()
        self.errors_by_code: Counter[str] = Counter()

    def add(self, run: Run) -> None:
        """Count one run."""
        self.runs += 1
        status = "(none)" if run.status is None else str(run.status)
        self.by_status[status] += 1
        model = run.model or "(none)"
        self.runs_by_model[model] += 1
        usage = run.usage
        if usage is not None and isinstance(usage.total_tokens, int):
            self.tokens_by_model[model] += usage.total_tokens
        if status == "failed":
            error = run.last_error
            code = None if error is None or error.code is None else str(error.code)
            self.errors_by_code[code or "(no code)"] += 1

    def render(self) -> str:
        """The three tables, as text."""
        total = self.runs or 1
        blocks = [
            render_table(
                ("Runs by status", "runs", "share"),
                [
                    (status, format_count(n), f"{100 * n / total:.1f}%")
                    for status, n in self.by_status.most_common()
                ],
            ),
            render_table(
                ("Tokens by model", "runs", "total tokens"),
                [
                    (model, format_count(self.runs_by_model[model]), format_count(tokens))
                    for model, tokens in sorted(
                        ((m, self.tokens_by_model[m]) for m in self.runs_by_model),
                        key=lambda item: (-item[1], item[0]),
                    )
                ],
            ),
            render_table(
                ("Failed runs by last_error code", "runs"),
                [(code, format_count(n)) for code, n in self.errors_by_code.most_common()],
            ),
        ]
        return "\n".join(blocks)


def render_table(titles: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A small text table: the first column left-aligned, the others right-aligned."""
    rows = list(rows) or [("(none)", *[""] * (len(titles) - 1))]
    widths = [max(len(row[i]) for row in [titles, *rows]) for i in range(len(titles))]
    lines = []
    for row in [titles, *rows]:
        cells = [row[0].ljust(widths[0] + 2)]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines) + "\n"
