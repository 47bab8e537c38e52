"""``runs_many``: a bounded, lazy, cancellation-safe fan-out over many threads.

The shape follows anyio's advice for async generators: the task group lives in an
``@asynccontextmanager``, never in a generator that yields. The context manager starts one
producer task, which runs ``concurrency`` workers in a task group of its own; each worker
takes the next thread id, walks that thread page by page and sends each page into a bounded
memory stream. The consumer reads pages from that stream through :class:`RunStream`, one run
at a time. Cancelling the workers' own group on a failure leaves the consumer's code alone,
so the failing thread's exception reaches it as itself, not as an ExceptionGroup.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Literal

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._models import Run
from ._protocol import PageWalk, check_list_args
from .exceptions import RunListError

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["RunStream", "runs_many"]


class RunStream:
    """The runs of a :meth:`Client.runs_many` fan-out, as an async iterator.

    ``failures`` maps each thread id that failed to its exception (with
    ``on_error="collect"``); read it after the iteration ended.
    """

    __slots__ = ("_current", "_error", "_receive", "failures", "threads_done")

    def __init__(self, receive: MemoryObjectReceiveStream[Sequence[Run]]) -> None:
        self._receive = receive
        self._current: Iterator[Run] = iter(())
        self._error: BaseException | None = None
        #: Failed thread id -> its exception (``on_error="collect"``).
        self.failures: dict[str, BaseException] = {}
        #: How many threads were listed to the end (successfully).
        self.threads_done = 0

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> Run:
        try:
            return next(self._current)
        except StopIteration:
            pass
        while True:
            try:
                page = await self._receive.receive()
            except anyio.ClosedResourceError:
                raise RunListError(
                    "this RunStream is closed: iterate it inside its "
                    "`async with client.runs_many(...)` block"
                ) from None
            except anyio.EndOfStream:
                if self._error is not None:
                    raise self._error from None
                raise StopAsyncIteration from None
            if page:
                it = iter(page)
                self._current = it
                return next(it)


async def _aiter_ids(thread_ids: Iterable[str] | AsyncIterable[str]) -> AsyncGenerator[str, None]:
    if isinstance(thread_ids, AsyncIterable):
        async for tid in thread_ids:
            yield tid
    else:
        for tid in thread_ids:
            yield tid


@asynccontextmanager
async def _fan_out(
    client: Client,
    *,
    thread_ids: Iterable[str] | AsyncIterable[str],
    concurrency: int,
    order: str,
    page_size: int,
    on_error: str,
) -> AsyncGenerator[RunStream, None]:
    send, receive = anyio.create_memory_object_stream[Sequence[Run]](max_buffer_size=concurrency)
    stream = RunStream(receive)
    ids_lock = anyio.Lock()
    ids = _aiter_ids(thread_ids)

    async def next_id() -> str | None:
        async with ids_lock:
            try:
                return await ids.__anext__()
            except StopAsyncIteration:
                return None

    async def worker(out: MemoryObjectSendStream[Sequence[Run]], group: TaskGroup) -> None:
        async with out:
            while True:
                try:
                    thread_id = await next_id()
                except Exception as exc:  # the caller's own iterable failed: fatal either way
                    if stream._error is None:
                        stream._error = exc
                    group.cancel_scope.cancel()
                    return
                if thread_id is None:
                    return
                try:
                    check_list_args(
                        thread_id, limit=page_size, order=order, after=None, before=None
                    )
                    walk = PageWalk(thread_id, after=None, before=None)
                    while True:
                        page = await client._fetch_page(
                            thread_id, page_size, order, walk.after, walk.before
                        )
                        await out.send(walk.ordered(page))
                        if not walk.advance(page):
                            break
                except Exception as exc:
                    if on_error == "collect":
                        stream.failures[thread_id] = exc
                        continue
                    if stream._error is None:
                        stream._error = exc
                    group.cancel_scope.cancel()
                    return
                stream.threads_done += 1

    async def produce() -> None:
        try:
            async with send, anyio.create_task_group() as group:
                for _ in range(concurrency):
                    group.start_soon(worker, send.clone(), group)
        finally:
            with anyio.CancelScope(shield=True):  # let the caller's id source clean up
                await ids.aclose()

    # The consumer's own exception is caught here and raised again once the task group is
    # gone, so that it reaches the caller as itself, not wrapped in an ExceptionGroup.
    consumer_error: Exception | None = None
    async with anyio.create_task_group() as outer:
        outer.start_soon(produce)
        try:
            yield stream
        except Exception as exc:
            consumer_error = exc
        finally:
            outer.cancel_scope.cancel()
            receive.close()
            stream._current = iter(())
    if consumer_error is not None:
        raise consumer_error


def runs_many(
    client: Client,
    thread_ids: Iterable[str] | AsyncIterable[str],
    *,
    concurrency: int = 16,
    order: Literal["asc", "desc"] = "desc",
    page_size: int = 100,
    on_error: Literal["raise", "collect"] = "raise",
) -> AbstractAsyncContextManager[RunStream]:
    """Check the arguments now, then return the fan-out's async context manager."""
    if isinstance(thread_ids, (str, bytes)):
        raise TypeError(
            "thread_ids must be an iterable of thread ids, not a single string; "
            "pass [thread_id] for one thread"
        )
    if not isinstance(thread_ids, (Iterable, AsyncIterable)):
        raise TypeError(f"thread_ids must be an iterable or async iterable, got {thread_ids!r}")
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not (1 <= concurrency <= 1024)
    ):
        raise ValueError(f"concurrency must be an integer from 1 to 1024, got {concurrency!r}")
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    check_list_args(
        "-", limit=page_size, order=order, after=None, before=None, limit_name="page_size"
    )
    return _fan_out(
        client,
        thread_ids=thread_ids,
        concurrency=concurrency,
        order=order,
        page_size=page_size,
        on_error=on_error,
    )
