"""The PostgreSQL sink, through asyncpg (the ``aiorunlist[postgres]`` extra).

Imported only by :func:`aiorunlist.sinks.open_sink` for a ``postgresql://`` URL. A write that
loses its connection (a restart, a failover) reconnects and is tried again until
``reconnect_for`` seconds have passed: the compare-and-set makes that safe, and a write that
did commit before the connection broke is recognised as such.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TypeVar

import asyncpg

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
    mask_url,
    run_row,
)
from ._sqlite import check_settings

__all__ = ["MIGRATIONS", "PostgresSink", "open_postgres"]

T = TypeVar("T")

_OPEN = ", ".join(f"'{status}'" for status in OPEN_STATUSES)

#: Connections page writes are spread over (by thread).
CONNECTIONS = 2

#: A lock key of this project's own, held while the schema is created or migrated.
_MIGRATION_LOCK = 0x61696F72756E6C

#: Migration n (1-based) brings a database from schema version n-1 to n.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE settings (name text PRIMARY KEY, value text NOT NULL)",
        """CREATE TABLE runs (
            id text PRIMARY KEY,
            thread_id text NOT NULL,
            assistant_id text,
            status text,
            model text,
            created_at bigint,
            started_at bigint,
            completed_at bigint,
            failed_at bigint,
            cancelled_at bigint,
            last_error_code text,
            incomplete_reason text,
            prompt_tokens bigint,
            completion_tokens bigint,
            total_tokens bigint,
            raw json NOT NULL,
            fetched_at double precision NOT NULL
        )""",
        "CREATE INDEX runs_thread_created ON runs (thread_id, created_at)",
        "CREATE INDEX runs_error_code ON runs (last_error_code) WHERE status = 'failed'",
        "CREATE INDEX runs_fetched ON runs (fetched_at)",
        f"CREATE INDEX runs_open ON runs (thread_id, created_at) WHERE status IN ({_OPEN})",
        """CREATE TABLE threads (
            thread_id text PRIMARY KEY,
            state text NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
            cursor text,
            head text,
            runs bigint NOT NULL DEFAULT 0,
            last_error text,
            updated_at double precision NOT NULL,
            writer text
        )""",
        "CREATE INDEX threads_state ON threads (state)",
        """CREATE TABLE syncs (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            started_at double precision NOT NULL,
            finished_at double precision
        )""",
    ),
)

# One statement for the whole page: the rows travel as one array per column.
_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "text",
    "bigint",
    "bigint",
    "bigint",
    "bigint",
    "bigint",
    "text",
    "text",
    "bigint",
    "bigint",
    "bigint",
    "text",
    "double precision",
)
_N = len(COLUMNS)
# The page's new runs (ids not stored yet), for threads.runs: seen before this statement.
_NEW_RUNS = (
    "(SELECT count(*) FROM unnest($1::text[]) AS p(id) "
    "WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = p.id))"
)
_INSERT_RUNS = (
    f"INSERT INTO runs ({', '.join(COLUMNS)}) SELECT "
    + ", ".join(f"{c}::json" if c == "raw" else c for c in COLUMNS)
    + " FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, 1))
    + f") AS page ({', '.join(COLUMNS)}) WHERE EXISTS (SELECT 1 FROM cas) "
    "ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    + " WHERE runs.raw::text IS DISTINCT FROM excluded.raw::text RETURNING 1"
)
# A page is one statement (so one round trip, and atomic by itself): the compare-and-set of
# the thread's row, then, only if it matched, the upsert of the runs. Parameters: one array per
# column ($1..$17), then state, cursor, head, last_error, updated_at, writer, thread_id (and,
# for an existing row, the expected cursor, head and writer).
_V = [f"${_N + i}" for i in range(1, 11)]
_WRITE_NEW = (
    "WITH cas AS (INSERT INTO threads "
    "(state, cursor, head, last_error, updated_at, writer, thread_id, runs) VALUES "
    f"({', '.join(_V[:7])}, {_NEW_RUNS}) ON CONFLICT (thread_id) DO NOTHING RETURNING 1), "
    f"ins AS ({_INSERT_RUNS}) SELECT count(*) FROM cas"
)
_WRITE_NEXT = (
    f"WITH cas AS (UPDATE threads SET state = {_V[0]}, cursor = {_V[1]}, head = {_V[2]}, "
    f"last_error = {_V[3]}, updated_at = {_V[4]}, writer = {_V[5]}, "
    f"runs = threads.runs + {_NEW_RUNS} "
    f"WHERE thread_id = {_V[6]} AND cursor IS NOT DISTINCT FROM {_V[7]} "
    f"AND head IS NOT DISTINCT FROM {_V[8]} AND writer IS NOT DISTINCT FROM {_V[9]} "
    "RETURNING 1), "
    f"ins AS ({_INSERT_RUNS}) SELECT count(*) FROM cas"
)

#: Errors after which the connection is gone: reconnect and try again.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


def _masked(url: str) -> str:
    """``url`` with its password (and secret parameters), if any, replaced by ``***``."""
    return mask_url(url)


class PostgresSink(Sink):
    """A sink in a PostgreSQL database (see :func:`aiorunlist.sinks.open_sink`).

    Page writes go through :data:`CONNECTIONS` connections, each thread always through the same
    one, one statement at a time: a thread's pages are stored in the order given, and the
    server works on several threads' pages at once.
    """

    write_ahead = 2 * CONNECTIONS

    def __init__(self, dsn: str, con: asyncpg.Connection, reconnect_for: float) -> None:
        self._dsn = dsn
        self._cons: list[asyncpg.Connection | None] = [con] + [None] * (CONNECTIONS - 1)
        # FIFO: the writes of one connection run in the order they were handed over.
        self._locks = [asyncio.Lock() for _ in range(CONNECTIONS)]
        self._reconnect_for = reconnect_for
        self._sync_id: int | None = None
        self._closed = False
        self.url = _masked(dsn)
        #: Times a lost connection was made again.
        self.reconnects = 0

    async def _connection(self, slot: int) -> asyncpg.Connection:
        if self._closed:
            raise SinkError("the sink is closed")
        con = self._cons[slot]
        if con is None or con.is_closed():
            con = self._cons[slot] = await asyncpg.connect(self._dsn, timeout=10)
        return con

    async def _retrying(
        self, action: Callable[[asyncpg.Connection, bool], Awaitable[T]], slot: int = 0
    ) -> T:
        """``action(connection, again)`` on connection ``slot`` (alone on it, in turn), on a
        fresh connection each time the last one broke."""
        async with self._locks[slot]:
            return await self._attempts(action, slot)

    async def _attempts(
        self, action: Callable[[asyncpg.Connection, bool], Awaitable[T]], slot: int
    ) -> T:
        deadline = time.monotonic() + self._reconnect_for
        delay = 0.05
        again = False
        while True:
            try:
                con = await self._connection(slot)
                if again:
                    self.reconnects += 1
                return await action(con, again)
            except _CONNECTION_ERRORS as exc:
                broken = self._cons[slot]
                if broken is not None:
                    broken.terminate()
                    self._cons[slot] = None
                if time.monotonic() + delay > deadline:
                    raise SinkUnavailableError(
                        f"{self.url}: the database connection was lost and could not be made "
                        f"again within {self._reconnect_for:g} s ({exc})"
                    ) from None
                again = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except asyncpg.PostgresError as exc:
                raise SinkError(f"{self.url}: {exc}") from exc

    async def threads(self, thread_ids: Sequence[str]) -> dict[str, ThreadState]:
        async def fetch(con: asyncpg.Connection, _again: bool) -> dict[str, ThreadState]:
            rows = await con.fetch(
                "SELECT thread_id, state, cursor, head, runs, last_error, updated_at, writer "
                "FROM threads WHERE thread_id = ANY($1::text[])",
                list(thread_ids),
            )
            done = [row[0] for row in rows if row[1] == "done"]
            refresh: dict[str, str] = {}
            if done:
                for thread_id, before in await con.fetch(
                    "SELECT o.thread_id, (SELECT r.id FROM runs r WHERE r.thread_id = o.thread_id"
                    " AND r.created_at < o.oldest ORDER BY r.created_at DESC LIMIT 1) "
                    "FROM (SELECT thread_id, min(created_at) AS oldest FROM runs "
                    f"WHERE thread_id = ANY($1::text[]) AND status IN ({_OPEN}) "
                    "GROUP BY thread_id) AS o",
                    done,
                ):
                    refresh[thread_id] = before or ""
            return {
                row[0]: ThreadState(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                    refresh.get(row[0]),
                    row[7],
                )
                for row in rows
            }

        return await self._retrying(fetch)

    async def write_page(self, write: PageWrite) -> bool:
        now = time.time()
        rows = [run_row(write.thread_id, run, now) for run in write.runs]
        columns = [list(column) for column in zip(*rows, strict=True)] or [[]] * _N
        values = [*columns, write.state, write.cursor, write.head, write.last_error, now]
        values += [write.writer, write.thread_id]
        expected = write.expected
        if expected is not None:
            values += [expected.cursor, expected.head, expected.writer]

        async def store(con: asyncpg.Connection, again: bool) -> bool:
            if await con.fetchval(_WRITE_NEW if expected is None else _WRITE_NEXT, *values):
                return True
            # The connection broke before: perhaps after this very write committed.
            return again and await _already_written(con, write)

        return await self._retrying(store, hash(write.thread_id) % CONNECTIONS)

    async def start_sync(self) -> None:
        async def start(con: asyncpg.Connection, _again: bool) -> None:
            self._sync_id = await con.fetchval(
                "INSERT INTO syncs (started_at) VALUES ($1) RETURNING id", time.time()
            )

        await self._retrying(start)

    async def finish_sync(self) -> None:
        async def finish(con: asyncpg.Connection, _again: bool) -> None:
            await con.execute(
                "UPDATE syncs SET finished_at = $1 WHERE id = $2", time.time(), self._sync_id
            )

        if self._sync_id is not None:
            await self._retrying(finish)

    async def totals(self) -> Totals:
        async def fetch(con: asyncpg.Connection, _again: bool) -> Totals:
            runs = await con.fetchval("SELECT count(*) FROM runs")
            by_status = await con.fetch(
                "SELECT coalesce(status, '(none)') AS s, count(*) AS n FROM runs "
                "GROUP BY s ORDER BY n DESC, s"
            )
            by_model = await con.fetch(
                "SELECT coalesce(model, '(none)') AS m, count(*), "
                "coalesce(sum(total_tokens), 0)::bigint AS t FROM runs GROUP BY m "
                "ORDER BY t DESC, m"
            )
            errors = await con.fetch(
                "SELECT coalesce(last_error_code, '(no code)') AS c, count(*) AS n FROM runs "
                "WHERE status = 'failed' GROUP BY c ORDER BY n DESC, c"
            )
            return Totals(
                runs=runs,
                by_status=[(r[0], r[1]) for r in by_status],
                by_model=[(r[0], r[1], r[2]) for r in by_model],
                errors_by_code=[(r[0], r[1]) for r in errors],
            )

        return await self._retrying(fetch)

    async def add_threads(self, thread_ids: Sequence[str]) -> list[str]:
        ids = list(dict.fromkeys(thread_ids))

        async def add(con: asyncpg.Connection, _again: bool) -> set[str]:
            # Safe to do again after a lost connection: an id added before counts as known.
            rows = await con.fetch(
                "INSERT INTO threads (thread_id, state, updated_at) "
                "SELECT unnest($1::text[]), 'pending', $2 "
                "ON CONFLICT (thread_id) DO NOTHING RETURNING thread_id",
                ids,
                time.time(),
            )
            return {row[0] for row in rows}

        added = await self._retrying(add)
        return [thread_id for thread_id in ids if thread_id in added]

    async def list_threads(
        self, states: Collection[ThreadStateName], *, after: str = "", limit: int = 1000
    ) -> list[ThreadState]:
        async def fetch(con: asyncpg.Connection, _again: bool) -> list[ThreadState]:
            rows = await con.fetch(
                "SELECT thread_id, state, cursor, head, runs, last_error, updated_at, writer "
                "FROM threads WHERE state = ANY($1::text[]) AND thread_id > $2 "
                "ORDER BY thread_id LIMIT $3",
                list(states),
                after,
                limit,
            )
            return [ThreadState(r[0], r[1], r[2], r[3], r[4], r[5], r[6], None, r[7]) for r in rows]

        return await self._retrying(fetch)

    async def thread_counts(self) -> dict[str, int]:
        async def fetch(con: asyncpg.Connection, _again: bool) -> dict[str, int]:
            rows = await con.fetch("SELECT state, count(*) FROM threads GROUP BY state")
            return {row[0]: row[1] for row in rows}

        return await self._retrying(fetch)

    async def stored_settings(self) -> dict[str, str]:
        async def fetch(con: asyncpg.Connection, _again: bool) -> dict[str, str]:
            return {r[0]: r[1] for r in await con.fetch("SELECT name, value FROM settings")}

        return await self._retrying(fetch)

    async def aclose(self) -> None:
        self._closed = True
        for slot, con in enumerate(self._cons):
            self._cons[slot] = None
            if con is not None:
                await _close(con)


async def _close(con: asyncpg.Connection) -> None:
    """Close ``con`` politely, or cut it."""
    if con.is_closed():
        return
    try:
        await asyncio.wait_for(con.close(), 5)
    except (asyncio.TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        con.terminate()


async def _already_written(con: asyncpg.Connection, write: PageWrite) -> bool:
    row = await con.fetchrow(
        "SELECT state, cursor, head, last_error, writer FROM threads WHERE thread_id = $1",
        write.thread_id,
    )
    return row is not None and tuple(row) == (
        write.state,
        write.cursor,
        write.head,
        write.last_error,
        write.writer,
    )


async def _migrate(
    con: asyncpg.Connection, where: str, settings: Mapping[str, str] | None, create: bool
) -> None:
    async with con.transaction():
        if not create and await con.fetchval("SELECT to_regclass('schema_version')") is None:
            raise SinkUnavailableError(f"{where} holds no aiorunlist export")
        await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await con.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        version = await con.fetchval("SELECT max(version) FROM schema_version") or 0
        if version > SCHEMA_VERSION:
            raise SinkSettingsError(
                f"{where} has schema version {version}, newer than this aiorunlist's "
                f"({SCHEMA_VERSION}); upgrade aiorunlist"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                await con.execute(statement)
        if version < SCHEMA_VERSION:
            await con.execute("DELETE FROM schema_version")
            await con.execute("INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION)
        if settings is not None:
            stored = {r[0]: r[1] for r in await con.fetch("SELECT name, value FROM settings")}
            check_settings(where, stored, settings)
            await con.executemany(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                sorted(settings.items()),
            )


async def open_postgres(
    dsn: str,
    settings: Mapping[str, str] | None,
    *,
    reconnect_for: float = 60.0,
    create: bool = True,
) -> PostgresSink:
    """Connect to ``dsn``, create or migrate the schema, and check the settings."""
    where = _masked(dsn)
    try:
        con = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = str(exc) or type(exc).__name__
        raise SinkUnavailableError(
            f"cannot connect to {where}: {' '.join(reason.split())}"
        ) from None
    try:
        await _migrate(con, where, settings, create)
    except asyncpg.PostgresError as exc:
        await con.close()
        raise SinkUnavailableError(f"cannot use {where}: {exc}") from None
    except BaseException:
        con.terminate()
        raise
    return PostgresSink(dsn, con, reconnect_for)
