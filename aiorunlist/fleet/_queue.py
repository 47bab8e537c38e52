"""The fleet's queue and workers, on streaq (Redis Streams; Python 3.11+).

streaq is the transport only: it hands slices to workers, renews the lease of a live
worker's slices and gives a dead worker's slices to another one once their lease ran out. What
a slice does is decided by the sink: it lists from the cursor the sink holds, stores each page
with a compare-and-set, and queues its continuation under a deterministic id.

Imported only when the queue is used (``aiorunlist.fleet`` imports without streaq).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, cast

import anyio
import anyio.abc
import orjson
from anyio import CancelScope, CapacityLimiter
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from streaq import Worker
from streaq.constants import REDIS_GROUP
from streaq.types import Entries, StreamMessage, Streaq, StreaqRetry
from streaq.utils import now_ms
from streaq.worker import _worker_context

from .._client import Client
from .._control import LocalTrafficControl, TrafficControl
from ..exceptions import APIConnectionError
from ..sinks import Sink, ThreadState, open_sink, sync_thread
from ..sinks._sync import writer_name
from ._control import RedisTrafficControl
from ._export import (
    PROGRESS_BUCKET,
    PROGRESS_BUCKETS,
    ExportSettings,
    WorkerOptions,
    progress_key,
    queue_name,
    slice_id,
)

__all__ = ["Queue"]

logger = logging.getLogger("aiorunlist.fleet")

#: Seconds between two looks at the fleet's stop flag (and, with ``burst``, at the queue).
WATCH_INTERVAL = 0.5
#: Seconds after a SIGTERM the slices get to finish their page before they are cut.
GRACE = 6.0
#: Longest wait before a slice that met an error (not its thread's) is tried again.
MAX_BACKOFF = 30.0
#: Milliseconds the queue reader waits for new slices before it looks for a dead worker's.
READ_BLOCK_MS = 1000


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=repr)


@asynccontextmanager
async def _nothing() -> AsyncGenerator[None, None]:
    yield None


class _StreaqWorker(Worker[Any]):
    """streaq's worker, stopped by :class:`Queue`: it receives no signal itself (the worker's
    are received for its whole life by :func:`aiorunlist.fleet.run_worker`, which stops the
    queue: the slices finish their page and hand the rest back); reads block for at most a
    second, so that a dead worker's slices are taken over soon after their lease ran out."""

    fleet: Queue

    async def producer(
        self,
        queue: MemoryObjectSendStream[StreamMessage],
        limiter: CapacityLimiter,
        scope: CancelScope,
    ) -> None:
        with CancelScope() as own:
            self.fleet._producer = own
            if self.fleet.stopping:
                own.cancel()
            await super().producer(queue, limiter, scope)

    async def run_async(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """streaq's, for a queue without cron jobs, whose stream of messages (and every clone
        of it) is closed however the worker ends: when Redis is lost as it starts, its tasks
        are cancelled before they ran, and would leave them open."""
        async with self, self.lifespan as context:
            _worker_context.set(context)
            async with self.redis.pipeline(transaction=False) as pipe:
                Streaq(pipe).create_groups(self.stream_key, REDIS_GROUP, *self.priorities)
            send, receive = anyio.create_memory_object_stream[StreamMessage](
                max_buffer_size=self.prefetch
            )
            with send, receive:
                async with anyio.create_task_group() as group:
                    renew = CancelScope(shield=True)
                    group.start_soon(self.renew_idle_timeouts, renew)
                    limiter = await group.start(
                        self.run_consumers, receive, renew, group.cancel_scope
                    )
                    group.start_soon(self.schedule_delayed_tasks)
                    group.start_soon(self.producer, send, limiter, group.cancel_scope)
                    task_status.started()
                    self._running = True

    async def run_consumers(
        self,
        receive: MemoryObjectReceiveStream[StreamMessage],
        renew_scope: CancelScope,
        produce_scope: CancelScope,
        *,
        task_status: Any = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        limiter = CapacityLimiter(self.concurrency)
        clones = [receive.clone() for _ in range(self.concurrency)]
        try:
            async with anyio.create_task_group() as group:
                for clone in clones:
                    group.start_soon(self.consumer, clone, limiter, produce_scope)
                task_status.started(limiter)
        finally:
            renew_scope.cancel()  # the leases are renewed until every slice ended
            for clone in clones:  # a consumer cancelled before it ran never closed its own
                clone.close()
            receive.close()
        produce_scope.cancel()  # every slice ended: stop the rest of the worker

    async def finish_task(  # noqa: PLR0917 - streaq's signature
        self,
        msg: StreamMessage,
        finish: bool,
        schedule: int | None,
        return_value: Any,
        start_time: int,
        finish_time: int,
        created_time: int,
        fn_name: str,
        success: bool,
        silent: bool,
        ttl: timedelta | int | None,
        triggers: str | None,
        lock_key: str | None,
        tries: int,
        otherwise: str | None,
    ) -> None:
        """streaq's, in one transaction without what no slice uses: a slice that ended keeps
        no result (``ttl=0``), announces none (nobody waits for one) and has no dependents
        (a continuation is queued by the slice itself). Anything else is streaq's own."""
        if not (finish and success and ttl == 0 and not (triggers or lock_key or otherwise)):
            await super().finish_task(
                msg,
                finish,
                schedule,
                return_value,
                start_time,
                finish_time,
                created_time,
                fn_name,
                success,
                silent,
                ttl,
                triggers,
                lock_key,
                tries,
                otherwise,
            )
            return
        task_id = msg.task_id
        stream_key = self.stream_key + msg.priority
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(stream_key, REDIS_GROUP, [msg.message_id])
            pipe.xdel(stream_key, [msg.message_id])
            pipe.srem(self._running_set, [task_id])
            pipe.delete([self._retry_key + task_id, self.task_key + task_id])
            pipe.srem(self._abort_key, [task_id])
        self.counters["completed"] += 1

    async def _read_streams_legacy(self, count: int, block: bool = False) -> Entries:
        if block:
            return await self.redis.xreadgroup(
                "workers",
                self.id,
                self._streams,
                block=min(self.idle_timeout, READ_BLOCK_MS),
                count=count,
            )
        return await super()._read_streams_legacy(count, block)

    async def _read_streams_max_count(self, count: int, block: bool = False) -> Entries:
        if block:
            return await self.redis.xreadgroup(
                "workers",
                self.id,
                self._streams,
                block=min(self.idle_timeout, READ_BLOCK_MS),
                claim=self.idle_timeout,
                max_count=count,
            )
        return await super()._read_streams_max_count(count, block)


class Queue:
    """The queue of one export's slices: :meth:`publish` them, or :meth:`work` on them."""

    def __init__(
        self, export: str, redis_url: str, *, lease: float = 30.0, concurrency: int = 16
    ) -> None:
        self.export = export
        self.redis_url = redis_url
        self.lease = lease
        self.worker = _StreaqWorker(
            redis_url,
            redis_kwargs={"connect_timeout": 5.0},
            queue_name=queue_name(export),
            concurrency=concurrency,
            prefetch=1,
            lifespan=self._lifespan,
            serializer=_dumps,
            deserializer=orjson.loads,
            idle_timeout=lease,
            id=f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        )
        self.worker.fleet = self
        self.task = self.worker.task(
            name="slice", max_tries=None, silent=True, ttl=0, timeout=None
        )(self._slice)
        self.stopping = False
        #: Why the fleet stopped (its traffic control's reason), if it did.
        self.fatal: str | None = None
        self._producer: CancelScope | None = None
        self._slices: set[CancelScope] = set()
        self._settings: ExportSettings | None = None
        self._options = WorkerOptions()
        self._sink: Sink | None = None
        self._client: Client | None = None
        self._control: TrafficControl | None = None
        #: Slices run, pages stored and runs in them, by this worker.
        self.slices = self.pages = self.runs = 0
        #: Pages and runs stored and not yet added to the fleet's figures (added by the
        #: watcher twice a second and when the worker ends: one round trip, not one a slice).
        self._uncounted = (0, 0)
        #: The name this worker's slices store their pages under, each with its number.
        self._writer = writer_name(self.export)

    async def __aenter__(self) -> Queue:
        await self.worker.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.worker.__aexit__(exc_type, exc, tb)

    # --- enqueueing ---------------------------------------------------------------------------

    async def publish(
        self, slices: Sequence[tuple[str, str | None]], *, delay: float = 0.0
    ) -> list[bool]:
        """Queue the slices ``(thread_id, cursor)``; for each, whether it was added (the queue
        refuses a slice whose id is queued or running already)."""
        if not slices:
            return []
        worker = self.worker
        now = now_ms()
        tasks = []
        for thread_id, cursor in slices:
            task = self.task.enqueue(thread_id, cursor)
            task.id = slice_id(thread_id, cursor)
            if delay > 0:
                task.start(delay=timedelta(seconds=delay))
            tasks.append((task, await task.serialize(now)))
        async with worker.redis.pipeline(transaction=False) as pipe:
            lib = Streaq(pipe)
            answers = [worker.publish_task(pipe, task, data, now, lib=lib) for task, data in tasks]
        return [bool(await cast("Awaitable[Any]", answer)) for answer in answers]

    async def left(self) -> int:
        """Slices queued, delayed or being listed, by any worker of the export."""
        prefix = self.worker.prefix
        # In one transaction: a slice moves from the delayed queue to the live one at once,
        # and two separate counts could both miss it.
        async with self.worker.redis.pipeline(transaction=True) as pipe:
            live = pipe.xlen(prefix + ":queues:normal")
            delayed = pipe.zcard(prefix + ":queues:delayed:normal")
        return await live + await delayed

    async def queued(self, thread_id: str, cursor: str | None) -> bool:
        """Whether the slice of ``thread_id`` from ``cursor`` is queued or running."""
        worker = self.worker
        return bool(await worker.redis.exists([worker.task_key + slice_id(thread_id, cursor)]))

    # --- working ------------------------------------------------------------------------------

    def stop(self, fatal: str | None = None) -> None:
        """Take no more slices; the running ones store their page and hand the rest back."""
        if fatal is not None and self.fatal is None:
            self.fatal = fatal
        if self.stopping:
            return
        self.stopping = True
        if self._producer is not None:
            self._producer.cancel()

    async def work(self, settings: ExportSettings, sink_url: str, options: WorkerOptions) -> None:
        """Run slices until stopped (:meth:`stop`, SIGTERM / SIGINT, a fatal stop of the
        fleet) or, with ``options.burst``, until the export's queue is empty."""
        self._settings = settings
        self._options = options
        self._sink_url = sink_url
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, group)
            await self.worker.run_async()
            group.cancel_scope.cancel()
        # No longer alive: leave the count of live workers at once, not a lease later.
        with anyio.move_on_after(2), contextlib.suppress(Exception):
            async with self.worker:
                await self.worker.redis.delete([f"{self.worker.prefix}:health:{self.worker.id}"])
                await self._count()

    @asynccontextmanager
    async def _lifespan(self) -> AsyncGenerator[None, None]:
        """What a worker process holds while it runs: one sink, one traffic control (the
        fleet's in Redis, or with ``control="local"`` its own), one client."""
        settings = self._settings
        assert settings is not None  # noqa: S101 - set by work()
        async with AsyncExitStack() as stack:
            self._sink = await stack.enter_async_context(
                await open_sink(self._sink_url, settings=settings.for_sink())
            )
            if self._options.control == "local":
                # The shared control's settings (no fixed pace, a budget of 500), kept alone.
                self._control = LocalTrafficControl(self._options.pacing())
            else:
                self._control = await stack.enter_async_context(
                    RedisTrafficControl(
                        self.redis_url,
                        self.export,
                        pacing=self._options.pacing(),
                        workers=self._options.workers,
                    )
                )
            make = cast(
                "Callable[[TrafficControl], Client]",
                self._options.client or (lambda control: Client(control=control)),
            )
            self._client = await stack.enter_async_context(make(self._control))
            yield None

    async def _announce(self, reason: str) -> None:
        """Tell the fleet it is stopped (what the shared control does itself): every worker's
        watch sees it. Redis lost: this worker stops alone."""
        with contextlib.suppress(Exception):
            await self.worker.redis.hsetnx(f"aiorunlist:fleet:{{{self.export}}}", "fatal", reason)

    async def _watch(self, group: anyio.abc.TaskGroup) -> None:
        """Stop when the fleet's traffic control is stopped, or (burst) no slice is left; once
        stopping, cut the slices still running after :data:`GRACE` seconds."""
        key = f"aiorunlist:fleet:{{{self.export}}}"
        cutting = False
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            if self.stopping and not cutting:
                cutting = True
                group.start_soon(self.cut_after, GRACE)
            if not self.worker._initialized:
                continue
            # Figures only: never worth stopping for; not cut by the worker's end either.
            with anyio.move_on_after(2, shield=True), contextlib.suppress(Exception):
                await self._count()
                if isinstance(self._control, RedisTrafficControl):
                    await self._control.flush()  # an idle worker's successes too
            try:
                fatal = await self.worker.redis.hget(key, "fatal")
                if fatal:
                    self.stop(fatal=str(fatal))
                if self.stopping:
                    continue
                if self._options.burst and await self.left() == 0:
                    logger.info("no slice left: stopping (--burst)")
                    self.stop()
            except Exception as exc:
                logger.debug("cannot look at the fleet's state: %s", exc)

    async def _slice(self, thread_id: str, cursor: str | None) -> None:
        """List the thread from where the sink says, at most ``slice_pages`` pages, then queue
        the continuation. Runs under streaq (its task ``slice``).

        A slice is never dropped: one that fails unexpectedly (the database gone for longer
        than it waits, a bug) is logged and queued again."""
        try:
            await self._run_slice(thread_id, cursor)
        except StreaqRetry:
            raise
        except Exception as exc:
            tries: int = self.task.context.tries
            delay = min(MAX_BACKOFF, 2.0 * 2 ** min(tries - 1, 10))
            logger.warning(
                "thread %s: the slice failed (%s: %s); it runs again in %.0f s",
                thread_id,
                type(exc).__name__,
                " ".join(str(exc).split()),
                delay,
            )
            raise StreaqRetry(delay=timedelta(seconds=delay)) from exc

    async def _run_slice(self, thread_id: str, cursor: str | None) -> None:
        sink, client, settings = self._sink, self._client, self._settings
        assert sink is not None  # noqa: S101 - set by the lifespan
        assert client is not None  # noqa: S101
        assert settings is not None  # noqa: S101
        if self.stopping:
            raise StreaqRetry(delay=timedelta(seconds=1 if self.fatal else 0))
        state = (await sink.threads([thread_id])).get(thread_id)
        if state is not None and state.state == "done":
            return
        stored = None if state is None else state.cursor
        if stored != cursor and await self.queued(thread_id, stored):
            # A stale copy (redelivered after its worker stored pages and queued the rest):
            # the slice for where the sink stands is queued or running already.
            return
        # Else this slice goes on from where the sink stands (a slice redelivered after its
        # worker died mid-way: at once, not behind the rest of the queue).
        self.slices += 1
        result = None
        with CancelScope() as scope:
            self._slices.add(scope)
            try:
                result = await sync_thread(
                    client,
                    sink,
                    thread_id,
                    order=settings.order,
                    page_size=settings.page_size,
                    max_pages=settings.slice_pages,
                    writer=f"{self._writer}:{self.slices}",
                    state=state,
                    stop_when=lambda: self.stopping,
                )
            finally:
                self._slices.discard(scope)
        if result is None:  # cut short (the grace period ran out): the sink says where it is
            state = (await sink.threads([thread_id])).get(thread_id)
            await self._hand_on(thread_id, cursor, state, 0.0)
            return
        self.pages += result.pages
        self.runs += result.runs
        pages, runs = self._uncounted
        self._uncounted = (pages + result.pages, runs + result.runs)
        if result.lost:
            # Another writer got there first: a slice of this fleet (which hands on by
            # itself), or one that may stop midway (an export of the command line, a
            # sync_thread of the user's). Look again a lease later from where the sink then
            # stands: the slice's id keeps it single, and it returns at once if the thread's
            # slice is queued by then.
            state = (await sink.threads([thread_id])).get(thread_id)
            if state is not None and state.state != "done":
                await self.publish([(thread_id, state.cursor)], delay=self.lease)
            return
        if result.state in ("done", "failed"):
            return
        delay = 0.0
        if result.error is not None:
            if result.fatal:
                reason = f"{type(result.error).__name__}: {result.error}"[:500]
                self.stop(fatal=reason)
                if not isinstance(self._control, RedisTrafficControl):
                    await self._announce(reason)
                delay = 1.0
            else:
                delay = await self._backoff(result.error)
                logger.info("thread %s: %s; tried again in %.1f s", thread_id, result.error, delay)
        now = ThreadState(thread_id, result.state or "pending", result.cursor)
        await self._hand_on(thread_id, cursor, now, delay)

    async def _count(self) -> None:
        """Add the pages and runs stored since the last call to the fleet's figures of the
        current ten seconds (``fleet status``'s rate)."""
        pages, runs = self._uncounted
        if not pages:
            return
        self._uncounted = (0, 0)
        key = progress_key(self.export, int(time.time()) // PROGRESS_BUCKET)
        async with self.worker.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, "pages", pages)
            pipe.hincrby(key, "runs", runs)
            pipe.expire(key, PROGRESS_BUCKET * (PROGRESS_BUCKETS + 2))

    async def _backoff(self, error: Exception) -> float:
        """Seconds before a slice that failed for a reason not its thread's runs again.

        Running it again is a retry of its page: it takes its price from the fleet's shared
        retry budget, so that during an outage the fleet sends no more than the budget allows;
        with the budget spent, the slice waits longer (up to :data:`MAX_BACKOFF`)."""
        tries: int = self.task.context.tries
        control = self._control
        taken: int | None = 0
        if control is not None:
            connection = isinstance(error, APIConnectionError)
            taken = await control.take_retry(connection_failure=connection)
        base = 0.5 if taken is not None else 4.0
        delay: float = min(MAX_BACKOFF, base * 2 ** min(tries - 1, 10))
        return delay * random.uniform(0.75, 1.0)  # noqa: S311 - spreads the slices out

    async def _hand_on(
        self, thread_id: str, cursor: str | None, state: ThreadState | None, delay: float
    ) -> None:
        """Queue the rest of the thread: the continuation if it got further, else this slice
        again (after ``delay`` seconds)."""
        if state is not None and state.state == "done":
            return
        stored = None if state is None else state.cursor
        if stored != cursor:
            await self.publish([(thread_id, stored)], delay=delay)
            return
        raise StreaqRetry(delay=timedelta(seconds=delay))

    async def cut_after(self, seconds: float) -> None:
        """Cut the slices still running ``seconds`` from now (their page is listed again)."""
        await anyio.sleep(seconds)
        for scope in list(self._slices):
            scope.cancel()
