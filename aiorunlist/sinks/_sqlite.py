"""The SQLite sink: the standard library's sqlite3, in a writer process (or a thread) of its own.

WAL and a busy timeout let several processes on one host write to one file; every write
transaction starts with ``BEGIN IMMEDIATE`` so that two writers never deadlock upgrading a
read lock.

By default the database work happens in a writer process (:mod:`._sqlite_core` run as a
script): the exporting process only encodes each page's runs once and hands them over, and
the writer, with an interpreter of its own, never waits for the event loop's thread to let go
of Python's GIL (a thread would, after every statement). ``writer="thread"`` keeps it in a
thread of the exporting process instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import pickle
import sqlite3
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from . import _sqlite_core as core
from ._base import (
    PageWrite,
    Sink,
    SinkError,
    SinkSettingsError,
    SinkUnavailableError,
    ThreadState,
    ThreadStateName,
    Totals,
)
from ._rows import row_params
from ._sqlite_core import (
    AUTOCHECKPOINT_PAGES,
    BUSY_TIMEOUT_MS,
    CHECKPOINT_INTERVAL,
    MIGRATIONS,
)

__all__ = [
    "AUTOCHECKPOINT_PAGES",
    "BUSY_TIMEOUT_MS",
    "CHECKPOINT_INTERVAL",
    "MIGRATIONS",
    "SQLiteProcessSink",
    "SQLiteSink",
    "SQLiteWriter",
    "check_settings",
    "open_sqlite",
]

T = TypeVar("T")

#: Where the SQLite work happens: a process of its own (the default), or a thread.
SQLiteWriter = Literal["process", "thread"]

_ERRORS: dict[str, type[SinkError]] = {
    "unavailable": SinkUnavailableError,
    "settings": SinkSettingsError,
}


def check_settings(where: str, stored: Mapping[str, str], wanted: Mapping[str, str]) -> None:
    """Refuse an export whose settings differ from those the database was written with."""
    try:
        core.check_settings(where, stored, wanted)
    except core.OpenError as exc:
        raise SinkSettingsError(str(exc)) from None


def _state(row: core.ThreadRow) -> ThreadState:
    return ThreadState(*row)  # type: ignore[arg-type] # state is one of the three names


def _totals(row: tuple[int, list[Any], list[Any], list[Any]]) -> Totals:
    runs, by_status, by_model, errors = row
    return Totals(
        runs=runs,
        by_status=[tuple(r) for r in by_status],
        by_model=[tuple(r) for r in by_model],
        errors_by_code=[tuple(r) for r in errors],
    )


def _expected(write: PageWrite) -> tuple[str | None, str | None, str | None] | None:
    old = write.expected
    return None if old is None else (old.cursor, old.head, old.writer)


def _values(write: PageWrite, now: float) -> tuple[Any, ...]:
    return (write.state, write.cursor, write.head, write.last_error, now, write.writer)


# --- in a thread ---------------------------------------------------------------------------------


class SQLiteSink(Sink):
    """A sink in one SQLite file, worked on in a thread of this process
    (see :func:`aiorunlist.sinks.open_sink`)."""

    # Writes queue up in the sink's one thread, so they run in the order given.
    write_ahead = 4

    def __init__(self, db: core.Database, executor: ThreadPoolExecutor, url: str) -> None:
        self._db = db
        self._executor = executor
        self._closed = False
        self.url = url

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise SinkError("the sink is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise SinkError(f"{self.url}: {exc}") from exc

    async def threads(self, thread_ids: Sequence[str]) -> dict[str, ThreadState]:
        rows = await self._call(self._db.threads, thread_ids)
        return {row[0]: _state(row) for row in rows}

    async def write_page(self, write: PageWrite) -> bool:
        # The rows are made here: the sink's thread then runs (almost) only SQLite's C code,
        # which lets go of the GIL, instead of contending for it with the event loop.
        now = time.time()
        params = row_params(write.thread_id, write.runs, now)
        return await self._call(
            self._db.write_page,
            write.thread_id,
            params,
            len(write.runs),
            _expected(write),
            _values(write, now),
        )

    async def add_threads(self, thread_ids: Sequence[str]) -> list[str]:
        return await self._call(self._db.add_threads, list(thread_ids), time.time())

    async def list_threads(
        self, states: Collection[ThreadStateName], *, after: str = "", limit: int = 1000
    ) -> list[ThreadState]:
        rows = await self._call(self._db.list_threads, list(states), after, limit)
        return [_state(row) for row in rows]

    async def thread_counts(self) -> dict[str, int]:
        return await self._call(self._db.thread_counts)

    async def stored_settings(self) -> dict[str, str]:
        return await self._call(self._db.stored_settings)

    async def start_sync(self) -> None:
        await self._call(self._db.start_sync)

    async def finish_sync(self) -> None:
        await self._call(self._db.finish_sync)

    async def totals(self) -> Totals:
        return _totals(await self._call(self._db.totals))

    async def aclose(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._db.close)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)


# --- in a writer process -------------------------------------------------------------------------

#: Runs the writer: the module's file is run by path, its directory first on ``sys.path`` (for
#: ``_rows``), so that the writer imports neither aiorunlist's package (it starts in a few
#: milliseconds) nor anything in the working directory.
_BOOT = (
    "import os, runpy, sys; path = sys.argv.pop(1); sys.path[0] = os.path.dirname(path); "
    "runpy.run_path(path, run_name='__main__')"
)


_CORE_FILE = str(Path(core.__file__).resolve())


class _WriterDidNotStart(SinkError):
    pass


class SQLiteProcessSink(Sink):
    """A sink in one SQLite file, worked on by a writer process of its own (the default; see
    :func:`aiorunlist.sinks.open_sink`).

    Requests are handed over in the order made and answered in that order. The writer dies
    with this process (it never writes for an export that was killed); if it dies first,
    every request waiting and every later one fails with :class:`SinkError`.
    """

    write_ahead = 8

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self._process = process
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._lock = asyncio.Lock()
        self._failure: SinkError | None = None
        self._closed = False
        self.url = url
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls, path: str, url: str, settings: Mapping[str, str] | None, create: bool
    ) -> SQLiteProcessSink:
        """Start the writer, and wait for it to open (create, migrate) the database."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOT,
            _CORE_FILE,
            path,
            json.dumps(None if settings is None else dict(settings)),
            "1" if create else "0",
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        sink = cls(process, url)
        try:
            await sink._request(("open",), send=False)
        except BaseException as exc:
            await sink._stop()
            if exc is sink._failure:  # it could not even start
                raise _WriterDidNotStart(str(exc)) from None
            raise
        return sink

    async def _read(self) -> None:
        """Answer the requests waiting, in order, until the writer's output ends."""
        stdout = self._process.stdout
        assert stdout is not None  # noqa: S101 - started with a pipe
        try:
            while True:
                try:
                    head = await stdout.readexactly(4)
                    body = await stdout.readexactly(int.from_bytes(head, "big"))
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                answer = pickle.loads(body)  # noqa: S301 - our own writer, see _sqlite_core
                if not self._waiting:
                    continue
                future = self._waiting.popleft()
                if future.done():  # its caller was cancelled
                    continue
                if answer[0] == "ok":
                    future.set_result(answer[1])
                else:
                    _, kind, message = answer
                    if kind == "sqlite":
                        message = f"{self.url}: {message}"
                    future.set_exception(_ERRORS.get(kind, SinkError)(message))
        finally:
            if not self._closed or self._waiting:
                await self._died()

    async def _died(self) -> None:
        """The writer's output ended: fail every request waiting, and every later one."""
        code = await self._process.wait()
        stderr = b""
        if self._process.stderr is not None:
            with contextlib.suppress(Exception):
                stderr = await asyncio.wait_for(self._process.stderr.read(4000), 5)
        lines = stderr.decode(errors="replace").strip().splitlines()
        detail = f": {lines[-1]}" if lines else ""
        self._failure = SinkError(
            f"{self.url}: the SQLite writer process exited unexpectedly (exit code {code})"
            f"{detail}; run the same command again to resume"
        )
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._failure)

    async def _request(self, request: tuple[Any, ...], *, send: bool = True) -> Any:
        if self._closed:
            raise SinkError("the sink is closed")
        if self._failure is not None:
            raise SinkError(str(self._failure))
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            if send:
                stdin = self._process.stdin
                assert stdin is not None  # noqa: S101 - started with a pipe
                stdin.write(core.frame(request))  # in the order asked, before any await
                del request
                try:
                    async with self._lock:
                        await stdin.drain()
                except (ConnectionError, RuntimeError):
                    pass  # the writer is gone: the reader fails the future
            return await future
        except BaseException:
            future.cancel()  # its answer is dropped when it comes
            raise

    async def threads(self, thread_ids: Sequence[str]) -> dict[str, ThreadState]:
        rows = await self._request(("threads", list(thread_ids)))
        return {row[0]: _state(row) for row in rows}

    async def write_page(self, write: PageWrite) -> bool:
        # The rows are made here, the writer only runs SQLite: it has the most to do.
        now = time.time()
        request = (
            "write_page",
            write.thread_id,
            row_params(write.thread_id, write.runs, now),
            len(write.runs),
            _expected(write),
            _values(write, now),
        )
        del write  # the runs may be freed while the writer works (fewer objects for the GC)
        stored: bool = await self._request(request)
        return stored

    async def add_threads(self, thread_ids: Sequence[str]) -> list[str]:
        added: list[str] = await self._request(("add_threads", list(thread_ids), time.time()))
        return added

    async def list_threads(
        self, states: Collection[ThreadStateName], *, after: str = "", limit: int = 1000
    ) -> list[ThreadState]:
        rows = await self._request(("list_threads", list(states), after, limit))
        return [_state(row) for row in rows]

    async def thread_counts(self) -> dict[str, int]:
        counts: dict[str, int] = await self._request(("thread_counts",))
        return counts

    async def stored_settings(self) -> dict[str, str]:
        stored: dict[str, str] = await self._request(("stored_settings",))
        return stored

    async def start_sync(self) -> None:
        await self._request(("start_sync",))

    async def finish_sync(self) -> None:
        await self._request(("finish_sync",))

    async def totals(self) -> Totals:
        return _totals(await self._request(("totals",)))

    async def _stop(self) -> None:
        """Let the writer finish and close the database; kill it if it does not."""
        self._closed = True
        process = self._process
        if process.stdin is not None:
            with contextlib.suppress(Exception):
                if process.returncode is None:
                    process.stdin.write(core.frame(("close",)))
                process.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), BUSY_TIMEOUT_MS / 1000 + 10)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise
        finally:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._reader), 5)

    async def aclose(self) -> None:
        if self._closed:
            return
        await self._stop()


async def open_sqlite(
    path: str,
    url: str,
    settings: Mapping[str, str] | None,
    *,
    create: bool = True,
    writer: SQLiteWriter = "process",
) -> Sink:
    """Open (creating and migrating as needed) the SQLite database at ``path``, worked on by a
    writer process (``writer="process"``, where this Python can start one) or a thread."""
    if writer not in ("process", "thread"):
        raise ValueError(f"writer must be 'process' or 'thread', not {writer!r}")
    if writer == "process" and sys.executable:
        # A thread instead when this event loop cannot start processes, or this Python
        # cannot run the writer (e.g. it finds orjson only on a path added at run time).
        with contextlib.suppress(NotImplementedError, OSError, _WriterDidNotStart):
            return await SQLiteProcessSink.start(path, url, settings, create)
    executor = ThreadPoolExecutor(1, thread_name_prefix="aiorunlist-sqlite")
    loop = asyncio.get_running_loop()
    try:
        db = await loop.run_in_executor(executor, core.Database, path, settings, create)
    except core.OpenError as exc:
        executor.shutdown(wait=False)
        raise _ERRORS[exc.kind](str(exc)) from None
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return SQLiteSink(db, executor, url)
