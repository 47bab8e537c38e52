"""The export engine behind ``aiorunlist runs`` and ``aiorunlist demo`` (no click in here).

Two ways to list the threads, one consumer:

* a plain export streams the thread ids into :meth:`Client.runs_many` (``on_error="collect"``);
* an export that must checkpoint (``--resume``) or start from a cursor (``--after`` /
  ``--before``) runs its own bounded fan-out over :meth:`Client.runs`, because it needs to
  know which thread each run belongs to and when each thread is finished, which
  ``runs_many`` does not tell. Each worker walks its thread page by page as ``Client.runs``
  does (``list_page`` and the same ``PageWalk``) and sends ``(thread_id, page)`` items, then a
  :class:`ThreadEnd`, into one bounded stream, so a thread's end always arrives after its runs.

The consumer writes each run, counts it, and (with a journal) commits a checkpoint at most
every half second and once more at the end, after an interruption included.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, asynccontextmanager, contextmanager
from typing import Literal, NamedTuple

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._client import Client
from .._fanout import RunStream
from .._models import Run
from .._protocol import PageWalk
from ..exceptions import AuthenticationError, QuotaExceededError
from ._inputs import CLIError, ThreadIds
from ._output import Summary, Writer, format_count
from ._progress import Progress, bar
from ._state import Journal

__all__ = ["Export", "ThreadEnd"]

Order = Literal["asc", "desc"]

#: Errors that would be the same for every thread: the export stops at the first one.
FATAL_ERRORS = (AuthenticationError, QuotaExceededError)

#: Seconds between two checkpoints of the journal (there is always one more at the end).
CHECKPOINT_INTERVAL = 0.5
#: Seconds between two redraws of the progress line.
REDRAW_INTERVAL = 0.1


class ThreadEnd(NamedTuple):
    """A thread is finished: listed to the end (``error`` is ``None``) or failed."""

    thread_id: str
    error: Exception | None


Item = tuple[str, Sequence[Run]] | ThreadEnd
#: (thread id, after, before) of one thread to list.
Job = tuple[str, str | None, str | None]


class _Events:
    """The items of :func:`thread_events`; raises a failure of the job source at the end."""

    def __init__(self, receive: MemoryObjectReceiveStream[Item], errors: list[Exception]) -> None:
        self._receive = receive
        self._errors = errors

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Item:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            if self._errors:
                raise self._errors[0] from None
            raise StopAsyncIteration from None


@asynccontextmanager
async def thread_events(
    client: Client,
    jobs: AsyncGenerator[Job, None],
    *,
    concurrency: int,
    order: Order,
    page_size: int,
) -> AsyncIterator[_Events]:
    """A bounded fan-out over the threads' pages, one thread per worker at a time.

    Yields an async iterator of ``(thread_id, runs of one page)`` items and a
    :class:`ThreadEnd` after the last page of each thread. An error from ``jobs`` itself
    stops everything and is raised by the iterator once the workers are gone; a thread's own
    error only ends that thread.
    """
    send, receive = anyio.create_memory_object_stream[Item](max_buffer_size=concurrency)
    errors: list[Exception] = []
    lock = anyio.Lock()

    async def next_job() -> Job | None:
        async with lock:
            try:
                return await jobs.__anext__()
            except StopAsyncIteration:
                return None

    async def worker(out: MemoryObjectSendStream[Item], group: TaskGroup) -> None:
        async with out:
            while True:
                try:
                    job = await next_job()
                except Exception as exc:
                    errors.append(exc)
                    group.cancel_scope.cancel()
                    return
                if job is None:
                    return
                thread_id, after, before = job
                try:
                    # What Client.runs() does, a page at a time: one send per page.
                    walk = PageWalk(thread_id, after=after, before=before)
                    while True:
                        page = await client.list_page(
                            thread_id,
                            limit=page_size,
                            order=order,
                            after=walk.after,
                            before=walk.before,
                        )
                        await out.send((thread_id, walk.ordered(page)))
                        if not walk.advance(page):
                            break
                except Exception as exc:
                    await out.send(ThreadEnd(thread_id, exc))
                else:
                    await out.send(ThreadEnd(thread_id, None))

    async def produce() -> None:
        try:
            async with send, anyio.create_task_group() as group:
                for _ in range(concurrency):
                    group.start_soon(worker, send.clone(), group)
        finally:
            await jobs.aclose()

    consumer_error: Exception | None = None
    async with anyio.create_task_group() as outer:
        outer.start_soon(produce)
        try:
            yield _Events(receive, errors)
        except Exception as exc:
            consumer_error = exc
        finally:
            outer.cancel_scope.cancel()
            receive.close()
    if consumer_error is not None:
        raise consumer_error


@contextmanager
def on_interrupt(callback: Callable[[signal.Signals], None]) -> Iterator[None]:
    """Call ``callback(signal)`` in the event loop on the first Ctrl-C (SIGINT) or SIGTERM,
    instead of raising ``KeyboardInterrupt`` wherever the program happens to be (or dying);
    after that, the signals have their default effect again (a second Ctrl-C raises).

    Where the loop cannot handle signals (not the main thread, Windows) this does nothing.
    """
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    installed: list[signal.Signals] = []

    def restore() -> None:
        while installed:
            loop.remove_signal_handler(installed.pop())

    def handle(signum: signal.Signals) -> None:
        restore()
        callback(signum)

    try:
        for signum in signals:
            loop.add_signal_handler(signum, handle, signum)
            installed.append(signum)
    except (NotImplementedError, RuntimeError, ValueError):
        restore()
    try:
        yield
    finally:
        restore()


class Export:
    """One export: list the runs of ``ids``, write them, count them, show progress.

    After :meth:`run`: ``runs`` written, ``failures`` (thread id -> error) of the threads that
    failed, ``fatal`` (an error that stopped everything), ``interrupted`` (the signal), ``error``
    (anything else that stopped the export, e.g. the output could not be written).
    """

    def __init__(
        self,
        client: Client,
        ids: ThreadIds,
        *,
        order: Order = "desc",
        page_size: int = 100,
        concurrency: int = 16,
        after: str | None = None,
        before: str | None = None,
        writer: Writer | None = None,
        journal: Journal | None = None,
        summary: Summary | None = None,
        progress: Progress | None = None,
        output_fd: int | None = None,
    ) -> None:
        self.client = client
        self.ids = ids
        self.order: Order = order
        self.page_size = page_size
        self.concurrency = concurrency
        self.after = after
        self.before = before
        self.writer = writer
        self.journal = journal
        self.summary = summary
        self.progress = progress
        self._output_fd = output_fd
        # Results.
        self.runs = 0
        self.threads_done = 0
        #: Threads the journal already had as done (skipped).
        self.threads_skipped = 0
        self.failures: dict[str, Exception] = {}
        self.fatal: Exception | None = None
        self.error: Exception | None = None
        #: The signal that interrupted the export (SIGINT for Ctrl-C), if one did.
        self.interrupted: signal.Signals | None = None
        self.elapsed = 0.0
        # Internals.
        self._started = 0.0
        self._stream: RunStream | None = None
        self._scope: anyio.CancelScope | None = None
        self._pending_last: dict[str, str] = {}
        self._pending_done: list[str] = []
        self._last_commit = 0.0
        self._dirty = False

    # --- the consumer ----------------------------------------------------------------------------

    def _handle_run(self, thread_id: str, run: Run) -> None:
        if self.writer is not None:
            self.writer.write(run)
        if self.summary is not None:
            self.summary.add(run)
        self.runs += 1
        if self.journal is not None:
            if run.id is not None:
                self._pending_last[thread_id] = run.id
            self._dirty = True
            if time.monotonic() - self._last_commit >= CHECKPOINT_INTERVAL:
                self.checkpoint()

    def _handle_end(self, end: ThreadEnd) -> None:
        if end.error is not None:
            self.failures[end.thread_id] = end.error
            if isinstance(end.error, FATAL_ERRORS):
                self._stop(end.error)
            return
        self.threads_done += 1
        if self.journal is not None:
            self._pending_last.pop(end.thread_id, None)
            self._pending_done.append(end.thread_id)
            self._dirty = True

    def _stop(self, error: Exception) -> None:
        if self.fatal is None:
            self.fatal = error
        if self._scope is not None:
            self._scope.cancel()

    def checkpoint(self) -> None:
        """Make the output durable, then record in the journal what it holds."""
        self._last_commit = time.monotonic()
        if self.journal is None or self.writer is None or not self._dirty:
            return
        self.writer.flush()
        if self._output_fd is not None:
            os.fsync(self._output_fd)
        self.journal.commit(self.writer.offset, self._pending_last, self._pending_done)
        self._pending_last = {}
        self._pending_done = []
        self._dirty = False

    # --- the two sources -------------------------------------------------------------------------

    @property
    def checkpoints(self) -> bool:
        """Whether this export needs to know each run's thread (its own fan-out)."""
        return self.journal is not None or self.after is not None or self.before is not None

    async def _jobs(self) -> AsyncGenerator[Job, None]:
        point = self.journal.point if self.journal is not None else None
        backward = self.before is not None and self.after is None
        async with aclosing(self.ids.__aiter__()) as ids:
            async for thread_id in ids:
                if point is not None and thread_id in point.done:
                    self.threads_skipped += 1
                    continue
                last = point.last.get(thread_id) if point is not None else None
                if last is None:
                    yield thread_id, self.after, self.before
                elif backward:
                    yield thread_id, None, last
                else:
                    yield thread_id, last, self.before

    async def _list_with_checkpoints(self) -> None:
        async with thread_events(
            self.client,
            self._jobs(),
            concurrency=self.concurrency,
            order=self.order,
            page_size=self.page_size,
        ) as items:
            handle_run, handle_end = self._handle_run, self._handle_end
            async for item in items:
                if isinstance(item, ThreadEnd):
                    handle_end(item)
                else:
                    thread_id, runs = item
                    for run in runs:
                        handle_run(thread_id, run)

    async def _list_with_runs_many(self) -> None:
        ids = self.ids.__aiter__()
        fan_out = self.client.runs_many(
            ids,
            concurrency=self.concurrency,
            order=self.order,
            page_size=self.page_size,
            on_error="collect",
        )
        try:
            async with aclosing(ids), fan_out as stream:
                self._stream = stream
                handle_run = self._handle_run
                async for run in stream:
                    handle_run(run.thread_id or "", run)
        finally:  # stopped early too: what failed so far
            if self._stream is not None:
                self.threads_done = self._stream.threads_done
                for thread_id, error in self._stream.failures.items():
                    if isinstance(error, Exception):
                        self.failures[thread_id] = error

    # --- progress --------------------------------------------------------------------------------

    def threads_finished(self) -> int:
        """Threads listed to the end or failed so far (skipped ones included)."""
        stream = self._stream
        if stream is not None:
            return stream.threads_done + len(stream.failures) + self.threads_skipped
        return self.threads_done + len(self.failures) + self.threads_skipped

    def _failures_now(self) -> Mapping[str, BaseException]:
        stream = self._stream
        return stream.failures if stream is not None else self.failures

    def status_line(self, *, bars: bool = True) -> str:
        """The progress line: threads, runs, rate, retries, failures, time."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        finished = self.threads_finished()
        total = self.ids.total
        if total is not None:
            done = finished / total if total else 1.0
            threads = f"threads {format_count(finished)}/{format_count(total)}"
            if bars:
                threads += f" {bar(done)}"
        else:  # still reading the ids: as many as read so far, and more
            threads = f"threads {format_count(finished)}/{format_count(self.ids.read)}+"
            fraction = self.ids.fraction_read
            if bars and fraction is not None:  # a file: how far into it
                threads += f" {bar(fraction)}"
        parts = [
            threads,
            f"runs {format_count(self.runs)}",
            f"{format_count(self.runs / elapsed)} runs/s",
            f"retries {format_count(self.client.retries)}",
        ]
        failed = len(self._failures_now())
        if failed:
            parts.append(f"failed {format_count(failed)}")
        parts.append(f"{elapsed:.1f}s")
        return "  ".join(parts)

    async def _monitor(self) -> None:
        checked = 0
        while True:
            # runs_many tells failures only through its dict: look at the new ones for an
            # error every thread would have (our own fan-out reacts in _handle_end).
            failures = self._failures_now()
            if self._stream is not None and len(failures) > checked:
                for error in list(failures.values())[checked:]:
                    if isinstance(error, FATAL_ERRORS):
                        self._stop(error)
                        break
                checked = len(failures)
            if self.progress is not None and self.progress.enabled:
                line = self.status_line()
                if len(line) + 2 > self.progress.width:  # a narrow terminal: the figures first
                    line = self.status_line(bars=False)
                self.progress.show(line)
            await anyio.sleep(REDRAW_INTERVAL)

    # --- the whole export ------------------------------------------------------------------------

    def _interrupt(self, signum: signal.Signals) -> None:
        self.interrupted = signum
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """List, write and count every run; return when done, stopped or interrupted."""
        self._started = self._last_commit = time.monotonic()
        healthy = True
        with anyio.CancelScope() as scope, on_interrupt(self._interrupt):
            self._scope = scope
            async with anyio.create_task_group() as group:
                group.start_soon(self._monitor)
                try:
                    if self.checkpoints:
                        await self._list_with_checkpoints()
                    else:
                        await self._list_with_runs_many()
                except Exception as exc:
                    self.error = exc
                    # A bad line of input surfaces between two runs; anything else may
                    # have struck in the middle of writing one.
                    healthy = isinstance(exc, CLIError)
                finally:
                    group.cancel_scope.cancel()
        self.elapsed = time.monotonic() - self._started
        if self.progress is not None:
            self.progress.clear()
        if healthy and self.journal is not None:
            # Reached only between two runs (cancellation happens at an await, never in
            # the middle of writing one), so the output and the journal agree.
            self.checkpoint()
