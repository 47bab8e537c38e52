"""Sync one thread, or one slice of it, into a sink: the building block of a job in any queue.

The sink says where the thread's listing stands; each page is stored in one transaction that
also advances the thread's cursor with a compare-and-set, so a job run twice (redelivered,
retried, or racing a copy of itself) never stores a run twice: the copy that loses the
compare-and-set stops.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import uuid
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Literal

import attrs

from .._client import Client
from .._fanout import ThreadPage, ThreadStart, shared_raw
from .._protocol import check_list_args, check_page_size, shape_error
from ..exceptions import AuthenticationError, QuotaExceededError, RunListError
from ._base import Sink, SinkSettingsError, ThreadState, ThreadStateName
from ._walk import plan_walk

__all__ = ["SyncResult", "is_fatal", "sync_thread"]


@attrs.frozen
class SyncResult:
    """What :func:`sync_thread` did.

    ``state`` and ``cursor`` are the thread's stored state afterwards as this call wrote or
    read it (``state`` is ``None`` when the sink holds nothing of it). ``more`` is true when
    the listing did not reach the thread's end: ``max_pages`` pages were stored, or an error
    that is not the thread's own ended it (see ``error``). ``lost`` is true when another
    writer advanced the thread first: this call stopped and wrote nothing more (the other
    writer carries on).

    ``error`` is the error that ended the listing, if any. When it concerns the thread itself
    (not found, a malformed page...), the thread is stored as ``failed`` with it. When it does
    not (a timeout, a 5xx or a 429 the retries did not cure, a bad API key, an exhausted
    quota, a stopped fleet), nothing is stored for it and ``retry_later`` is true: call again
    later, from where the sink says.
    """

    thread_id: str
    #: Pages stored (each in its own transaction).
    pages: int = 0
    #: Runs in those pages (new, changed or unchanged).
    runs: int = 0
    state: ThreadStateName | None = None
    cursor: str | None = None
    more: bool = False
    lost: bool = False
    error: Exception | None = None
    #: The writer name the pages were stored under (``threads.writer``).
    writer: str | None = None

    @property
    def retry_later(self) -> bool:
        """An error ended the listing that does not concern the thread: nothing was marked
        failed, and the same call later goes on from where the sink says."""
        return self.error is not None and self.state != "failed"

    @property
    def fatal(self) -> bool:
        """The error is one that every other thread would meet too (see :func:`is_fatal`)."""
        return self.error is not None and is_fatal(self.error)


def is_fatal(error: BaseException) -> bool:
    """Whether ``error`` would end every thread's listing alike: a rejected API key (401), an
    exhausted quota (429 ``insufficient_quota``), or a fleet's traffic control stopped by one
    of them. A job that gets one should stop taking work, not mark threads failed."""
    if isinstance(error, (AuthenticationError, QuotaExceededError)):
        return True
    fleet = sys.modules.get("aiorunlist.fleet._control")  # only a fleet raises its stop
    return fleet is not None and isinstance(error, fleet.TrafficStoppedError)


def _concerns_thread(error: Exception) -> bool:
    """Whether the thread itself failed (as opposed to the server, the network or the key)."""
    if is_fatal(error):
        return False
    return not (isinstance(error, RunListError) and error.retryable)


#: The (order, page size) each open sink was found to hold: a stored setting never changes
#: (it is stored once, when first given), so a sink is read once, not once per job.
_CHECKED: weakref.WeakKeyDictionary[Sink, tuple[str, int]] = weakref.WeakKeyDictionary()


async def check_sink_settings(sink: Sink, order: str, page_size: int) -> None:
    """Refuse to list into ``sink`` in another order or page size than its export's.

    A thread's stored cursor is a run in the export's order: listing on from it in the other
    order would reach the thread's end with most of its runs never listed.
    """
    try:
        if _CHECKED.get(sink) == (order, page_size):
            return
    except TypeError:  # a sink that cannot be weakly referenced: read every time
        pass
    try:
        stored = await sink.stored_settings()
    except NotImplementedError:  # a sink of its own kind: it keeps its own settings
        return
    wanted = {"order": order, "page_size": str(page_size)}
    if "order" not in stored:
        raise SinkSettingsError(
            f"{sink.url} holds no export settings: open it with "
            f"open_sink(url, settings={wanted!r}) (the order and page size to sync with)"
        )
    for name, value in wanted.items():
        have = stored.get(name)
        if have is not None and have != value:
            shown = repr(have) if name == "order" else have
            raise SinkSettingsError(
                f"{sink.url} holds an export made with {name} {have}, not {value}: pass "
                f"{name}={shown}, or use another database"
            )
    if all(name in stored for name in wanted):  # both stored: they stay as they are
        with contextlib.suppress(TypeError):
            _CHECKED[sink] = (order, page_size)


async def _thread_pages(
    client: Client, start: str | ThreadStart, *, order: str, page_size: int
) -> AsyncGenerator[ThreadPage, None]:
    """The pages of one thread, raw runs only, as :func:`raw_pages_many` hands them out for
    one thread (a failure ends the thread with a page that carries it), fetched and checked
    in the caller's task: no fan-out's tasks and hand-overs for a single thread."""
    if isinstance(start, ThreadStart):
        thread_id, after, before = start.thread_id, start.after, start.before
    else:
        thread_id, after, before = start, None, None
    pages = None
    try:
        check_list_args(thread_id, order=order, after=after, before=before)
        pages = client._walk(
            thread_id, order=order, page_size=page_size, after=after, before=before
        )
        while True:
            try:
                raw, items, more = await pages.__anext__()
            except StopAsyncIteration:
                return
            for run in items:
                if not isinstance(run, dict) or not isinstance(run.get("id"), str):
                    cause = TypeError(f"a run without a string 'id': {str(run)[:100]}")
                    status, request_id = (
                        (200, None) if raw is None else (raw.status, raw.request_id)
                    )
                    error = shape_error(thread_id, status, request_id, cause)
                    error.__cause__ = cause
                    raise error  # noqa: TRY301 - ends the thread like any failure below
            yield ThreadPage(thread_id, (), not more, raw=items)
            if not more:
                return
    except Exception as exc:  # the thread's listing failed: its last page says why
        yield ThreadPage(thread_id, (), True, exc)
    finally:
        if pages is not None:
            await pages.aclose()


def writer_name(prefix: str = "sync") -> str:
    """A writer name no other writer uses: ``prefix:host:pid:random``."""
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


async def sync_thread(
    client: Client,
    sink: Sink,
    thread_id: str,
    *,
    order: Literal["asc", "desc"] = "desc",
    page_size: int = 100,
    max_pages: int | None = None,
    writer: str | None = None,
    state: ThreadState | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> SyncResult:
    """List one thread into ``sink``, from where the sink says it stands, page by page.

    Each page is stored in one transaction with the thread's new cursor, compare-and-set
    against the state this call started from: if another writer advanced the thread first,
    this call stops quietly (``lost``). A thread the sink holds as ``done`` is synced: only
    what is newer is listed (see the sink documentation).

    Use it inside a job of your own queue (arq, Celery, taskiq...): one job per thread, or
    per slice of ``max_pages`` pages, enqueueing the next slice while ``more`` is true.

    :param client: the client to list with (its traffic control and retries apply).
    :param sink: an open sink (:func:`aiorunlist.sinks.open_sink`) whose export settings
        (stored when it was first opened with ``settings``) have this ``order`` and
        ``page_size``.
    :param order: ``"desc"`` or ``"asc"``, as the sink's export was made.
    :param page_size: runs per page (1-100).
    :param max_pages: store at most this many pages, then return with ``more`` true
        (``None``: to the end of the thread).
    :param writer: the name stored with the pages (``threads.writer``); a fresh unique name
        by default. Give each concurrent job its own.
    :param state: the thread's stored state, if just read (saves reading it again).
    :param stop_when: checked after each stored page: when it returns true, the call returns
        at once with ``more`` true (e.g. a worker shutting down).
    :raises ValueError: a bad thread id, order, page size or ``max_pages`` (nothing sent).
    :raises aiorunlist.sinks.SinkSettingsError: the sink's export was made with another
        ``order`` or ``page_size``, or the sink holds no settings (open it with them); nothing
        is sent.
    :raises aiorunlist.sinks.SinkError: the sink failed (the page in hand is not stored).
    """
    check_list_args(thread_id, order=order)
    check_page_size(page_size, name="page_size")
    if max_pages is not None and (
        isinstance(max_pages, bool) or not isinstance(max_pages, int) or max_pages < 1
    ):
        raise ValueError(f"max_pages must be an integer >= 1 or None, got {max_pages!r}")
    await check_sink_settings(sink, order, page_size)
    if writer is None:
        writer = writer_name()
    if state is None:
        state = (await sink.threads([thread_id])).get(thread_id)
    start, walk = plan_walk(thread_id, state, order, writer)
    pages = runs = 0
    more = lost = False
    error: Exception | None = None
    stream = _thread_pages(client, start, order=order, page_size=page_size)
    try:
        async for page in stream:
            if page.error is not None and not _concerns_thread(page.error):
                error, more = page.error, True
                break
            write = walk.page_write(page)
            if write is not None:
                if not await sink.write_page(write):
                    lost = True
                    break
                walk.written(write)
                pages += 1
            runs += len(shared_raw(page))
            if page.last:
                error = page.error
                break
            if (max_pages is not None and pages >= max_pages) or (
                stop_when is not None and stop_when()
            ):
                more = True
                break
    finally:
        await stream.aclose()
    stored = walk.expected
    return SyncResult(
        thread_id,
        pages,
        runs,
        None if stored is None else stored.state,
        None if stored is None else stored.cursor,
        more,
        lost,
        error,
        writer,
    )
