"""``runs_many`` and ``pages_many``: a bounded, lazy, cancellation-safe fan-out over threads.

The shape follows anyio's advice for async generators: the task group lives in an
``@asynccontextmanager``, never in a generator that yields. The context manager starts one
producer task, which runs ``concurrency`` workers in a task group of its own; each worker
takes the next thread, walks it page by page and sends each page, as a :class:`ThreadPage`,
into a bounded memory stream. The consumer reads that stream through :class:`RunStream` (one
run at a time) or :class:`PageStream` (one page at a time, with the thread it belongs to and
whether it was the thread's last). Cancelling the workers' own group on a failure leaves the
consumer's code alone, so the failing thread's exception reaches it as itself, not as an
ExceptionGroup.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._convert import copy_json, structure_run, structure_run_eager
from ._models import Run
from ._protocol import (
    Order,
    PageWalk,
    RawPage,
    accept_page,
    check_list_args,
    check_order,
    check_page_size,
    shape_error,
    structure_runs,
)
from ._text import shown
from ._transport import Response
from .exceptions import APIResponseValidationError, RunListError

if TYPE_CHECKING:
    from ._client import Checked, Client

__all__ = ["PageStream", "RunStream", "ThreadPage", "ThreadStart", "fan_out", "shared_raw"]


@attrs.frozen
class ThreadStart:
    """A thread to list from a cursor, in :meth:`Client.runs_many` / :meth:`Client.pages_many`.

    ``ThreadStart("thread_1", after="run_9")`` resumes that thread right after ``run_9``;
    ``before`` walks backwards as in :meth:`Client.runs`. A plain string lists the whole thread.
    A thread id or cursor no server would accept raises ``ValueError`` (``TypeError`` for
    one that is not a string) here, before anything is sent.
    """

    thread_id: str
    after: str | None = None
    before: str | None = None

    def __attrs_post_init__(self) -> None:
        check_list_args(self.thread_id, order="desc", after=self.after, before=self.before)


@attrs.frozen
class ThreadPage:
    """One page of one thread, from :meth:`Client.pages_many`.

    ``runs`` are in the order :meth:`Client.runs` would yield them, each typed whole (nested
    objects included) when the page is handed out. ``last`` is true on the
    thread's final item: its listing is complete, or (with ``error`` set, under
    ``on_error="collect"``) it failed after the pages already handed out.

    ``raw`` holds the same runs as the server sent them (decoded JSON objects, the server's
    key order kept), one per run in ``runs`` and in the same order: what an export writes
    when it must keep the server's own text. It is yours to edit: a copy, made when it is
    first read (then kept), that shares no dict or list with ``runs``, so editing it changes
    no run, nor what :func:`aiorunlist.unstructure` gives for one. (A run's own JSON values
    are read-only, as :class:`Run` says.) A page whose ``raw`` is never read, or that has
    no runs, costs no copy.
    """

    thread_id: str
    runs: Sequence[Run]
    last: bool
    error: Exception | None = None
    #: The decoded run objects, shared with ``runs`` (``raw`` is a copy of them).
    _raw: Sequence[Mapping[str, Any]] = attrs.field(default=(), repr=False)
    _raw_copy: list[Any] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    @property
    def raw(self) -> Sequence[Mapping[str, Any]]:
        """The runs as the server sent them, as plain dicts: a copy, made on first read."""
        if not self.runs:  # shared with no run (a page of raw runs only): nothing to copy
            return self._raw
        copied = self._raw_copy
        if copied is None:
            copied = copy_json(list(self._raw))
            object.__setattr__(self, "_raw_copy", copied)
        return copied


def shared_raw(page: ThreadPage) -> Sequence[Mapping[str, Any]]:
    """``page.raw`` without the copy, for a reader that only serialises it at once."""
    return page._raw


Threads = Iterable[str | ThreadStart] | AsyncIterable[str | ThreadStart]


class _Dropped(Exception):
    """The consumer dropped a page of a thread that already failed (no new failure)."""


class _Item:
    """What a worker hands over: an answer for the consumer to check, or a thread's end.

    The worker hands over the response, not decoded JSON: bytes are nothing for the garbage
    collector to traverse while they wait. The consumer decodes and checks the page against
    the thread's walk (its cursor bookkeeping included), sets ``more`` or ``error`` and
    ``done``, and only then hands out the runs, typed one by one. An item with no ``walk``
    is a failed thread's end (``error``), for :class:`PageStream`.
    """

    __slots__ = ("done", "error", "more", "response", "thread_id", "walk")

    def __init__(
        self,
        thread_id: str,
        *,
        walk: PageWalk | None = None,
        response: Response | None = None,
        error: Exception | None = None,
    ) -> None:
        self.thread_id = thread_id
        self.walk = walk
        self.response = response
        self.error = error
        self.more = False
        self.done = anyio.Event()


def _unchanged(error: RunListError) -> RunListError:
    return error


class _Stream:
    __slots__ = (
        "_collect",
        "_dropped",
        "_error",
        "_pending",
        "_receive",
        "_scrub",
        "failures",
        "threads_done",
    )

    def __init__(self, receive: MemoryObjectReceiveStream[None], collect: bool) -> None:
        self._receive = receive
        #: Items handed over by workers, oldest first. The channel only carries a wake-up per
        #: item: a receive cancelled after its wake-up arrived loses nothing (the item waits
        #: here), where losing the item itself would leave its worker waiting forever.
        self._pending: deque[_Item] = deque()
        self._collect = collect
        #: Threads whose page the consumer found malformed: their later pages are dropped.
        self._dropped: set[str] = set()
        self._error: BaseException | None = None
        #: Failed thread id -> its exception (``on_error="collect"``).
        self.failures: dict[str, Exception] = {}
        #: How many threads were listed to the end (successfully).
        self.threads_done = 0
        #: Masks the API key in an error made of server text (the client's).
        self._scrub: Callable[[RunListError], RunListError] = _unchanged

    def _accept(self, item: _Item) -> tuple[RawPage, list[Any], bool] | None:
        """Decode a handed-over answer, check it, and tell the worker (``item.done``).

        Returns the page, its run objects in hand-out order, and whether it is the thread's
        last; ``None`` when the page is not to be handed out (the worker then retries the
        request, or fails the thread, as the error says).
        """
        walk, response = item.walk, item.response
        assert walk is not None  # noqa: S101 - set on answer items
        assert response is not None  # noqa: S101 - likewise
        try:
            if item.thread_id in self._dropped:
                raise _Dropped  # noqa: TRY301 - told to the worker, not raised here
            raw, items, more = accept_page(walk, response.status, response.headers, response.body)
        except Exception as exc:
            item.error = exc
            item.done.set()
            return None
        item.more = more
        item.done.set()
        return raw, items, not more

    async def _next_page(self) -> ThreadPage:
        """The next page, decoded and typed here, right before its runs are handed out."""
        while True:
            item = await self._next_item()
            if item.walk is None:
                return ThreadPage(item.thread_id, (), True, item.error)
            accepted = self._accept(item)
            if accepted is None:
                continue
            raw, items, last = accepted
            try:
                # A page is typed at once: an exporter that reads a run's nested objects
                # finds a malformed one here, failing its thread, not while it writes.
                runs = structure_runs(
                    raw, items, thread_id=item.thread_id, hook=structure_run_eager
                )
            except APIResponseValidationError as exc:
                self._scrub(exc)
                if not self._collect:
                    raise
                self.failures[item.thread_id] = exc
                self._dropped.add(item.thread_id)
                return ThreadPage(item.thread_id, (), True, exc)
            if last:
                self.threads_done += 1
            return ThreadPage(item.thread_id, runs, last, raw=items)

    async def _next_item(self) -> _Item:
        """The oldest handed-over item, once its wake-up is taken (which releases its worker).

        A wake-up taken by a receive that was then cancelled is lost, never the item: with an
        item waiting and no wake-up to take, the item is taken all the same.
        """
        pending = self._pending
        receive = self._receive
        try:
            await anyio.lowlevel.checkpoint()  # let workers and connections run between pages
            while True:
                # A wake-up may belong to an item already taken (taken before its worker got
                # to send the wake-up); items are what counts, wake-ups only release workers.
                with contextlib.suppress(anyio.WouldBlock):
                    receive.receive_nowait()
                if pending:
                    return pending.popleft()
                await receive.receive()
                if pending:
                    return pending.popleft()
        except anyio.ClosedResourceError:
            raise RunListError(
                f"this {type(self).__name__} is closed: iterate it inside its `async with` block"
            ) from None
        except anyio.EndOfStream:
            if pending:
                return pending.popleft()
        # Raised outside the except block, so the error keeps its own __cause__ and context.
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration

    def _close(self) -> None:
        self._receive.close()
        self._pending.clear()


class RunStream(_Stream):
    """The runs of a :meth:`Client.runs_many` fan-out, as an async iterator.

    ``failures`` maps each thread id that failed to its exception (with
    ``on_error="collect"``); read it after the iteration ended. ``threads_done`` counts the
    threads listed to the end.

    Each run is typed as it is handed out, so a typed run lives only as long as its consumer
    keeps it. A run the library cannot read (a server sending ``"status": 5``) fails its
    thread there: the runs before it were delivered, each once and in order; the rest of the
    thread is dropped.
    """

    __slots__ = ("_current", "_item")

    def __init__(self, receive: MemoryObjectReceiveStream[None], collect: bool) -> None:
        super().__init__(receive, collect)
        self._current: Iterator[Any] = iter(())
        #: The page being handed out: its thread, answer, and whether it is the thread's last.
        self._item: tuple[str, RawPage, bool] | None = None

    def __aiter__(self) -> AsyncGenerator[Run, None]:
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[Run, None]:
        # An async generator hands out runs faster than a coroutine per ``__anext__``. Its
        # position lives in the stream (``_current``), so a second ``async for`` over the same
        # stream carries on where the first one stopped; it holds no task group or cancel
        # scope, so it may be left suspended.
        while True:
            current = self._item
            if current is not None:
                raw_run: Any = None
                try:
                    for raw_run in self._current:
                        yield structure_run(raw_run)
                except (TypeError, ValueError, AttributeError, KeyError) as exc:
                    self._malformed(current, exc, raw_run)
                else:
                    if current[2]:
                        self.threads_done += 1
                self._item = None
            try:
                item = await self._next_item()
            except StopAsyncIteration:
                return
            if item.walk is None:
                continue  # a failed thread's end (already in ``failures``)
            accepted = self._accept(item)
            if accepted is not None:
                raw, items, last = accepted
                self._item = (item.thread_id, raw, last)
                self._current = iter(items)

    def _malformed(self, current: tuple[str, RawPage, bool], exc: Exception, raw_run: Any) -> None:
        thread_id, raw, _last = current
        run_id = raw_run.get("id") if isinstance(raw_run, dict) else None
        what = f"run {shown(run_id)}: {exc}" if run_id is not None else exc
        error = shape_error(thread_id, raw.status, raw.request_id, what)
        error.__cause__ = exc
        self._scrub(error)
        if not self._collect:
            raise error
        self.failures[thread_id] = error
        self._dropped.add(thread_id)
        self._current = iter(())

    async def __anext__(self) -> Run:
        """The next run (``async for`` is faster; both share one position)."""
        it = self._iterate()
        try:
            return await it.__anext__()
        finally:
            await it.aclose()

    def _close(self) -> None:
        super()._close()
        self._current = iter(())
        self._item = None


class PageStream(_Stream):
    """The pages of a :meth:`Client.pages_many` fan-out: :class:`ThreadPage` items.

    Each thread's pages arrive in order, its ``last`` page after all others, so a consumer
    can checkpoint per thread. ``failures`` and ``threads_done`` as in :class:`RunStream`.
    """

    __slots__ = ()

    def __aiter__(self) -> PageStream:
        return self

    async def __anext__(self) -> ThreadPage:
        return await self._next_page()


S = TypeVar("S", bound=_Stream)

#: The end of the caller's thread iterable (``None`` is a possible, invalid, item).
_END = object()


async def _aiter(threads: Threads) -> AsyncGenerator[str | ThreadStart, None]:
    if isinstance(threads, AsyncIterable):
        async for item in threads:
            yield item
    else:
        for item in threads:
            yield item


class _FanOut(Generic[S]):
    """The workers of one fan-out (one instance per ``async with``)."""

    def __init__(
        self,
        client: Client,
        threads: Threads,
        stream: S,
        send: MemoryObjectSendStream[None],
        *,
        concurrency: int,
        order: str,
        page_size: int,
        on_error: str,
        error_items: bool,
    ) -> None:
        self.client = client
        self.items = _aiter(threads)
        self.lock = anyio.Lock()
        self.stream = stream
        self.send = send
        self.concurrency = concurrency
        self.order = order
        self.page_size = page_size
        self.collect = on_error == "collect"
        self.error_items = error_items
        #: The scope of the whole fan-out (set by ``_run``): cancelled when the consumer leaves.
        self.outer = anyio.CancelScope()

    async def next_item(self) -> str | ThreadStart | object:
        """The next thread from the caller's iterable, or ``_END`` when it is exhausted."""
        async with self.lock:
            try:
                return await self.items.__anext__()
            except StopAsyncIteration:
                return _END

    async def hand_over(self, out: MemoryObjectSendStream[None], item: _Item) -> None:
        """Queue ``item`` for the consumer and wake it (see ``_Stream._pending``).

        The wake-up channel has no buffer: the worker waits until the consumer takes a
        wake-up, then waits for the verdict on its page.
        """
        self.stream._pending.append(item)
        await out.send(None)

    def fail(self, exc: BaseException, group: TaskGroup) -> None:
        if self.stream._error is None:
            self.stream._error = exc
        group.cancel_scope.cancel()

    async def walk(self, out: MemoryObjectSendStream[None], item: str | ThreadStart) -> None:
        """List one thread through the client's page loop, its pages checked by the consumer."""
        if isinstance(item, ThreadStart):
            thread_id, after, before = item.thread_id, item.after, item.before
        else:
            thread_id, after, before = item, None, None
        check_list_args(thread_id, order=self.order, after=after, before=before)

        async def accept_by_consumer(walk: PageWalk, response: Response) -> Checked:
            if not 200 <= response.status < 300:  # an error: read here, the consumer never sees it
                return accept_page(walk, response.status, response.headers, response.body)
            handed = _Item(thread_id, walk=walk, response=response)
            await self.hand_over(out, handed)
            await handed.done.wait()
            if handed.error is not None:
                raise handed.error
            return None, [], handed.more

        pages = self.client._walk(
            thread_id,
            order=self.order,
            page_size=self.page_size,
            after=after,
            before=before,
            accept=accept_by_consumer,
        )
        try:
            async for _ in pages:
                pass  # the consumer hands the runs out; the loop only drives the requests
        finally:
            await pages.aclose()

    async def worker(self, out: MemoryObjectSendStream[None], group: TaskGroup) -> None:
        async with out:
            while True:
                try:
                    item = await self.next_item()
                except Exception as exc:  # the caller's own iterable failed: fatal either way
                    self.fail(exc, group)
                    return
                except anyio.get_cancelled_exc_class() as exc:
                    if self.outer.cancel_called or group.cancel_scope.cancel_called:
                        raise  # the fan-out itself is being cancelled
                    # The source's own cancellation (it awaited something cancelled): it
                    # failed, and must not pass for the end of the ids.
                    error = RunListError(
                        "the iterable of thread ids raised CancelledError of its own; the "
                        "listing stopped there, with threads possibly left unlisted"
                    )
                    error.__cause__ = exc
                    self.fail(error, group)
                    return
                except BaseException as exc:  # KeyboardInterrupt, SystemExit, ...
                    # Raised from the consumer's `async for` as itself, not as a group.
                    self.fail(exc, group)
                    return
                if item is _END:
                    return
                try:
                    await self.walk(out, item)  # type: ignore[arg-type]
                except _Dropped:
                    continue  # the consumer already recorded this thread's failure
                except Exception as exc:
                    key = item.thread_id if isinstance(item, ThreadStart) else item
                    key = key if isinstance(key, str) else repr(key)
                    if key in self.stream._dropped:
                        continue  # failed again after the consumer failed it: keep the first
                    if not self.collect:
                        self.fail(exc, group)
                        return
                    self.stream.failures[key] = exc
                    if self.error_items:
                        await self.hand_over(out, _Item(key, error=exc))
                    continue

    async def produce(self) -> None:
        try:
            async with self.send, anyio.create_task_group() as group:
                for _ in range(self.concurrency):
                    group.start_soon(self.worker, self.send.clone(), group)
        finally:
            with anyio.CancelScope(shield=True):  # let the caller's id source clean up
                await self.items.aclose()


@asynccontextmanager
async def _run(
    client: Client,
    threads: Threads,
    stream_cls: type[S],
    *,
    concurrency: int,
    order: str,
    page_size: int,
    on_error: str,
) -> AsyncGenerator[S, None]:
    send, receive = anyio.create_memory_object_stream[None](max_buffer_size=0)
    stream = stream_cls(receive, on_error == "collect")
    stream._scrub = client._scrub
    fan_out = _FanOut(
        client,
        threads,
        stream,
        send,
        concurrency=concurrency,
        order=order,
        page_size=page_size,
        on_error=on_error,
        error_items=issubclass(stream_cls, PageStream),
    )
    # The consumer's own exception (KeyboardInterrupt, SystemExit and GeneratorExit included)
    # is caught here and raised again once the task group is gone, so that it reaches the
    # caller as itself, not wrapped in an ExceptionGroup. Cancellation passes through.
    consumer_error: BaseException | None = None
    cancelled = anyio.get_cancelled_exc_class()
    async with anyio.create_task_group() as outer:
        fan_out.outer = outer.cancel_scope
        outer.start_soon(fan_out.produce)
        try:
            yield stream
        except cancelled:
            raise
        except BaseException as exc:
            consumer_error = exc
        finally:
            outer.cancel_scope.cancel()
            stream._close()
    if consumer_error is not None:
        raise consumer_error


def fan_out(
    client: Client,
    threads: Threads,
    stream_cls: type[S],
    *,
    concurrency: int = 16,
    order: Order = "desc",
    page_size: int = 100,
    on_error: Literal["raise", "collect"] = "raise",
) -> AbstractAsyncContextManager[S]:
    """Check the arguments now, then return the fan-out's async context manager."""
    if isinstance(threads, (str, bytes)):
        raise TypeError(
            "thread_ids must be an iterable of thread ids, not a single string; "
            "pass [thread_id] for one thread"
        )
    if not isinstance(threads, (Iterable, AsyncIterable)):
        raise TypeError(f"thread_ids must be an iterable or async iterable, got {threads!r}")
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not (1 <= concurrency <= 1024)
    ):
        raise ValueError(f"concurrency must be an integer from 1 to 1024, got {concurrency!r}")
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    check_order(order)
    check_page_size(page_size, name="page_size")
    return _run(
        client,
        threads,
        stream_cls,
        concurrency=concurrency,
        order=order,
        page_size=page_size,
        on_error=on_error,
    )
