"""``aiorunlist runs --sink URL``: the export engine, writing into a database sink.

The sink is its own checkpoint: each page is stored in one transaction that also advances its
thread's cursor (compare-and-set), so an export stopped at any moment (Ctrl-C, kill -9) is
continued by the same command, and a finished one re-run is an incremental sync. A thread
whose cursor another writer advanced first is left to that writer (``lost``), not failed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager, aclosing

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._client import Client
from .._fanout import PageStream, ThreadPage, ThreadStart
from .._models import Run
from ..sinks import PageWrite, Sink, SinkError
from ..sinks._stream import raw_pages_many
from ..sinks._walk import Walk, plan_walk
from ._export import FATAL_ERRORS, Export, Order
from ._inputs import ThreadIds
from ._output import Summary
from ._progress import Progress

__all__ = ["SinkExport"]

#: Thread ids looked up in the sink at once.
LOOKUP_BATCH = 256
#: Pages decoded and waiting for the writer at most.
WRITE_AHEAD = 8

_Queued = tuple[Walk, PageWrite | None, ThreadPage]


@attrs.define
class _Done:
    """A page handed to the sink: what counting it takes once it is stored."""

    thread_id: str
    count: int
    last: bool
    error: Exception | None
    runs: Sequence[Run] = ()


class SinkExport(Export):
    """An :class:`Export` into a :class:`~aiorunlist.sinks.Sink` instead of a file.

    After :meth:`run`, besides the figures of :class:`Export`: ``lost`` (threads another
    writer was already exporting) and ``writes`` (transactions committed). Runs are counted
    once stored. A writer task stores the pages in order, one transaction each, while the
    next ones are decoded; a page not stored when the export stops is listed again next time.
    """

    def __init__(
        self,
        client: Client,
        ids: ThreadIds,
        sink: Sink,
        *,
        order: Order = "desc",
        page_size: int = 100,
        concurrency: int = 16,
        summary: Summary | None = None,
        progress: Progress | None = None,
    ) -> None:
        super().__init__(
            client,
            ids,
            order=order,
            page_size=page_size,
            concurrency=concurrency,
            summary=summary,
            progress=progress,
        )
        self.sink = sink
        self.lost = 0
        self.writes = 0
        #: This export's name in ``threads.writer``: unique, so that an export that lost a
        #: thread to another never takes it back with a write the other one made identical.
        self.writer_name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        #: The sink failed (the export stopped).
        self.sink_error: SinkError | None = None
        self._walks: dict[str, Walk] = {}

    async def _starts(self) -> AsyncGenerator[str | ThreadStart, None]:
        batch: list[str] = []
        async with aclosing(self.ids.__aiter__()) as ids:
            async for thread_id in ids:
                batch.append(thread_id)
                if len(batch) >= LOOKUP_BATCH:
                    for start in await self._plan(batch):
                        yield start
                    batch = []
        if batch:
            for start in await self._plan(batch):
                yield start

    async def _plan(self, batch: list[str]) -> list[str | ThreadStart]:
        states = await self.sink.threads(batch)
        starts: list[str | ThreadStart] = []
        for thread_id in batch:
            if thread_id in self._walks:  # listed twice, and still being listed: once is enough
                continue
            start, walk = plan_walk(thread_id, states.get(thread_id), self.order, self.writer_name)
            self._walks[thread_id] = walk
            starts.append(start)
        return starts

    async def _list(self) -> None:
        """Hand each page to a writer task, so the next page is decoded while one is stored."""
        send, receive = anyio.create_memory_object_stream[_Queued](WRITE_AHEAD)
        # What is alive now (modules, classes, the client) outlives the export: set aside while
        # it lasts, the garbage collector's full collections traverse only what the export
        # makes, not the whole program (unless the program froze objects itself).
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._writer, receive, group.cancel_scope)
                async with send:
                    await self._pages(send)
        finally:
            if freeze:
                gc.unfreeze()
        if self.sink_error is not None:
            raise self.sink_error

    async def _pages(self, send: MemoryObjectSendStream[_Queued]) -> None:
        starts = self._starts()
        fan_out: AbstractAsyncContextManager[PageStream]
        if self.summary is None:  # nothing needs typed runs: leave them as the server's JSON
            fan_out = raw_pages_many(
                self.client,
                starts,
                concurrency=self.concurrency,
                order=self.order,
                page_size=self.page_size,
            )
        else:
            fan_out = self.client.pages_many(
                starts,
                concurrency=self.concurrency,
                order=self.order,
                page_size=self.page_size,
                on_error="collect",
            )
        async with aclosing(starts), fan_out as stream:
            async for page in stream:
                walk = self._walks[page.thread_id]
                if page.last:  # done with it here (the writer holds on to it in the queue)
                    del self._walks[page.thread_id]
                if walk.lost:
                    continue
                write = walk.page_write(page)
                if write is not None:
                    walk.written(write)  # the next page of the thread compares against it
                await send.send((walk, write, page))
                if self.fatal is not None or self.sink_error is not None:
                    return

    async def _writer(
        self, receive: MemoryObjectReceiveStream[_Queued], scope: anyio.CancelScope
    ) -> None:
        """Store the pages in order. Up to ``sink.write_ahead`` writes are handed to the sink
        before the oldest is settled, so that a sink working in a thread of its own always has
        the next page waiting (its writes still happen one after the other, in order)."""
        depth = max(1, self.sink.write_ahead)
        pending: deque[tuple[Walk, _Done, asyncio.Task[bool] | None]] = deque()
        try:
            async with receive:
                async for walk, write, page in receive:
                    task = None
                    if write is not None and not walk.lost:
                        task = asyncio.ensure_future(self.sink.write_page(write))
                    # What counting needs, not the page: its runs can then be freed as soon as
                    # the sink took them, young (the garbage collector traverses them less).
                    done = _Done(page.thread_id, len(page.raw), page.last, page.error)
                    if self.summary is not None:
                        done.runs = page.runs
                    pending.append((walk, done, task))
                    del write, page
                    while len(pending) >= depth:
                        if not await self._settle(*pending.popleft()):
                            scope.cancel()
                            return
            while pending:
                if not await self._settle(*pending.popleft()):
                    scope.cancel()
                    return
        finally:
            tasks = [task for _, _, task in pending if task is not None]
            for task in tasks:
                task.cancel()
            with anyio.CancelScope(shield=True):  # a write in a thread ends on its own
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _settle(self, walk: Walk, page: _Done, task: asyncio.Task[bool] | None) -> bool:
        """Count a stored page; ``False`` when the sink failed (the export stops)."""
        if task is not None:
            try:
                stored = await task
            except SinkError as exc:
                self.sink_error = exc  # raised by _list once the listing stopped
                return False
            if not stored:  # another writer got there first: the thread is its
                if not walk.lost:
                    walk.lost = True
                    self.lost += 1
                return True
            self.writes += 1
        if walk.lost:
            return True
        self._count(page)
        return True

    def _count(self, page: _Done) -> None:
        summary = self.summary
        if summary is not None:
            for run in page.runs:
                summary.add(run)
        self.runs += page.count
        if page.last:
            error = page.error
            if error is not None:
                self.failures[page.thread_id] = error
                if isinstance(error, FATAL_ERRORS):
                    self._stop(error)
            else:
                self.threads_done += 1

    def threads_finished(self) -> int:
        """Threads listed to the end, failed, or left to another writer."""
        return super().threads_finished() + self.lost
