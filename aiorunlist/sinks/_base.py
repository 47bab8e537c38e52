"""What both sinks share: the URL, the errors, a thread's stored state, one page's write, and
the mapping of a run's JSON onto the query columns."""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

import attrs

from ..exceptions import RunListError
from ._rows import COLUMNS, OPEN_STATUSES, SCHEMA_VERSION, run_row

__all__ = [
    "COLUMNS",
    "OPEN_STATUSES",
    "SCHEMA_VERSION",
    "SECRET_PARAMETERS",
    "PageWrite",
    "Sink",
    "SinkError",
    "SinkSettingsError",
    "SinkUnavailableError",
    "ThreadState",
    "Totals",
    "mask_url",
    "run_row",
]

ThreadStateName = Literal["pending", "done", "failed"]


#: Query parameters of a database URL that hold a secret (libpq's and asyncpg's names).
SECRET_PARAMETERS = frozenset({"password", "passfile", "sslpassword", "sslkey"})


def mask_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``: the password of its user, and the
    values of ``password=``, ``passfile=``, ``sslpassword=``, ``sslkey=`` parameters."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    base, question, query = rest.partition("?")
    userinfo, at, host = base.rpartition("@")
    if at and ":" in userinfo:
        base = f"{userinfo.split(':', 1)[0]}:***@{host}"
    if question:
        query, hash_, fragment = query.partition("#")
        params = [
            f"{p.partition('=')[0]}=***" if p.partition("=")[0].lower() in SECRET_PARAMETERS else p
            for p in query.split("&")
        ]
        base += question + "&".join(params) + hash_ + fragment
    return f"{scheme}{sep}{base}"


class SinkError(RunListError):
    """A database sink could not do what was asked (it says what, and what to do)."""


class SinkUnavailableError(SinkError):
    """The database could not be opened or reached."""


class SinkSettingsError(SinkError):
    """The database belongs to an export with other settings, or to a newer schema."""


@attrs.frozen
class ThreadState:
    """One row of ``threads``: how far the export of one thread got.

    ``state`` is ``"pending"`` (listed in part), ``"done"`` (listed to the end once) or
    ``"failed"`` (its listing failed; ``last_error`` says why). ``cursor`` is the last run
    stored in the export's order (where an interrupted listing carries on); ``head`` the
    newest run stored (where an incremental sync lists from). ``refresh_from`` is filled in by
    :meth:`Sink.threads` for done threads holding runs in a status that was not final: the
    newest stored run created before the oldest such run (``""`` when there is none, so the
    thread is listed again from its start), ``None`` when the thread has no such run.
    ``writer`` names the export that wrote the row last (any string it chose).
    """

    thread_id: str
    state: ThreadStateName
    cursor: str | None = None
    head: str | None = None
    runs: int = 0
    last_error: str | None = None
    updated_at: float = 0.0
    refresh_from: str | None = None
    writer: str | None = None


@attrs.frozen
class PageWrite:
    """One page of one thread, and the thread's state after it: one transaction.

    ``expected`` is the thread's state the writer started from (``None``: no row yet). The
    write happens only if the stored ``cursor``, ``head`` and ``writer`` still equal the
    expected ones (compare-and-set); otherwise another writer got there first and nothing is
    written. ``writer`` names this writer: two writers that stored the same page (the same
    cursor) still tell their rows apart, so that the one that lost never carries on.
    """

    thread_id: str
    runs: Sequence[Mapping[str, Any]]
    expected: ThreadState | None
    state: ThreadStateName
    cursor: str | None
    head: str | None
    last_error: str | None = None
    writer: str | None = None


@attrs.frozen
class Totals:
    """The summary figures, computed by the database."""

    runs: int
    #: (status, runs), most runs first.
    by_status: Sequence[tuple[str, int]]
    #: (model, runs, total tokens).
    by_model: Sequence[tuple[str, int, int]]
    #: (last_error_code, failed runs), most first.
    errors_by_code: Sequence[tuple[str, int]]


class Sink(abc.ABC):
    """An open database sink. Open one with :func:`aiorunlist.sinks.open_sink`.

    Every method is a coroutine that leaves the event loop free (SQLite works in a writer
    process of its own, or where none can be started, a thread). Use it as an async context
    manager, or call :meth:`aclose`.
    """

    #: The URL it was opened with, password masked.
    url: str
    #: Writes an exporter may hand over before the first of them completed (they are still
    #: done one after the other, in the order given). 1: one at a time.
    write_ahead: int = 1

    async def __aenter__(self) -> Sink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def threads(self, thread_ids: Sequence[str]) -> dict[str, ThreadState]:
        """The stored state of those of ``thread_ids`` the sink knows (others are left out)."""

    @abc.abstractmethod
    async def write_page(self, write: PageWrite) -> bool:
        """Store one page and the thread's new state in one transaction.

        Runs are upserted by ``id``: a new run is inserted, a changed one updated, an identical
        one left alone. Returns ``False`` (having written nothing) when the thread's stored
        cursor is no longer ``write.expected``'s: another writer got there first.
        """

    @abc.abstractmethod
    async def start_sync(self) -> None:
        """Record that an export starts now (``syncs``)."""

    @abc.abstractmethod
    async def finish_sync(self) -> None:
        """Record that the export started by :meth:`start_sync` ended."""

    @abc.abstractmethod
    async def totals(self) -> Totals:
        """Runs by status, tokens by model and failed runs by error code."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the database connection (idempotent)."""

    # Not abstract, so that a sink written for an earlier version still opens: the fleet
    # (aiorunlist.fleet) needs these three, the command line's exports do not.

    async def add_threads(self, thread_ids: Sequence[str]) -> list[str]:
        """Record ``thread_ids`` as ``pending`` threads (no cursor: listed from their start),
        in one transaction; ids the sink already holds are left as they are.

        :returns: the ids that were new, in the order given.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot record threads")

    async def list_threads(
        self, states: Collection[ThreadStateName], *, after: str = "", limit: int = 1000
    ) -> list[ThreadState]:
        """Up to ``limit`` threads in one of ``states``, by ``thread_id``, those after
        ``after`` (page through all of them by passing the last id seen)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list threads")

    async def thread_counts(self) -> dict[str, int]:
        """How many threads the sink holds in each state (``pending``, ``done``, ``failed``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot count threads")

    async def stored_settings(self) -> dict[str, str]:
        """The export settings the database holds (``order``, ``page_size``...): those given
        when it was first opened with settings, whatever this sink was opened with; empty
        when it was never given any."""
        raise NotImplementedError(f"{type(self).__name__} cannot read its settings")
