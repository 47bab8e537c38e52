"""A one-line progress display on a terminal, and the library's warnings on stderr."""

from __future__ import annotations

import logging
import shutil
from types import TracebackType
from typing import TextIO

__all__ = ["LogWarnings", "Progress", "bar"]

_SPINNER = "|/-\\"


class LogWarnings(logging.Handler):
    """Shows the library's warnings (e.g. a spent retry budget) on ``stream`` while installed,
    one line each as ``aiorunlist: warning: ...``, without garbling the progress line.

    A context manager; installed on the ``aiorunlist`` logger, so it also stands in for
    Python's last-resort handler, which would print them bare.
    """

    def __init__(self, stream: TextIO, progress: Progress | None = None) -> None:
        super().__init__(logging.WARNING)
        self.stream = stream
        self.progress = progress
        self._logger = logging.getLogger("aiorunlist")

    def emit(self, record: logging.LogRecord) -> None:
        """Print one record."""
        try:
            message = " ".join(record.getMessage().split())
            if self.progress is not None:
                self.progress.clear()
            level = "warning" if record.levelno < logging.ERROR else "error"
            self.stream.write(f"aiorunlist: {level}: {message}\n")
            self.stream.flush()
        except Exception:  # a logging handler must not raise
            self.handleError(record)

    def __enter__(self) -> LogWarnings:
        self._logger.addHandler(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._logger.removeHandler(self)


class Progress:
    """Redraws one status line in place (``\\r``) on ``stream``, if it is enabled.

    The caller decides how often to call :meth:`show` (the export does it 10 times a second).
    Lines are cut to the terminal's width so that they never wrap (a wrapped line cannot be
    redrawn in place). :meth:`clear` erases the line, leaving the cursor at its start.
    """

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self._frame = 0
        self._shown = False

    @property
    def width(self) -> int:
        """The room for a line: the terminal's width less one column (no wrapping)."""
        return max(shutil.get_terminal_size((80, 24)).columns - 1, 10)

    def show(self, text: str) -> None:
        """Draw ``text`` (with a spinner) over the previous line."""
        if not self.enabled:
            return
        self._frame += 1
        line = f"{_SPINNER[self._frame % len(_SPINNER)]} {text}"[: self.width]
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the status line (if one is shown)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def bar(fraction: float, width: int = 20) -> str:
    """``[#######-------------]  35%`` for ``fraction`` 0.35."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {100 * fraction:3.0f}%"
