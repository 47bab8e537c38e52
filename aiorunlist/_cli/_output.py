"""Output formats (jsonl, csv, table) and the ``--summary`` figures."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import BinaryIO

import orjson

from .._convert import unstructure_run_shared
from .._models import Run

__all__ = ["FORMATS", "Summary", "Writer", "format_count", "render_table"]

FORMATS = ("jsonl", "csv", "table")

#: The columns of the csv and table formats.
COLUMNS = ("thread_id", "id", "status", "created_at", "model", "total_tokens", "last_error_code")

# Table: (title, width, right-aligned). Values wider than their column push the row right.
_TABLE_COLUMNS = (
    ("THREAD", 31, False),
    ("RUN", 28, False),
    ("STATUS", 15, False),
    ("CREATED (UTC)", 19, False),
    ("MODEL", 12, False),
    ("TOKENS", 9, True),
    ("LAST ERROR", 0, False),
)


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


def _table_line(cells: Sequence[str]) -> str:
    parts = []
    for (_, width, right), cell in zip(_TABLE_COLUMNS, cells, strict=True):
        parts.append(cell.rjust(width) if right else cell.ljust(width))
    return "  ".join(parts).rstrip() + "\n"


class Writer:
    """Writes runs to a binary stream in one of :data:`FORMATS`, counting the bytes written.

    ``jsonl`` writes each run exactly as the server sent it (``unstructure`` is lossless:
    unknown fields and values included), one JSON object per line. ``csv`` and ``table`` write
    the :data:`COLUMNS`; the header is written only when ``header`` is true (not when appending
    to an output that already has one).
    """

    def __init__(self, out: BinaryIO, fmt: str, *, offset: int = 0, header: bool = True) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.out = out
        self.format = fmt
        #: Bytes written so far (counting from the start of the output).
        self.offset = offset
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\n")
        self.write: Callable[[Run], None] = {
            "jsonl": self._write_jsonl,
            "csv": self._write_csv,
            "table": self._write_table,
        }[fmt]
        if header and fmt == "csv":
            self._emit(",".join(COLUMNS) + "\n")
        elif header and fmt == "table":
            self._emit(_table_line([title for title, _, _ in _TABLE_COLUMNS]))

    def _put(self, data: bytes) -> None:
        self.out.write(data)
        self.offset += len(data)

    def _emit(self, text: str) -> None:
        self._put(text.encode("utf-8"))

    def _write_jsonl(self, run: Run) -> None:
        data = unstructure_run_shared(run)
        try:
            line = orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # an integer beyond 64 bits: written exactly, as the server sent it
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            line = text.encode("utf-8", "surrogatepass") + b"\n"
        self._put(line)

    def _write_csv(self, run: Run) -> None:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._csv.writerow(["" if v is None else v for v in _row(run)])
        self._emit(buffer.getvalue())

    def _write_table(self, run: Run) -> None:
        thread_id, run_id, status, created_at, model, tokens, code = _row(run)
        self._emit(
            _table_line(
                [
                    _text(thread_id),
                    _text(run_id),
                    _text(status),
                    _utc(created_at),
                    _text(model),
                    f"{tokens:,}" if isinstance(tokens, int) else _text(tokens),
                    _text(code),
                ]
            )
        )

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
