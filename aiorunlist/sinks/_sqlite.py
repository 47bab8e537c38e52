"""The SQLite sink: the standard library's sqlite3, in a thread of its own.

WAL and a busy timeout let several processes on one host write to one file; every write
transaction starts with ``BEGIN IMMEDIATE`` so that two writers never deadlock upgrading a
read lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ._base import (
    COLUMNS,
    OPEN_STATUSES,
    SCHEMA_VERSION,
    PageWrite,
    Sink,
    SinkError,
    SinkSettingsError,
    SinkUnavailableError,
    ThreadState,
    ThreadStateName,
    Totals,
    run_row,
)

__all__ = ["MIGRATIONS", "SQLiteSink", "open_sqlite"]

T = TypeVar("T")

#: Milliseconds a writer waits for another one's transaction before giving up.
BUSY_TIMEOUT_MS = 60_000
#: Seconds between two checkpoints of the WAL into the database, done in a thread of their own.
CHECKPOINT_INTERVAL = 1.0
#: WAL pages after which the writer checkpoints itself all the same (a safety net).
AUTOCHECKPOINT_PAGES = 16_384

_OPEN = ", ".join(f"'{status}'" for status in OPEN_STATUSES)

#: Migration n (1-based) brings a database from schema version n-1 to n.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            thread_id TEXT NOT NULL,
            assistant_id TEXT,
            status TEXT,
            model TEXT,
            created_at INTEGER,
            started_at INTEGER,
            completed_at INTEGER,
            failed_at INTEGER,
            cancelled_at INTEGER,
            last_error_code TEXT,
            incomplete_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            raw TEXT NOT NULL,
            fetched_at REAL NOT NULL
        )""",
        "CREATE INDEX runs_thread_created ON runs (thread_id, created_at)",
        "CREATE INDEX runs_error_code ON runs (last_error_code) WHERE status = 'failed'",
        "CREATE INDEX runs_fetched ON runs (fetched_at)",
        f"CREATE INDEX runs_open ON runs (thread_id, created_at) WHERE status IN ({_OPEN})",
        """CREATE TABLE threads (
            thread_id TEXT PRIMARY KEY,
            state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
            cursor TEXT,
            head TEXT,
            runs INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated_at REAL NOT NULL,
            writer TEXT
        )""",
        "CREATE INDEX threads_state ON threads (state)",
        """CREATE TABLE syncs (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            finished_at REAL
        )""",
    ),
)

_ROW = f"({', '.join('?' * len(COLUMNS))})"
_ON_CONFLICT = (
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    + " WHERE runs.raw IS NOT excluded.raw"
)


@functools.lru_cache(maxsize=128)
def _upsert(rows: int) -> str:
    """One statement upserting ``rows`` runs.

    One statement per page, not ``executemany``: SQLite lets go of the GIL once per statement
    step, and taking it back each time from a busy event loop costs far more than the insert.
    """
    return (
        f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * rows)}{_ON_CONFLICT}"
    )


_UPSERT = _upsert(1)


def _connect(path: str) -> sqlite3.Connection:
    # Transactions are explicit (BEGIN IMMEDIATE ... COMMIT): autocommit mode otherwise.
    con = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and path != ":memory:":
            raise SinkUnavailableError(  # noqa: TRY301 - the connection is closed below
                f"{path}: SQLite could not switch to WAL mode ({mode})"
            )
        # In WAL mode, NORMAL never corrupts and loses no committed transaction to a crash of
        # the process (only, perhaps, the last ones to a power cut).
        con.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints (and the fsyncs they make) happen in the checkpointer's thread, off the
        # writer's path; the writer does one itself only if the WAL grows very large.
        con.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        con.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        con.close()
        raise
    return con


def _migrate(
    con: sqlite3.Connection, path: str, settings: Mapping[str, str] | None, create: bool
) -> None:
    con.execute("BEGIN IMMEDIATE")
    try:
        if (
            not create
            and not con.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"
            ).fetchone()
        ):
            raise SinkUnavailableError(  # noqa: TRY301 - the transaction is rolled back below
                f"{path} holds no aiorunlist export"
            )
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise SinkSettingsError(  # noqa: TRY301 - the transaction is rolled back below
                f"{path} has schema version {version}, newer than this aiorunlist's "
                f"({SCHEMA_VERSION}); upgrade aiorunlist"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                con.execute(statement)
        if version < SCHEMA_VERSION:
            con.execute("DELETE FROM schema_version")
            con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        if settings is not None:
            stored = dict(con.execute("SELECT name, value FROM settings").fetchall())
            check_settings(path, stored, settings)
            con.executemany(
                "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                sorted(settings.items()),
            )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def check_settings(where: str, stored: Mapping[str, str], wanted: Mapping[str, str]) -> None:
    """Refuse an export whose settings differ from those the database was written with."""
    for name, value in sorted(wanted.items()):
        old = stored.get(name)
        if old is not None and old != value:
            raise SinkSettingsError(
                f"{where} holds an export made with {name} {old}, not {value}; use the same "
                "settings, or another database"
            )


class _Checkpointer:
    """Copies the WAL into the database every :data:`CHECKPOINT_INTERVAL` seconds (``PASSIVE``:
    it never waits for, nor blocks, a writer), through a connection of its own."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="aiorunlist-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            con = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error:  # the writer checkpoints itself then (AUTOCHECKPOINT_PAGES)
            return
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL):
                with contextlib.suppress(sqlite3.Error):
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            con.close()

    def stop(self) -> None:
        """Stop, and wait for a checkpoint under way to end."""
        self._stop.set()
        self._thread.join()


class SQLiteSink(Sink):
    """A sink in one SQLite file (see :func:`aiorunlist.sinks.open_sink`)."""

    # Writes queue up in the sink's one thread, so they run in the order given.
    write_ahead = 4

    def __init__(
        self,
        con: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        url: str,
        checkpointer: _Checkpointer | None = None,
    ) -> None:
        self._con = con
        self._executor = executor
        self._checkpointer = checkpointer
        self._sync_id: int | None = None
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

    # --- in the sink's thread --------------------------------------------------------------------

    def _threads(self, thread_ids: Sequence[str]) -> dict[str, ThreadState]:
        con = self._con
        found: dict[str, ThreadState] = {}
        for start in range(0, len(thread_ids), 500):
            chunk = list(thread_ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = con.execute(
                "SELECT thread_id, state, cursor, head, runs, last_error, updated_at, writer "
                f"FROM threads WHERE thread_id IN ({marks})",
                chunk,
            ).fetchall()
            done = [row[0] for row in rows if row[1] == "done"]
            oldest: dict[str, int] = {}
            if done:
                oldest = dict(
                    con.execute(
                        "SELECT thread_id, min(created_at) FROM runs "
                        f"WHERE thread_id IN ({', '.join('?' * len(done))}) "
                        f"AND status IN ({_OPEN}) GROUP BY thread_id",
                        done,
                    ).fetchall()
                )
            for thread_id, state, cursor, head, runs, last_error, updated_at, writer in rows:
                refresh_from = None
                if thread_id in oldest:
                    before = con.execute(
                        "SELECT id FROM runs WHERE thread_id = ? AND created_at < ? "
                        "ORDER BY created_at DESC LIMIT 1",
                        (thread_id, oldest[thread_id]),
                    ).fetchone()
                    refresh_from = "" if before is None else before[0]
                found[thread_id] = ThreadState(
                    thread_id,
                    state,
                    cursor,
                    head,
                    runs,
                    last_error,
                    updated_at,
                    refresh_from,
                    writer,
                )
        return found

    def _write_page(self, write: PageWrite, params: list[Any], count: int, now: float) -> bool:
        # Four statements, the runs first: each statement hands the GIL back and forth with the
        # event loop, which costs more than the statement itself. On a lost compare-and-set
        # (rare) the runs are rolled back with the rest.
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            if count:
                con.execute(_upsert(count), params)
            expected = write.expected
            values = (write.state, write.cursor, write.head, write.last_error, now, write.writer)
            if expected is None:
                cursor = con.execute(
                    "INSERT INTO threads "
                    "(state, cursor, head, last_error, updated_at, writer, thread_id, runs) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT count(*) FROM runs WHERE thread_id = ?))"
                    " ON CONFLICT (thread_id) DO NOTHING",
                    (*values, write.thread_id, write.thread_id),
                )
            else:
                cursor = con.execute(
                    "UPDATE threads SET state = ?, cursor = ?, head = ?, last_error = ?, "
                    "updated_at = ?, writer = ?, "
                    "runs = (SELECT count(*) FROM runs WHERE thread_id = threads.thread_id) "
                    "WHERE thread_id = ? AND cursor IS ? AND head IS ? AND writer IS ?",
                    (*values, write.thread_id, expected.cursor, expected.head, expected.writer),
                )
            con.execute("COMMIT" if cursor.rowcount == 1 else "ROLLBACK")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return cursor.rowcount == 1

    def _start_sync(self) -> None:
        cursor = self._con.execute("INSERT INTO syncs (started_at) VALUES (?)", (time.time(),))
        self._sync_id = cursor.lastrowid

    def _finish_sync(self) -> None:
        if self._sync_id is not None:
            self._con.execute(
                "UPDATE syncs SET finished_at = ? WHERE id = ?", (time.time(), self._sync_id)
            )

    def _totals(self) -> Totals:
        con = self._con
        return Totals(
            runs=con.execute("SELECT count(*) FROM runs").fetchone()[0],
            by_status=con.execute(
                "SELECT coalesce(status, '(none)') AS s, count(*) AS n FROM runs "
                "GROUP BY s ORDER BY n DESC, s"
            ).fetchall(),
            by_model=con.execute(
                "SELECT coalesce(model, '(none)') AS m, count(*), "
                "coalesce(sum(total_tokens), 0) AS t FROM runs GROUP BY m ORDER BY t DESC, m"
            ).fetchall(),
            errors_by_code=con.execute(
                "SELECT coalesce(last_error_code, '(no code)') AS c, count(*) AS n FROM runs "
                "WHERE status = 'failed' GROUP BY c ORDER BY n DESC, c"
            ).fetchall(),
        )

    def _close(self) -> None:
        # The checkpointer first: closing last, the writer's connection checkpoints the rest.
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self._con.close()

    def _add_threads(self, thread_ids: Sequence[str], now: float) -> list[str]:
        con = self._con
        added: set[str] = set()
        con.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(thread_ids), 500):
                chunk = thread_ids[start : start + 500]
                rows = con.execute(
                    "INSERT INTO threads (thread_id, state, updated_at) VALUES "
                    + ", ".join(["(?, 'pending', ?)"] * len(chunk))
                    + " ON CONFLICT (thread_id) DO NOTHING RETURNING thread_id",
                    [value for thread_id in chunk for value in (thread_id, now)],
                ).fetchall()
                added.update(row[0] for row in rows)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return [thread_id for thread_id in dict.fromkeys(thread_ids) if thread_id in added]

    def _list_threads(self, states: list[str], after: str, limit: int) -> list[ThreadState]:
        rows = self._con.execute(
            "SELECT thread_id, state, cursor, head, runs, last_error, updated_at, writer "
            f"FROM threads WHERE state IN ({', '.join('?' * len(states))}) AND thread_id > ? "
            "ORDER BY thread_id LIMIT ?",
            (*states, after, limit),
        ).fetchall()
        return [ThreadState(r[0], r[1], r[2], r[3], r[4], r[5], r[6], None, r[7]) for r in rows]

    def _thread_counts(self) -> dict[str, int]:
        return dict(self._con.execute("SELECT state, count(*) FROM threads GROUP BY state"))

    async def add_threads(self, thread_ids: Sequence[str]) -> list[str]:
        return await self._call(self._add_threads, list(thread_ids), time.time())

    async def list_threads(
        self, states: Collection[ThreadStateName], *, after: str = "", limit: int = 1000
    ) -> list[ThreadState]:
        return await self._call(self._list_threads, list(states), after, limit)

    async def thread_counts(self) -> dict[str, int]:
        return await self._call(self._thread_counts)

    def _stored_settings(self) -> dict[str, str]:
        return dict(self._con.execute("SELECT name, value FROM settings").fetchall())

    async def stored_settings(self) -> dict[str, str]:
        return await self._call(self._stored_settings)

    # --- the API -------------------------------------------------------------------------------

    async def threads(self, thread_ids: Sequence[str]) -> dict[str, ThreadState]:
        return await self._call(self._threads, thread_ids)

    async def write_page(self, write: PageWrite) -> bool:
        # The rows are made here: the sink's thread then runs (almost) only SQLite's C code,
        # which lets go of the GIL, instead of contending for it with the event loop.
        now = time.time()
        thread_id = write.thread_id
        params = [value for run in write.runs for value in run_row(thread_id, run, now)]
        return await self._call(self._write_page, write, params, len(write.runs), now)

    async def start_sync(self) -> None:
        await self._call(self._start_sync)

    async def finish_sync(self) -> None:
        await self._call(self._finish_sync)

    async def totals(self) -> Totals:
        return await self._call(self._totals)

    async def aclose(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)


def _open(path: str, settings: Mapping[str, str] | None, create: bool) -> sqlite3.Connection:
    if not create and not os.path.exists(path):
        raise SinkUnavailableError(f"{path}: no such database file")
    try:
        con = _connect(path)
    except sqlite3.Error as exc:
        raise SinkUnavailableError(f"cannot open the SQLite database {path}: {exc}") from None
    try:
        _migrate(con, path, settings, create)
    except sqlite3.DatabaseError as exc:
        con.close()
        raise SinkUnavailableError(f"cannot use the SQLite database {path}: {exc}") from None
    except BaseException:
        con.close()
        raise
    return con


async def open_sqlite(
    path: str, url: str, settings: Mapping[str, str] | None, *, create: bool = True
) -> SQLiteSink:
    """Open (creating and migrating as needed) the SQLite database at ``path``."""
    executor = ThreadPoolExecutor(1, thread_name_prefix="aiorunlist-sqlite")
    loop = asyncio.get_running_loop()
    try:
        con = await loop.run_in_executor(executor, _open, path, settings, create)
    except BaseException:
        executor.shutdown(wait=False)
        raise
    return SQLiteSink(con, executor, url, _Checkpointer(path))
