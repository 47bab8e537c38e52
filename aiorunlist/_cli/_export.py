"""The export engine behind ``aiorunlist runs`` and ``aiorunlist demo`` (no click in here).

One path for every export: the thread ids are read lazily and turned, one at a time, into the
items of :meth:`Client.pages_many` (``on_error="collect"``): a plain id lists the whole thread,
a :class:`~aiorunlist.ThreadStart` lists it from a cursor (``--after`` / ``--before``, or the
last run written for a thread that a previous attempt left half done; threads the journal has
as done are skipped). ``pages_many`` hands out each thread's pages in order, its final page
marked ``last`` (a failed thread ends with an item carrying the error instead), so the consumer
knows which thread each run belongs to and when each thread is finished: what ``--resume``
checkpoints.

The consumer writes each run, counts it, records per thread how far it got, and (with a
journal) commits a checkpoint at most every half second and once more at the end, after an
interruption included. A failed thread ends only itself, except for the errors every thread
would have (a rejected key, a spent quota): the first of those stops the whole export.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager
from typing import Any, Literal

import anyio

from .._client import Client
from .._fanout import PageStream, ThreadPage, ThreadStart, shared_raw
from ..exceptions import AuthenticationError, QuotaExceededError
from ._inputs import CLIError, ThreadIds
from ._output import Summary, Writer, format_count
from ._progress import Progress, bar
from ._state import Journal

__all__ = ["Export"]

Order = Literal["asc", "desc"]

#: Errors that would be the same for every thread: the export stops at the first one.
FATAL_ERRORS = (AuthenticationError, QuotaExceededError)

#: Seconds between two checkpoints of the journal (there is always one more at the end).
CHECKPOINT_INTERVAL = 0.5
#: Seconds between two redraws of the progress line.
REDRAW_INTERVAL = 0.1


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
        self._scope: anyio.CancelScope | None = None
        self._pending_last: dict[str, str] = {}
        self._pending_done: list[str] = []
        self._last_commit = 0.0
        self._dirty = False

    # --- the consumer ----------------------------------------------------------------------------

    def _handle_page(self, page: ThreadPage) -> None:
        """Write and count one page of one thread; on its thread's last item, settle it."""
        writer, summary = self.writer, self.summary
        last_id: str | None = None
        shared = shared_raw(page)  # serialised at once: no copy of its own needed
        raws: Sequence[Mapping[str, Any] | None] = shared if shared else [None] * len(page.runs)
        for run, raw in zip(page.runs, raws, strict=True):
            if writer is not None:
                writer.write(run, raw)
            if summary is not None:
                summary.add(run)
            self.runs += 1
            if run.id is not None:
                last_id = run.id
        journal = self.journal is not None
        if journal and page.runs:
            if last_id is not None:
                self._pending_last[page.thread_id] = last_id
            self._dirty = True
        if page.last:
            error = page.error
            if error is not None:  # its runs so far stay recorded: a resume continues after them
                self.failures[page.thread_id] = error
                if isinstance(error, FATAL_ERRORS):
                    self._stop(error)
                    return
            else:
                self.threads_done += 1
                if journal:
                    self._pending_last.pop(page.thread_id, None)
                    self._pending_done.append(page.thread_id)
                    self._dirty = True
        if journal and time.monotonic() - self._last_commit >= CHECKPOINT_INTERVAL:
            self.checkpoint()

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
        try:
            self.journal.commit(self.writer.offset, self._pending_last, self._pending_done)
        except OSError as exc:  # name the file: a full disk says nothing of which one
            if exc.filename is None:
                exc.filename = self.journal.path
            raise
        self._pending_last = {}
        self._pending_done = []
        self._dirty = False

    # --- the source and the fan-out --------------------------------------------------------------

    async def _starts(self) -> AsyncGenerator[str | ThreadStart, None]:
        """The items for ``pages_many``, read lazily from the ids: a plain id, or a cursor."""
        point = self.journal.point if self.journal is not None else None
        after, before = self.after, self.before
        backward = before is not None and after is None
        async with aclosing(self.ids.__aiter__()) as ids:
            async for thread_id in ids:
                last = None
                if point is not None:
                    if thread_id in point.done:
                        self.threads_skipped += 1
                        continue
                    last = point.last.get(thread_id)
                if last is not None:  # partly written: carry on right after its last run
                    if backward:
                        yield ThreadStart(thread_id, before=last)
                    else:
                        yield ThreadStart(thread_id, after=last, before=before)
                elif after is None and before is None:
                    yield thread_id
                else:
                    yield ThreadStart(thread_id, after=after, before=before)

    async def _list(self) -> None:
        starts = self._starts()
        fan_out = self.client.pages_many(
            starts,
            concurrency=self.concurrency,
            order=self.order,
            page_size=self.page_size,
            on_error="collect",
        )
        stream: PageStream | None = None
        try:
            # pages_many leaves its item source to the owner: closed here, and the ids with it.
            async with aclosing(starts), fan_out as stream:
                handle_page = self._handle_page
                async for page in stream:
                    handle_page(page)
                    if self.fatal is not None:
                        return
        finally:  # stopped early too: every thread known to have failed, not only those seen
            if stream is not None:
                for thread_id, error in stream.failures.items():
                    self.failures.setdefault(thread_id, error)

    # --- progress --------------------------------------------------------------------------------

    def threads_finished(self) -> int:
        """Threads listed to the end or failed so far (skipped ones included)."""
        return self.threads_done + len(self.failures) + self.threads_skipped

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
        else:  # still reading the ids
            read = self.ids.read
            fraction = self.ids.fraction_read
            if fraction:  # a file: as many ids as its size suggests; the bar agrees
                estimate = max(round(read / fraction), read, 1)
                threads = f"threads {format_count(finished)}/~{format_count(estimate)}"
                if bars:
                    threads += f" {bar(finished / estimate)}"
            else:  # as many as read so far, and more
                threads = f"threads {format_count(finished)}/{format_count(read)}+"
        parts = [
            threads,
            f"runs {format_count(self.runs)}",
            f"{format_count(self.runs / elapsed)} runs/s",
            f"retries {format_count(self.client.retries)}",
        ]
        failed = len(self.failures)
        if failed:
            parts.append(f"failed {format_count(failed)}")
        parts.append(f"{elapsed:.1f}s")
        return "  ".join(parts)

    async def _monitor(self) -> None:
        while True:
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
                    await self._list()
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
