"""The SQLite sink's database work, with nothing but the standard library and orjson.

Both ways of running the SQLite sink use it: in a thread of the exporting process, or in a
writer process of its own (the default), which runs this file as a script (it
imports nothing from aiorunlist, so that the writer starts in a few milliseconds). A writer
process reads requests on its standard input and answers each on its standard output, in
order; it exits at the end of its input, and with the process that started it (Linux kills it
then; elsewhere it checks before every write), so that it never writes for an export that was
killed.

Each frame is a 4-byte big-endian length and a pickle. Requests are ``(operation, *args)``;
answers ``("ok", result)`` or ``("error", kind, message)``, ``kind`` one of ``unavailable``,
``settings`` or ``sqlite``. Pickle is safe here: both ends are this module, connected by pipes
no one else holds.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import signal
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO

try:
    from ._rows import COLUMNS, OPEN_STATUSES, SCHEMA_VERSION
except ImportError:  # run as the writer's script, the file's directory first on sys.path
    from _rows import (  # type: ignore[import-not-found,no-redef]
        COLUMNS,
        OPEN_STATUSES,
        SCHEMA_VERSION,
    )

__all__ = [
    "AUTOCHECKPOINT_PAGES",
    "BUSY_TIMEOUT_MS",
    "CHECKPOINT_INTERVAL",
    "MIGRATIONS",
    "Database",
    "OpenError",
    "check_settings",
    "serve",
]

#: Milliseconds a writer waits for another one's transaction before giving up.
BUSY_TIMEOUT_MS = 60_000
#: Seconds between two checkpoints of the WAL into the database, done in a thread of their own.
CHECKPOINT_INTERVAL = 1.0
#: WAL pages after which the writer checkpoints itself all the same (a safety net).
AUTOCHECKPOINT_PAGES = 16_384
#: The writer's page cache, in KiB.
CACHE_KIB = 32_768

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


class OpenError(Exception):
    """The database cannot be used: ``kind`` is ``"unavailable"`` or ``"settings"``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- SQL ------------------------------------------------------------------------------------------

_ROW = f"({', '.join('?' * len(COLUMNS))})"
_ON_CONFLICT = (
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    + " WHERE runs.raw IS NOT excluded.raw"
)


@functools.lru_cache(maxsize=128)
def upsert(rows: int) -> str:
    """One statement upserting ``rows`` runs (one statement per page: fewer steps than
    ``executemany``, each of which hands Python's GIL back and forth)."""
    return (
        f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * rows)}{_ON_CONFLICT}"
    )


def connect(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with a busy timeout, transactions explicit."""
    # Transactions are explicit (BEGIN IMMEDIATE ... COMMIT): autocommit mode otherwise.
    con = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        con.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal" and path != ":memory:":
            raise OpenError(  # noqa: TRY301 - the connection is closed below
                "unavailable", f"{path}: SQLite could not switch to WAL mode ({mode})"
            )
        # In WAL mode, NORMAL never corrupts and loses no committed transaction to a crash of
        # the process (only, perhaps, the last ones to a power cut).
        con.execute("PRAGMA synchronous = NORMAL")
        # Checkpoints (and the fsyncs they make) happen in the checkpointer's thread, off the
        # writer's path; the writer does one itself only if the WAL grows very large.
        con.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        # A page's upsert is one statement that may fail half-way, so SQLite keeps a statement
        # journal to undo it: in memory, not in a temporary file created, written and deleted
        # for every page (it is no part of what survives a crash: the WAL is).
        con.execute("PRAGMA temp_store = MEMORY")
        # The index on ``id`` takes a random page for every run: more of them cached, fewer
        # read back from the WAL or the file.
        con.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        con.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        con.close()
        raise
    return con


def check_settings(where: str, stored: Mapping[str, str], wanted: Mapping[str, str]) -> None:
    """Refuse an export whose settings differ from those the database was written with."""
    for name, value in sorted(wanted.items()):
        old = stored.get(name)
        if old is not None and old != value:
            raise OpenError(
                "settings",
                f"{where} holds an export made with {name} {old}, not {value}; use the same "
                "settings, or another database",
            )


def migrate(
    con: sqlite3.Connection, path: str, settings: Mapping[str, str] | None, create: bool
) -> None:
    """Create or migrate the schema, and check (and store) the export's settings."""
    con.execute("BEGIN IMMEDIATE")
    try:
        if (
            not create
            and not con.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"
            ).fetchone()
        ):
            raise OpenError(  # noqa: TRY301 - the transaction is rolled back below
                "unavailable", f"{path} holds no aiorunlist export"
            )
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise OpenError(  # noqa: TRY301 - the transaction is rolled back below
                "settings",
                f"{path} has schema version {version}, newer than this aiorunlist's "
                f"({SCHEMA_VERSION}); upgrade aiorunlist",
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


class Checkpointer:
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


#: A thread's stored state, as :class:`Database.threads` returns it: ``(thread_id, state,
#: cursor, head, runs, last_error, updated_at, refresh_from, writer)``.
ThreadRow = tuple[
    str, str, "str | None", "str | None", int, "str | None", float, "str | None", "str | None"
]


class Database:
    """One open sink database: every operation of the SQLite sink, run in one thread."""

    def __init__(self, path: str, settings: Mapping[str, str] | None, create: bool) -> None:
        if not create and not os.path.exists(path):
            raise OpenError("unavailable", f"{path}: no such database file")
        try:
            con = connect(path)
        except sqlite3.Error as exc:
            raise OpenError(
                "unavailable", f"cannot open the SQLite database {path}: {exc}"
            ) from None
        try:
            migrate(con, path, settings, create)
        except sqlite3.DatabaseError as exc:
            con.close()
            raise OpenError(
                "unavailable", f"cannot use the SQLite database {path}: {exc}"
            ) from None
        except BaseException:
            con.close()
            raise
        self.con = con
        self._sync_id: int | None = None
        self._checkpointer = Checkpointer(path)

    def threads(self, thread_ids: Sequence[str]) -> list[ThreadRow]:
        """The stored state of those of ``thread_ids`` the database knows."""
        con = self.con
        found: list[ThreadRow] = []
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
                found.append(
                    (
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
                )
        return found

    def write_page(
        self,
        thread_id: str,
        params: Sequence[Any],
        count: int,
        expected: tuple[str | None, str | None, str | None] | None,
        values: tuple[Any, ...],
    ) -> bool:
        """One page in one transaction: upsert ``count`` runs (``params``: their rows, flat)
        and set the thread's ``values`` (state, cursor, head, last_error, updated_at, writer)
        if its stored (cursor, head, writer) are still ``expected`` (``None``: no row yet)."""
        # Four statements, the runs first: in a thread, each statement hands the GIL back and
        # forth with the event loop. On a lost compare-and-set (rare) the runs are rolled back
        # with the rest.
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            if count:
                con.execute(upsert(count), params)
            if expected is None:
                cursor = con.execute(
                    "INSERT INTO threads "
                    "(state, cursor, head, last_error, updated_at, writer, thread_id, runs) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, (SELECT count(*) FROM runs WHERE thread_id = ?))"
                    " ON CONFLICT (thread_id) DO NOTHING",
                    (*values, thread_id, thread_id),
                )
            else:
                cursor = con.execute(
                    "UPDATE threads SET state = ?, cursor = ?, head = ?, last_error = ?, "
                    "updated_at = ?, writer = ?, "
                    "runs = (SELECT count(*) FROM runs WHERE thread_id = threads.thread_id) "
                    "WHERE thread_id = ? AND cursor IS ? AND head IS ? AND writer IS ?",
                    (*values, thread_id, *expected),
                )
            con.execute("COMMIT" if cursor.rowcount == 1 else "ROLLBACK")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return cursor.rowcount == 1

    def add_threads(self, thread_ids: Sequence[str], now: float) -> list[str]:
        """Record ``thread_ids`` as ``pending`` (ids already held are left alone), in one
        transaction; the ids that were new, in the order given."""
        con = self.con
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

    def list_threads(self, states: Sequence[str], after: str, limit: int) -> list[ThreadRow]:
        """Up to ``limit`` threads in one of ``states`` after ``after``, by ``thread_id``."""
        rows = self.con.execute(
            "SELECT thread_id, state, cursor, head, runs, last_error, updated_at, writer "
            f"FROM threads WHERE state IN ({', '.join('?' * len(states))}) AND thread_id > ? "
            "ORDER BY thread_id LIMIT ?",
            (*states, after, limit),
        ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], None, r[7]) for r in rows]

    def thread_counts(self) -> dict[str, int]:
        """Threads held in each state."""
        return dict(self.con.execute("SELECT state, count(*) FROM threads GROUP BY state"))

    def stored_settings(self) -> dict[str, str]:
        """The export settings the database holds."""
        return dict(self.con.execute("SELECT name, value FROM settings").fetchall())

    def start_sync(self) -> None:
        """Record that an export starts now."""
        cursor = self.con.execute("INSERT INTO syncs (started_at) VALUES (?)", (time.time(),))
        self._sync_id = cursor.lastrowid

    def finish_sync(self) -> None:
        """Record that the export started by :meth:`start_sync` ended."""
        if self._sync_id is not None:
            self.con.execute(
                "UPDATE syncs SET finished_at = ? WHERE id = ?", (time.time(), self._sync_id)
            )

    def totals(self) -> tuple[int, list[Any], list[Any], list[Any]]:
        """Runs; by status; by model (runs, tokens); failed by error code."""
        con = self.con
        return (
            con.execute("SELECT count(*) FROM runs").fetchone()[0],
            con.execute(
                "SELECT coalesce(status, '(none)') AS s, count(*) AS n FROM runs "
                "GROUP BY s ORDER BY n DESC, s"
            ).fetchall(),
            con.execute(
                "SELECT coalesce(model, '(none)') AS m, count(*), "
                "coalesce(sum(total_tokens), 0) AS t FROM runs GROUP BY m ORDER BY t DESC, m"
            ).fetchall(),
            con.execute(
                "SELECT coalesce(last_error_code, '(no code)') AS c, count(*) AS n FROM runs "
                "WHERE status = 'failed' GROUP BY c ORDER BY n DESC, c"
            ).fetchall(),
        )

    def close(self) -> None:
        """Close (the checkpointer first: closing last, the writer checkpoints the rest)."""
        self._checkpointer.stop()
        self.con.close()


# --- the writer process ---------------------------------------------------------------------------

_LENGTH = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> Any:
    """The next frame's object, ``None`` at the end of the stream."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)  # noqa: S301 - written by our own process, see the module's doc


def frame(value: Any) -> bytes:
    """``value`` as one frame."""
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def _die_with_parent(parent: int) -> None:
    """Be killed when the process that started this one dies (Linux), and check that it has
    not died already."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes  # noqa: PLC0415 - Linux only

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig, sigkill = 1, 9
            libc.prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def serve(argv: Sequence[str]) -> None:
    """The writer process: ``argv`` is ``[path, settings JSON or "null", create 0/1, parent
    process id]``; requests come on standard input, answers go to standard output."""
    path, settings_json, create, parent = argv[0], argv[1], argv[2] == "1", int(argv[3])
    _die_with_parent(parent)
    # Ctrl-C in a terminal reaches every process of the group: the export decides what to do
    # (finish the pages handed over, then end this one's input).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def answer(value: Any) -> None:
        stdout.write(frame(value))
        stdout.flush()

    try:
        db = Database(path, json.loads(settings_json), create)
    except OpenError as exc:
        answer(("error", exc.kind, str(exc)))
        return
    except sqlite3.Error as exc:
        answer(("error", "unavailable", f"cannot open the SQLite database {path}: {exc}"))
        return
    try:
        answer(("ok", None))
        while True:
            request = read_frame(stdin)
            if request is None or request[0] == "close":
                break
            operation, *args = request
            if operation in {"write_page", "add_threads", "start_sync", "finish_sync"} and (
                os.getppid() != parent
            ):
                break  # the export that asked is gone: write nothing more for it
            try:
                result = getattr(db, operation)(*args)
            except sqlite3.Error as exc:
                answer(("error", "sqlite", str(exc)))
            else:
                answer(("ok", result))
    finally:
        db.close()
    with contextlib.suppress(OSError):  # the one that asked may be gone
        answer(("ok", None))


if __name__ == "__main__":
    serve(sys.argv[1:])
