"""``aiorunlist runs --sink URL``: the export engine, writing into a database sink.

The sink is its own checkpoint: each page is stored in one transaction that also advances its
thread's cursor (compare-and-set), so an export stopped at any moment (Ctrl-C, kill -9) is
continued by the same command, and a finished one re-run is an incremental sync. A thread
whose cursor another writer advanced first is left to that writer (``lost``), not failed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

from .._client import Client
from .._fanout import ThreadPage, ThreadStart
from ..sinks import Sink
from ..sinks._walk import Walk, plan_walk
from ._export import FATAL_ERRORS, Export, Order
from ._inputs import ThreadIds
from ._output import Summary
from ._progress import Progress

__all__ = ["SinkExport"]

#: Thread ids looked up in the sink at once.
LOOKUP_BATCH = 256


class SinkExport(Export):
    """An :class:`Export` into a :class:`~aiorunlist.sinks.Sink` instead of a file.

    After :meth:`run`, besides the figures of :class:`Export`: ``lost`` (threads another
    writer was already exporting) and ``writes`` (transactions committed).
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
            if thread_id in self._walks:  # listed twice in the input: once is enough
                continue
            start, walk = plan_walk(thread_id, states.get(thread_id), self.order)
            self._walks[thread_id] = walk
            starts.append(start)
        return starts

    async def _list(self) -> None:
        starts = self._starts()
        fan_out = self.client.pages_many(
            starts,
            concurrency=self.concurrency,
            order=self.order,
            page_size=self.page_size,
            on_error="collect",
        )
        async with aclosing(starts), fan_out as stream:
            async for page in stream:
                await self._store(page)
                if self.fatal is not None:
                    return

    async def _store(self, page: ThreadPage) -> None:
        walk = self._walks[page.thread_id]
        if walk.lost:
            return
        write = walk.page_write(page)
        if write is not None:
            if not await self.sink.write_page(write):
                walk.lost = True
                self.lost += 1
                return
            walk.written(write)
            self.writes += 1
        summary = self.summary
        for run in page.runs:
            if summary is not None:
                summary.add(run)
        self.runs += len(page.runs)
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
