"""Thread ids from the command line, a file or standard input, read lazily."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import stat
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import BinaryIO

__all__ = ["CLIError", "ThreadIds", "is_blocking_source"]

# A comment after an id, separated from it by whitespace: "thread_abc  # customer 42".
_TRAILING_COMMENT = re.compile(r"\s+#.*\Z", re.DOTALL)


_CHUNK = 1 << 16


async def _in_daemon_thread(read: Callable[[int, int], bytes], fd: int, size: int) -> bytes:
    """``read(fd, size)`` in a daemon thread of its own.

    Not ``anyio.to_thread``: its worker threads are joined at exit, so a read still waiting
    on a terminal or an idle pipe (after Ctrl-C, or after a fatal error) would keep the
    process alive. A daemon thread is abandoned instead.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()

    def settle(data: bytes | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(data or b"")

    def work() -> None:
        try:
            data, error = read(fd, size), None
        except BaseException as exc:  # handed over to the event loop
            data, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(settle, data, error)

    threading.Thread(target=work, name="aiorunlist stdin", daemon=True).start()
    return await future


class CLIError(Exception):
    """A problem with what the user asked for: reported in one line, exit code 2."""


def is_blocking_source(stream: BinaryIO) -> bool:
    """Whether reading ``stream`` may wait on another process (a pipe, a terminal, a socket).

    Regular files and in-memory streams are read directly; the others in a worker thread, so
    that a slow producer does not freeze the requests in flight.
    """
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return not stat.S_ISREG(mode)


class ThreadIds:
    """The thread ids to export, as an async iterator read one line at a time.

    ``arguments`` come first, then the lines of ``source`` (if any): surrounding whitespace is
    stripped, blank lines and lines starting with ``#`` are skipped, and so is a trailing
    ``  # comment``. An id seen before is skipped (listing it twice would export its runs twice).
    ``read`` counts the distinct ids handed out; ``exhausted`` turns true at the end of input,
    and ``total`` is known from then on (or from the start, without a file).
    """

    def __init__(
        self,
        arguments: Sequence[str],
        source: BinaryIO | None = None,
        *,
        source_name: str = "<stdin>",
        blocking: bool | None = None,
        check: Callable[[str], object] | None = None,
    ) -> None:
        self.arguments = list(arguments)
        #: Called with each id of the file: a ``ValueError`` or ``TypeError`` it raises is
        #: a :class:`CLIError` naming the line.
        self.check = check
        self.source = source
        self.source_name = source_name
        self.blocking = (
            is_blocking_source(source)
            if source is not None and blocking is None
            else bool(blocking)
        )
        #: Distinct ids handed out so far.
        self.read = 0
        #: Whether the whole input has been read (``read`` is then the total).
        self.exhausted = False
        self._seen: set[str] = set()
        # Without a file, the total is known before anything is read.
        self._total = len(dict.fromkeys(self.arguments)) if source is None else None
        self._size = 0
        if source is not None and not self.blocking:
            with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
                self._size = os.fstat(source.fileno()).st_size

    @property
    def fraction_read(self) -> float | None:
        """How much of a regular file has been read (0 to 1), if that can be known."""
        if self.exhausted:
            return 1.0
        if self.source is None or not self._size:
            return None
        try:
            return min(self.source.tell() / self._size, 1.0)
        except (OSError, ValueError):
            return None

    @property
    def total(self) -> int | None:
        """How many distinct ids there are, if known yet."""
        return self.read if self.exhausted else self._total

    async def _lines(self) -> AsyncGenerator[tuple[int, bytes], None]:
        source = self.source
        if source is None:
            return
        number = 0
        if not self.blocking:
            for line in iter(source.readline, b""):
                number += 1
                yield number, line
            return
        # A pipe or a terminal: read whatever has arrived, in a thread, so the requests in
        # flight go on meanwhile; split it into lines here. The file descriptor is read
        # directly: a thread left waiting in the buffered reader would hold its lock, which
        # the interpreter needs at exit.
        fd = source.fileno()
        pending = b""
        while True:
            chunk = await _in_daemon_thread(os.read, fd, _CHUNK)
            if not chunk:
                if pending:
                    yield number + 1, pending
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                number += 1
                yield number, line + b"\n"

    def _parse(self, number: int, raw: bytes) -> str | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CLIError(
                f"{self.source_name} line {number}: not valid UTF-8 text; expected one thread id "
                "per line"
            ) from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        text = _TRAILING_COMMENT.sub("", text).strip()
        if not text or text.startswith("#"):
            return None
        if self.check is not None:
            try:
                self.check(text)
            except (TypeError, ValueError) as exc:
                raise CLIError(f"{self.source_name} line {number}: {exc}") from None
        return text

    def _fresh(self, thread_id: str) -> bool:
        if thread_id in self._seen:
            return False
        self._seen.add(thread_id)
        self.read += 1
        return True

    async def __aiter__(self) -> AsyncGenerator[str, None]:
        for thread_id in self.arguments:
            if self._fresh(thread_id):
                yield thread_id
        lines = self._lines()
        while True:
            try:
                number, raw = await lines.__anext__()
            except StopAsyncIteration:
                break
            except OSError as exc:
                raise CLIError(f"cannot read {self.source_name}: {exc.strerror or exc}") from None
            parsed = self._parse(number, raw)
            if parsed is not None and self._fresh(parsed):
                yield parsed
        self.exhausted = True
