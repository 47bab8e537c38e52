"""Export runs into a database: SQLite (standard library) or PostgreSQL (``aiorunlist[postgres]``).

::

    from aiorunlist.sinks import open_sink

    async with await open_sink("sqlite:///runs.db", settings={"order": "desc"}) as sink:
        ...

The schema, its versions and the queries it is indexed for are described in the
documentation ("Export into a database"). ``import aiorunlist`` never imports this package;
this package imports asyncpg only when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

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
    Totals,
)
from ._sync import SyncResult, is_fatal, sync_thread

__all__ = [
    "COLUMNS",
    "OPEN_STATUSES",
    "SCHEMA_VERSION",
    "PageWrite",
    "Sink",
    "SinkError",
    "SinkSettingsError",
    "SinkUnavailableError",
    "SyncResult",
    "ThreadState",
    "Totals",
    "is_fatal",
    "open_sink",
    "sqlite_path",
    "sync_thread",
]

_EXAMPLES = "sqlite:///path/to/runs.db or postgresql://user@host:5432/dbname"
_NEEDS_ASYNCPG = "a postgresql:// sink needs asyncpg: pip install 'asyncpg>=0.29'"


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///path`` URL (``sqlite:////abs/path`` and ``sqlite:///rel``
    both work, as in SQLAlchemy); ``ValueError`` for anything else."""
    if not url.startswith("sqlite://"):
        raise ValueError(f"not a sqlite:// URL: {url!r}")
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError(
            f"sink URL {url!r} names no file: write sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    path = unquote(rest[1:])
    if "?" in path or "#" in path:
        raise ValueError(f"sink URL {url!r}: a SQLite sink URL takes no query or fragment")
    return path


def _check_postgres_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(
            f"sink URL is not a valid postgresql:// URL ({exc}); e.g. {_EXAMPLES}"
        ) from None
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"sink URL names no host; e.g. {_EXAMPLES}")


async def open_sink(
    url: str,
    *,
    settings: Mapping[str, str] | None = None,
    reconnect_for: float = 60.0,
    create: bool = True,
) -> Sink:
    """Open the database sink at ``url``, creating or migrating its schema.

    :param url: ``sqlite:///path/to/runs.db`` (SQLite, the standard library's sqlite3) or
        ``postgresql://user@host:port/db`` (asyncpg; ``postgres://`` works too).
    :param settings: the export's settings (e.g. ``{"order": "desc", "page_size": "100"}``):
        stored on first use; a database holding other values refuses with
        :class:`SinkSettingsError`. ``None`` checks nothing (reading only).
    :param create: ``False`` to open only a database an export already wrote to (reading):
        else :class:`SinkUnavailableError`, and no file or table is created.
    :param reconnect_for: PostgreSQL: seconds a write keeps reconnecting after losing its
        connection before it gives up with :class:`SinkUnavailableError`.
    :raises ValueError: a URL that is not one of the above (nothing is opened).
    :raises ImportError: a ``postgresql://`` URL without asyncpg installed.
    :raises SinkUnavailableError: the database cannot be opened or reached.
    :raises SinkSettingsError: the database was written with other settings, or by a newer
        schema.
    """
    if not isinstance(url, str):
        raise TypeError(f"the sink URL must be a string, not {type(url).__name__}")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        path = sqlite_path(url)
        from ._sqlite import open_sqlite  # noqa: PLC0415 - loaded with the backend it serves

        return await open_sqlite(path, url, settings, create=create)
    if scheme in {"postgresql", "postgres"}:
        _check_postgres_url(url)
        try:
            from ._postgres import open_postgres  # noqa: PLC0415 - asyncpg is an optional extra
        except ImportError as exc:
            if exc.name is not None and exc.name.partition(".")[0] == "asyncpg":
                raise ImportError(_NEEDS_ASYNCPG, name="asyncpg") from None
            raise
        return await open_postgres(url, settings, reconnect_for=reconnect_for, create=create)
    shown = url.rsplit("@", maxsplit=1)[-1] if "@" in url else url
    raise ValueError(f"unsupported sink URL {shown!r}: use {_EXAMPLES}")
