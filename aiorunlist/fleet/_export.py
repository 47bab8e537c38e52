"""An export run by a fleet: its settings, its queue of slices, enqueueing, and its status.

The sink is the truth: every thread of an export has a row in the sink's ``threads`` table
from the moment it is enqueued, and its cursor there says how far it got. Redis carries the
work (a queue of *slices*: a few pages of one thread each) and the fleet's traffic state;
losing it loses no data, and :func:`enqueue` with ``requeue=True`` rebuilds the queue from
the sink.

A slice's task id is deterministic, ``{thread_id}:{cursor}``: the queue refuses a second
task with the id of one queued or running, so enqueueing the same ids again adds nothing, and
a continuation enqueued twice (by a slice and by its redelivered copy) runs once. A slice
that finds the sink further than its own cursor stops if the slice for the sink's cursor is
queued or running, and otherwise goes on from there itself.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any, Literal

import anyio
import attrs
import redis.asyncio as aioredis

from .._control import Pacing
from ..sinks import Sink, SinkSettingsError, open_sink
from ..sinks._base import SECRET_PARAMETERS, mask_url

if TYPE_CHECKING:
    from .._client import Client
    from ._control import RedisTrafficControl
    from ._queue import Queue

__all__ = [
    "CONTROLS",
    "DEFAULT_SLICE_PAGES",
    "EnqueueResult",
    "ExportSettings",
    "FleetStatus",
    "WorkerOptions",
    "WorkerResult",
    "enqueue",
    "export_settings",
    "fleet_status",
    "resume",
    "run_worker",
]

logger = logging.getLogger("aiorunlist.fleet")

#: Pages a slice lists (and stores) before it hands the rest of its thread on.
DEFAULT_SLICE_PAGES = 10
#: Thread ids looked up in the sink (and enqueued) at once.
BATCH = 500

_NEEDS_STREAQ = (
    "the fleet's queue needs streaq, on Python 3.11 or later: pip install 'streaq>=7.2,<8'"
)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_map(raw: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in dict(raw).items()}


@contextlib.asynccontextmanager
async def _connected(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A Redis client for a few commands (enqueue, status, a worker's start, resume), closed
    after them, even when they are cancelled."""
    redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=5.0)
    try:
        yield redis
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()


def masked_url(url: str) -> str:
    """``url`` with its secrets (a password, ``password=`` and such parameters) replaced by
    ``***``."""
    return mask_url(url)


def same_sink(one: str, other: str) -> bool:
    """Whether two sink URLs name the same database, whatever their passwords (a password
    may change, or move to a password file or the environment)."""
    return _identity(one) == _identity(other)


def _identity(url: str) -> str:
    scheme, sep, rest = mask_url(url).partition("://")
    base, question, query = rest.partition("?")
    base = base.replace(":***@", "@", 1)
    if question:
        kept = [p for p in query.split("&") if p.partition("=")[0].lower() not in SECRET_PARAMETERS]
        if kept:
            base += "?" + "&".join(kept)
    return f"{scheme}{sep}{base}"


#: Seconds of one bucket of the fleet's figures, and buckets ``fleet status`` averages over.
PROGRESS_BUCKET = 10
PROGRESS_BUCKETS = 6


def progress_key(export: str, bucket: int) -> str:
    """The Redis hash of the pages and runs the fleet stored during one bucket of time."""
    return f"aiorunlist:export:{{{export}}}:progress:{bucket}"


def settings_key(export: str) -> str:
    """The Redis hash holding an export's settings."""
    return f"aiorunlist:export:{{{export}}}"


def queue_name(export: str) -> str:
    """The streaq queue of an export (its keys start with ``streaq:`` and this)."""
    return f"aiorunlist:{export}"


def slice_id(thread_id: str, cursor: str | None) -> str:
    """The task id of the slice of ``thread_id`` that starts after ``cursor``."""
    return f"{thread_id}:{cursor or ''}"


def check_export_name(export: str) -> str:
    """``export``, or ``ValueError`` if it cannot name an export."""
    if (
        not isinstance(export, str)
        or not export
        or len(export) > 200
        or any(c in export for c in "{}:*?[] \t\r\n\x00")
    ):
        raise ValueError(
            f"export name {export!r}: use letters, digits, '-', '_' or '.' (at most 200)"
        )
    return export


@attrs.frozen
class ExportSettings:
    """The settings an export is created with, and that every enqueue and worker must share."""

    order: Literal["asc", "desc"] = "desc"
    page_size: int = 100
    slice_pages: int = DEFAULT_SLICE_PAGES
    #: The sink's URL, password masked.
    sink: str = ""

    def for_sink(self) -> dict[str, str]:
        """The settings stored (and checked) in the sink."""
        return {
            "order": self.order,
            "page_size": str(self.page_size),
            "slice_pages": str(self.slice_pages),
        }

    def as_redis(self) -> dict[str, str]:
        return {**self.for_sink(), "sink": self.sink}


def _check(order: str | None, page_size: int | None, slice_pages: int | None) -> None:
    if order is not None and order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")
    for name, value in (("page_size", page_size), ("slice_pages", slice_pages)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if page_size is not None and page_size > 100:
        raise ValueError(f"page_size must be at most 100, got {page_size}")


async def export_settings(
    redis: aioredis.Redis,
    export: str,
    sink_url: str,
    *,
    order: Literal["asc", "desc"] | None = None,
    page_size: int | None = None,
    slice_pages: int | None = None,
    create: bool = False,
) -> ExportSettings:
    """The export's settings as stored in Redis, checked against those given (``None``: the
    stored value, or the default for a new export).

    :param create: store them if the export is new (else :class:`SinkSettingsError`).
    :raises SinkSettingsError: the export has other settings, or (``create`` false) does not
        exist in Redis.
    """
    settings, _ = await _export_settings(
        redis,
        export,
        sink_url,
        order=order,
        page_size=page_size,
        slice_pages=slice_pages,
        create=create,
    )
    return settings


def _from_map(stored: Mapping[str, str], sink: str) -> ExportSettings:
    return ExportSettings(
        "asc" if stored.get("order") == "asc" else "desc",
        int(stored.get("page_size", "100")),
        int(stored.get("slice_pages", str(DEFAULT_SLICE_PAGES))),
        sink,
    )


async def _export_settings(
    redis: aioredis.Redis,
    export: str,
    sink_url: str,
    *,
    order: Literal["asc", "desc"] | None = None,
    page_size: int | None = None,
    slice_pages: int | None = None,
    create: bool = False,
) -> tuple[ExportSettings, bool]:
    """:func:`export_settings`, and whether this call created the export in Redis."""
    _check(order, page_size, slice_pages)
    key = settings_key(export)
    sink = masked_url(sink_url)
    stored = _decode_map(await redis.hgetall(key))
    if not stored:
        if not create:
            raise SinkSettingsError(
                f"no export {export!r} in Redis: create it (or rebuild it after losing Redis) "
                f"with: aiorunlist fleet enqueue --export {export} --requeue ..."
            )
        wanted = ExportSettings(
            order or "desc", page_size or 100, slice_pages or DEFAULT_SLICE_PAGES, sink
        )
        # Two creators at once: the first one's settings win, the other is checked below.
        async with redis.pipeline(transaction=True) as pipe:
            for name, value in wanted.as_redis().items():
                pipe.hsetnx(key, name, value)
            pipe.hgetall(key)
            answers = await pipe.execute()
        stored = _decode_map(answers[-1])
        created = all(answers[:-1])
    else:
        created = False
    settings = _from_map(stored, masked_url(stored.get("sink", "")))
    given: dict[str, object] = {
        "order": order,
        "page size": page_size,
        "slice pages": slice_pages,
        "sink": sink,
    }
    have: dict[str, object] = {
        "order": settings.order,
        "page size": settings.page_size,
        "slice pages": settings.slice_pages,
        "sink": settings.sink,
    }
    if same_sink(sink, settings.sink):
        del given["sink"]
    for name, asked in given.items():
        if asked is not None and asked != have[name]:
            raise SinkSettingsError(
                f"export {export!r} was created with {name} {have[name]}, not {asked}: use "
                "the same settings, or another export name"
            )
    return settings, created


def _adopt(
    where: str,
    held: Mapping[str, str],
    order: Literal["asc", "desc"] | None,
    page_size: int | None,
    slice_pages: int | None,
) -> tuple[Literal["asc", "desc"] | None, int | None, int | None]:
    """The settings of a new export (or one Redis lost) whose sink already holds an export's:
    those not given are taken from it; those given must be its."""
    if not held:
        return order, page_size, slice_pages
    sink = _from_map(held, where)
    given: dict[str, tuple[object, object, str]] = {
        "order": (order, sink.order, "order"),
        "page_size": (page_size, sink.page_size, "page size"),
        "slice_pages": (slice_pages, sink.slice_pages, "slice pages"),
    }
    for name, (asked, have, text) in given.items():
        if name in held and asked is not None and asked != have:
            raise SinkSettingsError(
                f"{where} holds an export made with {text} {have}, not {asked}: use the same "
                "settings (or leave them out: they are taken from the database), or another "
                "database"
            )
    return (
        order if order is not None else sink.order if "order" in held else None,
        page_size if page_size is not None else sink.page_size if "page_size" in held else None,
        slice_pages
        if slice_pages is not None
        else sink.slice_pages
        if "slice_pages" in held
        else None,
    )


@attrs.frozen
class EnqueueResult:
    """What :func:`enqueue` did."""

    #: Threads new to the export: recorded in the sink and queued.
    added: int = 0
    #: Threads the export already had (queued, being listed, or failed): nothing added.
    known: int = 0
    #: Threads the export already listed to the end: nothing added.
    done: int = 0
    #: Slices put back in the queue from the sink's threads (``requeue``).
    requeued: int = 0


async def _each(items: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def _batches(
    thread_ids: Iterable[str] | AsyncIterable[str], size: int
) -> AsyncIterator[list[str]]:
    batch: list[str] = []
    async for thread_id in _each(thread_ids):
        batch.append(thread_id)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def open_queue(export: str, redis_url: str, **kwargs: Any) -> Queue:
    """The export's streaq queue (not connected yet); ``ImportError`` without streaq."""
    try:
        from ._queue import Queue  # noqa: PLC0415 - streaq is imported only when used
    except ImportError as exc:
        if exc.name is not None and exc.name.partition(".")[0] in {"streaq", "coredis"}:
            raise ImportError(_NEEDS_STREAQ, name="streaq") from None
        raise
    return Queue(export, redis_url, **kwargs)


async def enqueue(
    export: str,
    redis_url: str,
    sink_url: str,
    thread_ids: Iterable[str] | AsyncIterable[str] = (),
    *,
    order: Literal["asc", "desc"] | None = None,
    page_size: int | None = None,
    slice_pages: int | None = None,
    requeue: bool = False,
    include_failed: bool = False,
) -> EnqueueResult:
    """Add threads to a fleet's export, creating the export on first use.

    Every new thread is recorded in the sink (``pending``) and its first slice queued. The
    same ids again add nothing; threads the sink holds as done are counted and left alone.

    :param export: the export's name (its queue, its settings, its fleet's traffic state).
    :param thread_ids: thread ids, from any iterable or async iterable (streamed in batches).
    :param order: ``"desc"`` or ``"asc"`` (``None``: the export's, ``"desc"`` for a new one).
    :param page_size: runs per page (``None``: the export's, 100 for a new one).
    :param slice_pages: pages per slice (``None``: the export's, 10 for a new one).
    :param requeue: also queue again every thread the sink holds as pending, from its cursor
        (after losing Redis; slices already queued are not doubled).
    :param include_failed: with ``requeue``: failed threads too, from their cursor.
    :raises SinkSettingsError: other settings than the export's or the sink's.
    :raises ValueError: a bad export name, setting or thread id (before anything is written).
    """
    check_export_name(export)
    _check(order, page_size, slice_pages)
    if isinstance(thread_ids, (str, bytes)):
        raise TypeError("thread_ids must be an iterable of thread ids, not one string")
    if isinstance(thread_ids, Collection):  # all of them before anything is written
        for thread_id in thread_ids:
            _check_thread_id(thread_id)
    async with _connected(redis_url) as redis:
        if not await redis.exists(settings_key(export)):
            # A new export, or one Redis lost: a database that holds an export already
            # decides its settings (checked before anything is written to Redis).
            async with await open_sink(sink_url) as probe:
                held = await probe.stored_settings()
            order, page_size, slice_pages = _adopt(
                masked_url(sink_url), held, order, page_size, slice_pages
            )
        settings, created = await _export_settings(
            redis,
            export,
            sink_url,
            order=order,
            page_size=page_size,
            slice_pages=slice_pages,
            create=True,
        )
        try:
            sink = await open_sink(sink_url, settings=settings.for_sink())
        except BaseException:
            if created:  # refused (or unreachable): leave no export behind
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await redis.delete(settings_key(export))
            raise
    added = known = done = requeued = 0
    async with sink:
        queue = open_queue(export, redis_url)
        async with queue:
            async for batch in _batches(thread_ids, BATCH):
                for thread_id in batch:
                    _check_thread_id(thread_id)
                states = await sink.threads(batch)
                new = await sink.add_threads([t for t in batch if t not in states])
                fresh = set(new)
                # A thread recorded but never started: its first slice may have been lost
                # before it was queued (the queue refuses it if it is there).
                unstarted = [
                    t
                    for t, s in states.items()
                    if s.state == "pending" and s.cursor is None and s.writer is None
                ]
                await queue.publish([(t, None) for t in [*new, *unstarted]])
                for thread_id in dict.fromkeys(batch):
                    state = states.get(thread_id)
                    if thread_id in fresh:
                        added += 1
                    elif state is not None and state.state == "done":
                        done += 1
                    else:
                        known += 1
            if requeue:
                requeued = await _requeue(sink, queue, include_failed)
    return EnqueueResult(added, known, done, requeued)


async def _requeue(sink: Sink, queue: Queue, include_failed: bool) -> int:
    states: list[Literal["pending", "done", "failed"]] = ["pending"]
    if include_failed:
        states.append("failed")
    count = 0
    after = ""
    while True:
        threads = await sink.list_threads(states, after=after, limit=BATCH)
        if not threads:
            return count
        published = await queue.publish([(t.thread_id, t.cursor) for t in threads])
        count += sum(published)
        after = threads[-1].thread_id


def _check_thread_id(thread_id: object) -> None:
    from .._protocol import check_thread_id  # noqa: PLC0415 - a private helper of the core

    check_thread_id(thread_id)


@attrs.frozen
class FleetStatus:
    """Where a fleet's export stands (:func:`fleet_status`)."""

    export: str
    threads_done: int
    threads_pending: int
    threads_failed: int
    #: Runs stored in the sink.
    runs: int
    #: Slices queued or being listed.
    queued: int
    #: Runs the fleet stored per second, over the last minute.
    runs_per_second: float
    #: Pages (requests that stored one) per second, over the last minute.
    pages_per_second: float
    #: The pace the fleet keeps to, requests per second: the server's rate limit as its
    #: headers describe it (``None``: none learnt).
    rate: float | None
    #: Seconds the fleet is still paused for (a ``Retry-After``), 0 when not paused.
    paused_for: float
    #: Workers alive (their heartbeat is younger than their lease).
    workers: int
    #: Why the fleet stopped (a 401, an exhausted quota), ``None`` when it did not.
    stopped: str | None
    settings: ExportSettings | None

    def as_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["settings"] = None if self.settings is None else attrs.asdict(self.settings)
        return data


async def fleet_status(export: str, redis_url: str, sink_url: str) -> FleetStatus:
    """Threads done / pending / failed and runs (from the sink), the queue, the fleet's pace,
    pause and stop, and its live workers (from Redis).

    :raises SinkSettingsError: Redis holds no export ``export``, or it was created with
        another sink.
    :raises SinkUnavailableError: the sink cannot be opened (or holds no export).
    :raises redis.exceptions.RedisError: Redis cannot be reached.
    """
    check_export_name(export)
    async with _connected(redis_url) as redis:
        # The export's, and this database its: else the figures would be another's.
        settings = await export_settings(redis, export, sink_url)
        async with await open_sink(sink_url, create=False) as sink:
            counts = await sink.thread_counts()
            runs = (await sink.totals()).runs
        control = f"aiorunlist:fleet:{{{export}}}"
        refill, pause, fatal = await redis.hmget(control, ["refill", "pause", "fatal"])
        seconds, micros = await redis.time()
        now = seconds + micros / 1e6
        clock = time.time()
        current = int(clock) // PROGRESS_BUCKET
        pages = runs_done = 0
        for bucket in range(current - PROGRESS_BUCKETS + 1, current + 1):
            done = _decode_map(await redis.hgetall(progress_key(export, bucket)))
            pages += int(done.get("pages", 0))
            runs_done += int(done.get("runs", 0))
        # The last full buckets, and the current one so far.
        span = PROGRESS_BUCKET * (PROGRESS_BUCKETS - 1) + clock % PROGRESS_BUCKET
        prefix = f"streaq:{queue_name(export)}"
        workers = 0
        async for _ in redis.scan_iter(match=f"{prefix}:health:*", count=500):
            workers += 1
        async with redis.pipeline(transaction=True) as pipe:  # one count, not two moments
            pipe.xlen(f"{prefix}:queues:normal")
            pipe.zcard(f"{prefix}:queues:delayed:normal")
            live, delayed = await pipe.execute()
        queued = int(live) + int(delayed)
    return FleetStatus(
        export,
        counts.get("done", 0),
        counts.get("pending", 0),
        counts.get("failed", 0),
        runs,
        queued,
        runs_done / span,
        pages / span,
        None if refill is None else float(refill),
        0.0 if pause is None else max(0.0, float(pause) - now),
        workers,
        None if fatal is None else _text(fatal),
        settings,
    )


#: The traffic controls a worker can use: the fleet's, shared through Redis, or its own.
CONTROLS = ("shared", "local")


@attrs.frozen
class WorkerOptions:
    """How a worker lists (see :func:`run_worker`)."""

    #: Slices (threads) listed at once.
    concurrency: int = 16
    #: Return once the export's queue is empty.
    burst: bool = False
    #: Makes the worker's one client, given its traffic control (default:
    #: ``Client(control=control)``, its key from ``OPENAI_API_KEY``): the fleet's
    #: :class:`RedisTrafficControl`, or with ``control="local"`` a
    #: :class:`~aiorunlist.LocalTrafficControl` (annotate its parameter
    #: :class:`~aiorunlist.TrafficControl` to take both).
    client: Callable[[RedisTrafficControl], Client] | None = None
    #: How many workers the fleet has (each one's share of the rate if Redis is lost).
    workers: int = 1
    #: ``"shared"``: the fleet's traffic control in Redis (one pace, pause and retry budget
    #: for every worker). ``"local"``: this worker's own ``LocalTrafficControl`` with the
    #: same settings, for comparison: it paces and pauses alone (a fatal answer still stops
    #: the fleet through Redis).
    control: Literal["shared", "local"] = "shared"
    #: The whole fleet's pace in requests per second (``None``: the server's rate-limit
    #: headers set it), for a server that sends no such headers; every worker of the fleet
    #: should give the same. With ``control="local"`` each worker keeps to ``rate / workers``.
    rate: float | None = None

    def check(self) -> None:
        """``ValueError`` for a setting out of range (before anything is sent)."""
        concurrency = self.concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        workers = self.workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if self.control not in CONTROLS:
            raise ValueError(f"control must be 'shared' or 'local', got {self.control!r}")
        rate = self.rate
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ValueError(
                f"rate must be a number of requests per second > 0, or None, got {rate!r}"
            )

    def pacing(self) -> Pacing | None:
        """The pacing of this worker's traffic control: the fleet's rate when shared, its
        share of it when local."""
        if self.rate is None:
            # The shared control learns no pace from 429s; a local one compared with it
            # must not either (a client's default does).
            return None if self.control == "shared" else Pacing()
        share = self.rate if self.control == "shared" else self.rate / self.workers
        return Pacing(requests_per_second=share)


@attrs.frozen
class WorkerResult:
    """What a worker did before it returned."""

    slices: int
    pages: int
    runs: int
    #: Why the fleet stopped (a rejected key, an exhausted quota), ``None`` if it did not.
    stopped: str | None


async def run_worker(
    export: str,
    redis_url: str,
    sink_url: str,
    *,
    concurrency: int = 16,
    burst: bool = False,
    lease: float = 30.0,
    client: Callable[[RedisTrafficControl], Client] | None = None,
    workers: int = 1,
    control: Literal["shared", "local"] = "shared",
    rate: float | None = None,
) -> WorkerResult:
    """Work on the export's queue in this process until stopped: SIGTERM or SIGINT (the
    current pages are stored, the rest of each slice handed back; a signal while the worker
    starts stops it before it takes any work), a fatal stop of the fleet (a 401, an exhausted
    quota: ``stopped`` says which), or, with ``burst``, an empty queue.

    One client (made by ``client`` from the worker's traffic control), one traffic control and
    one sink serve every slice of the process.

    :param lease: seconds a slice stays with a worker that stopped answering before another
        worker takes it over (every worker of an export should use the same).
    :param control: ``"shared"`` (the default): the fleet's :class:`RedisTrafficControl`, one
        pace, pause and retry budget for every worker. ``"local"``: for comparison, this
        worker's own :class:`~aiorunlist.LocalTrafficControl` with the same settings: each
        worker paces and pauses alone (``client`` is then given the local control; a fatal
        answer still stops the whole fleet, through Redis).
    :param rate: the whole fleet's pace in requests per second, for a server that sends no
        rate-limit headers (``None``, the default: the headers set it); every worker of the
        fleet should give the same.
    :raises SinkSettingsError: the export does not exist in Redis, or the sink holds an export
        with other settings (before any work is taken).
    :raises ValueError: a setting out of range (before anything is sent).
    :raises ImportError: streaq is not installed (Python 3.11+).
    """
    options = WorkerOptions(concurrency, burst, client, workers, control, rate)
    return await work(export, redis_url, sink_url, options, lease=lease)


class _Signals:
    """SIGTERM / SIGINT for the whole life of a worker: the first one stops it (before it
    starts, or its queue), and the receiver stays open, so that another one changes nothing
    (the current pages are still stored)."""

    def __init__(self, before: Callable[[], bool] | None) -> None:
        self.received = anyio.Event()
        self.queue: Queue | None = None
        self.scopes: set[anyio.CancelScope] = set()
        if before is not None and before():
            self.received.set()

    async def watch(self, signals: AsyncIterator[signal.Signals]) -> None:
        async for signum in signals:
            if not self.received.is_set():
                logger.info("%s: finishing the current pages, then handing back", signum.name)
            self.received.set()
            self.stop()

    def stop(self) -> None:
        if self.queue is not None:
            self.queue.stop()
        for scope in self.scopes:
            scope.cancel()

    def stopped(self) -> bool:
        return self.received.is_set()


async def work(
    export: str,
    redis_url: str,
    sink_url: str,
    options: WorkerOptions | None = None,
    *,
    lease: float = 30.0,
    signalled_before: Callable[[], bool] | None = None,
) -> WorkerResult:
    """:func:`run_worker` with its ``options``; ``signalled_before`` says whether a signal
    came before this was called (the command line's own handler, while the program was
    starting)."""
    check_export_name(export)
    options = WorkerOptions() if options is None else options
    options.check()
    if not isinstance(lease, (int, float)) or not 1 <= lease < float("inf"):
        raise ValueError(f"lease must be a number of seconds >= 1, got {lease!r}")
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as receiver:
            signals = _Signals(signalled_before)
            async with anyio.create_task_group() as group:
                group.start_soon(signals.watch, receiver)
                try:
                    result = await _work(
                        signals,
                        export,
                        redis_url,
                        sink_url,
                        options,
                        float(lease),
                    )
                finally:
                    group.cancel_scope.cancel()
    finally:
        # The handlers from before, not the default ones the receiver leaves (a signal
        # while the program winds down would kill it).
        for number, handler in handlers.items():
            if handler is not None:
                with contextlib.suppress(ValueError, TypeError, OSError):
                    signal.signal(number, handler)
    return result


async def _work(  # noqa: PLR0917 - private
    signals: _Signals,
    export: str,
    redis_url: str,
    sink_url: str,
    options: WorkerOptions,
    lease: float,
) -> WorkerResult:
    nothing = WorkerResult(0, 0, 0, None)
    with anyio.CancelScope() as starting:
        signals.scopes.add(starting)
        if signals.stopped():
            return nothing
        async with _connected(redis_url) as redis:
            settings = await export_settings(redis, export, sink_url)
        async with await open_sink(sink_url, settings=settings.for_sink()):
            pass  # other settings, or unreachable: refused before any work is taken
    signals.scopes.discard(starting)
    if signals.stopped():
        return nothing
    slices = pages = runs = 0
    lost_since: float | None = None
    while True:
        queue = open_queue(export, redis_url, lease=lease, concurrency=options.concurrency)
        signals.queue = queue
        if signals.stopped():
            return WorkerResult(slices, pages, runs, None)
        try:
            await queue.work(settings, sink_url, options)
        except Exception as exc:
            # Redis lost (killed, restarted, cut off): the sink holds every page stored, the
            # queue comes back with Redis (or with enqueue --requeue). Start again until it
            # answers, for REDIS_PATIENCE seconds.
            if signals.stopped() and redis_lost(exc):
                # Stopped while Redis is gone: nothing can be handed back, nothing is lost
                # (the slices held come back to a worker once their lease runs out).
                return WorkerResult(
                    slices + queue.slices, pages + queue.pages, runs + queue.runs, None
                )
            if queue.stopping or not redis_lost(exc):
                raise
            now = time.monotonic()
            if queue.slices or lost_since is None:
                lost_since = now
            if now - lost_since > REDIS_PATIENCE:
                raise
            logger.warning(
                "Redis cannot be used (%s): the worker starts again in %g s",
                " ".join(str(leaf(exc)).split()) or type(leaf(exc)).__name__,
                REDIS_RETRY,
            )
            with anyio.move_on_after(REDIS_RETRY):
                await signals.received.wait()
            continue
        finally:
            slices, pages, runs = slices + queue.slices, pages + queue.pages, runs + queue.runs
        return WorkerResult(slices, pages, runs, queue.fatal)


#: Seconds a worker keeps starting again while Redis cannot be used, before it gives up.
REDIS_PATIENCE = 60.0
#: Seconds between two starts.
REDIS_RETRY = 1.0


def leaf(exc: BaseException) -> BaseException:
    """The first exception that is not a group of others."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if not inner:
            return exc
        exc = inner[0]


#: The packages that talk to Redis: an error raised in their code is Redis's.
_REDIS_PACKAGES = frozenset({"redis", "coredis", "streaq"})
#: The packages whose error types say Redis failed (not streaq's: its own usage errors).
_REDIS_CLIENTS = frozenset({"redis", "coredis"})
#: Errors of a Redis client that say the command, not Redis, is wrong (a bug or a Redis too
#: old for the engine): the worker stops rather than waiting for Redis to come back.
_NOT_LOST = frozenset(
    {"CommandNotSupportedError", "CommandSyntaxError", "DataError", "UnknownCommandError"}
)
#: The packages (and this library's modules) that talk to a sink's database.
_DATABASE_PACKAGES = frozenset({"asyncpg", "aiosqlite", "sqlite3", "aiorunlist.sinks"})
#: Packages whose frames do not say who was talked to: the event loop, sockets, contexts.
_PLUMBING = (
    frozenset(sys.stdlib_module_names) | {"anyio", "sniffio", "exceptiongroup", "async_timeout"}
) - {"sqlite3"}


def _package(module: str) -> str:
    if module.startswith("aiorunlist.sinks"):
        return "aiorunlist.sinks"
    return module.partition(".")[0]


def origin(exc: BaseException) -> Literal["redis", "database"] | None:
    """Whom ``exc`` (not a group) came from: ``"redis"`` for the Redis clients' errors and for
    an error raised while talking to Redis (the innermost frame of its traceback that is not
    the event loop's or the standard library's is in a Redis client or the queue's engine),
    ``"database"`` likewise for a sink's database, ``None`` otherwise."""
    names = {_package(c.__module__) for c in type(exc).__mro__}
    if names & _REDIS_CLIENTS:
        return None if type(exc).__name__ in _NOT_LOST else "redis"
    if names & _DATABASE_PACKAGES:
        return "database"
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(_package(str(tb.tb_frame.f_globals.get("__name__", ""))))
        tb = tb.tb_next
    for package in reversed(frames):
        if package in _REDIS_PACKAGES:
            return "redis"
        if package in _DATABASE_PACKAGES:
            return "database"
        if package not in _PLUMBING:
            return None
    return None


def redis_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or every exception of a group) says Redis could not be used: an error
    of a Redis client, or a network error or timeout raised while talking to Redis (not one
    of the database's, nor any other)."""
    inner = getattr(exc, "exceptions", None)
    if inner:
        return all(redis_lost(e) for e in inner)
    if origin(exc) != "redis":
        return False
    names = {_package(c.__module__) for c in type(exc).__mro__}
    return bool(names & _REDIS_PACKAGES) or isinstance(exc, (OSError, TimeoutError))


async def resume(export: str, redis_url: str) -> bool:
    """Clear a fatal stop of the export's fleet (once its cause is fixed): its workers may
    send again. Returns whether the fleet was stopped."""
    check_export_name(export)
    async with _connected(redis_url) as redis:
        return bool(await redis.hdel(f"aiorunlist:fleet:{{{export}}}", "fatal"))
