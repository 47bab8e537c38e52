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
from collections.abc import AsyncGenerator, Sequence
from contextlib import AbstractAsyncContextManager, aclosing

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._client import Client
from .._fanout import PageStream, ThreadStart
from .._models import Run
from ..sinks import Sink, SinkError
from ..sinks._stream import raw_pages_many
from ..sinks._walk import Walk, plan_walk
from ._export import FATAL_ERRORS, Export, Order
from ._inputs import ThreadIds
from ._output import Summary
from ._progress import Progress

__all__ = ["SinkExport"]

#: Thread ids looked up in the sink at once.
LOOKUP_BATCH = 256
#: Pages handed to the sink and waiting to be counted at most (beyond the writes in flight).
WRITE_AHEAD = 8
#: Allocations between two collections of the youngest objects while exporting (default 700).
GC_YOUNG_THRESHOLD = 20_000


@attrs.define
class _Done:
    """A page handed to the sink: what counting it takes once it is stored."""

    thread_id: str
    count: int
    last: bool
    error: Exception | None
    runs: Sequence[Run] = ()


_Queued = tuple[Walk, _Done, "asyncio.Task[bool] | None"]


class SinkExport(Export):
    """An :class:`Export` into a :class:`~aiorunlist.sinks.Sink` instead of a file.

    After :meth:`run`, besides the figures of :class:`Export`: ``lost`` (threads another
    writer was already exporting) and ``writes`` (transactions committed). Runs are counted
    once stored. Each page is handed to the sink as soon as it is decoded (at most
    ``sink.write_ahead`` writes in flight, stored in order, one transaction each), and counted
    in order once stored; a page not stored when the export stops is listed again next time.
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
        self._writes: set[asyncio.Task[bool]] = set()

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
        """Hand each page to the sink as soon as it is decoded (up to ``sink.write_ahead``
        writes in flight), and count the pages in order as their writes complete."""
        depth = max(1, self.sink.write_ahead)
        send, receive = anyio.create_memory_object_stream[_Queued](WRITE_AHEAD + depth)
        slots = anyio.Semaphore(depth)
        # What is alive now (modules, classes, the client) outlives the export: set aside while
        # it lasts, the garbage collector's full collections traverse only what the export
        # makes, not the whole program (unless the program froze objects itself). And each
        # page's runs are freed within a moment of their decoding: collecting young objects
        # every 700 allocations, the default, would mostly traverse the page being decoded.
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._writer, receive, slots, group.cancel_scope)
                async with send:
                    await self._pages(send, slots)
        finally:
            gc.set_threshold(*thresholds)
            if freeze:
                gc.unfreeze()
            # Writes not counted: cancel those under way, and collect every outcome (a failed
            # write's error is the export's, raised below; the others are not news).
            tasks = list(self._writes)
            for task in tasks:
                task.cancel()
            with anyio.CancelScope(shield=True):  # a write in a thread ends on its own
                await asyncio.gather(*tasks, return_exceptions=True)
        if self.sink_error is not None:
            raise self.sink_error

    async def _pages(self, send: MemoryObjectSendStream[_Queued], slots: anyio.Semaphore) -> None:
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
                task = None
                if write is not None:
                    walk.written(write)  # the next page of the thread compares against it
                    await slots.acquire()
                    # Handed over now, in order: the sink takes the runs at once (the writes
                    # still happen one after the other), and they can be freed young, which
                    # spares the garbage collector traversing them again and again.
                    task = asyncio.ensure_future(self.sink.write_page(write))
                    self._writes.add(task)
                done = _Done(page.thread_id, len(page.raw), page.last, page.error)
                if self.summary is not None:
                    done.runs = page.runs
                del write, page
                await send.send((walk, done, task))
                if self.fatal is not None or self.sink_error is not None:
                    return

    async def _writer(
        self,
        receive: MemoryObjectReceiveStream[_Queued],
        slots: anyio.Semaphore,
        scope: anyio.CancelScope,
    ) -> None:
        """Count the pages in the order handed over, each once its write completed."""
        async with receive:
            async for walk, done, task in receive:
                settled = await self._settle(walk, done, task)
                if task is not None:
                    self._writes.discard(task)
                    slots.release()
                if not settled:
                    scope.cancel()
                    return

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
