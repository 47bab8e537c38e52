"""``aiorunlist fleet enqueue | worker | status``: an export run by a fleet of workers.

The fleet needs the ``fleet`` extra (redis-py, and streaq on Python 3.11+): it is imported
when a fleet command runs, and its absence is one line with exit code 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click
import orjson

from .._protocol import check_thread_id
from ..exceptions import RunListError
from ..sinks import SinkError
from ..sinks._base import mask_url
from ._inputs import CLIError, ThreadIds
from ._options import (
    api_key_option,
    base_url_option,
    max_retries_option,
    redis_option,
    sink_option,
)

if TYPE_CHECKING:
    from .. import Client, TrafficControl

__all__ = ["fleet_group"]

T = TypeVar("T")

EXIT_FAILED = 1

_SINK_HELP = (
    "The export's database (the truth about every thread): sqlite:///path/to/runs.db on one "
    "host, postgresql://user@host:port/db for a fleet on several."
)


def _say(line: str) -> None:
    click.echo(line, file=sys.stderr)


def _fleet() -> Any:
    try:
        from aiorunlist import fleet  # noqa: PLC0415 - an optional extra, loaded when used
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    return fleet


def _leaf(exc: BaseException) -> BaseException:
    while inner := getattr(exc, "exceptions", None):
        exc = inner[0]
    return exc


def _run(coro: Awaitable[T], redis_url: str, sink_url: str | None = None) -> T:
    """Run ``coro``; every problem with the input, the settings, Redis or the sink is one
    line and exit code 2, naming which of them failed."""

    async def main() -> T:
        return await coro

    try:
        try:
            return asyncio.run(main())
        except Exception as exc:
            inner = getattr(exc, "exceptions", None)
            if not inner:
                raise
            raise _leaf(exc) from None  # a task group's: what went wrong, not the group
    except (ValueError, TypeError, ImportError, SinkError) as exc:
        raise CLIError(" ".join(str(exc).split())) from None
    except Exception as exc:
        from aiorunlist.fleet._export import origin  # noqa: PLC0415 - the fleet extra

        where = origin(exc)
        text = " ".join(str(exc).split()) or type(exc).__name__
        if where == "redis":
            raise CLIError(f"cannot use Redis at {redis_url.rsplit('@', 1)[-1]}: {text}") from None
        if where == "database" and sink_url is not None:
            raise CLIError(f"cannot use the database {mask_url(sink_url)}: {text}") from None
        if isinstance(exc, (OSError, TimeoutError)):
            raise CLIError(f"{type(exc).__name__}: {text}") from None
        raise


@click.group("fleet", short_help="Export with a fleet of workers sharing Redis and a database.")
def fleet_group() -> None:
    """An export run by a fleet of worker processes, on one host or many.

    \b
    The database sink holds the truth (every run once, each thread's cursor); Redis carries the
    queue of work and the fleet's shared rate limit, pause, retry budget and stop.
    \b
      aiorunlist fleet enqueue --export nightly --redis redis://127.0.0.1:6379/0 \\
          --sink postgresql://user@db/runs --threads-from threads.txt
      aiorunlist fleet worker --export nightly --redis ... --sink ... --concurrency 32
      aiorunlist fleet status --export nightly --redis ... --sink ...
    """


def _export_option(fn: Any) -> Any:
    return click.option(
        "--export",
        "export",
        required=True,
        metavar="NAME",
        help="The export's name: its queue, settings and shared traffic state in Redis.",
    )(fn)


@fleet_group.command("enqueue", short_help="Add threads to an export (creating it).")
@click.argument("thread_ids", nargs=-1, metavar="[THREAD_ID]...")
@click.option(
    "--threads-from",
    metavar="FILE",
    help="Read thread ids from FILE, one per line ('-': standard input).",
)
@_export_option
@redis_option
@sink_option(required=True, help=_SINK_HELP)
@click.option(
    "--requeue",
    is_flag=True,
    help="Also queue again every thread the database holds as pending, from its cursor: "
    "after Redis lost the queue (the slices still queued are not doubled).",
)
@click.option(
    "--include-failed", is_flag=True, help="With --requeue: failed threads too, from their cursor."
)
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default=None,
    help="Order of each thread's runs.  [default: the export's; desc for a new one]",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=None,
    help="Runs per request.  [default: the export's; 100 for a new one]",
)
@click.option(
    "--slice-pages",
    type=click.IntRange(min=1),
    default=None,
    help="Pages a worker lists of a thread before handing the rest on (a job of the queue). "
    "[default: the export's; 10 for a new one]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as a JSON object.")
def enqueue_command(
    *,
    thread_ids: tuple[str, ...],
    threads_from: str | None,
    export: str,
    redis_url: str,
    sink: str,
    requeue: bool,
    include_failed: bool,
    order: Literal["asc", "desc"] | None,
    page_size: int | None,
    slice_pages: int | None,
    as_json: bool,
) -> int:
    """Add threads to the export NAME; the first enqueue creates it with its settings (order,
    page size, slice pages, database), which every later enqueue and worker must share.

    Prints how many threads were added, were already known (queued, being listed, or failed)
    and were already done. The same ids again add nothing.
    """
    if include_failed and not requeue:
        raise CLIError("--include-failed goes with --requeue")
    if not thread_ids and threads_from is None and not requeue:
        raise CLIError("no thread ids: pass THREAD_ID arguments or --threads-from FILE")
    for thread_id in thread_ids:  # before anything is created or sent
        try:
            check_thread_id(thread_id)
        except (TypeError, ValueError) as exc:
            raise CLIError(str(exc)) from None
    fleet = _fleet()
    source = None
    if threads_from is not None:
        if threads_from == "-":
            source = sys.stdin.buffer
        else:
            try:
                source = open(threads_from, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise CLIError(f"cannot read {threads_from}: {exc.strerror or exc}") from None
    name = threads_from or "<stdin>"
    ids = ThreadIds(list(thread_ids), source, source_name=name, check=check_thread_id)
    if source is not None and not ids.blocking:
        # A file: every id checked before anything is created (a pipe: each as it is read).
        try:
            asyncio.run(_read_all(ThreadIds([], source, source_name=name, check=check_thread_id)))
            source.seek(0)
        except BaseException:
            if source is not sys.stdin.buffer:
                source.close()
            raise

    async def stream() -> AsyncIterator[str]:
        async for thread_id in ids:
            yield thread_id

    try:
        result = _run(
            fleet.enqueue(
                export,
                redis_url,
                sink,
                stream(),
                order=order,
                page_size=page_size,
                slice_pages=slice_pages,
                requeue=requeue,
                include_failed=include_failed,
            ),
            redis_url,
            sink,
        )
    finally:
        if source is not None and source is not sys.stdin.buffer:
            source.close()
    if as_json:
        data = {
            "added": result.added,
            "already_known": result.known,
            "already_done": result.done,
            "requeued": result.requeued,
        }
        click.echo(orjson.dumps(data).decode())
    else:
        line = f"added {result.added}, already known {result.known}, already done {result.done}"
        if requeue:
            line += f", requeued {result.requeued}"
        click.echo(line)
    return 0


async def _read_all(ids: ThreadIds) -> None:
    async for _ in ids:
        pass


@fleet_group.command("worker", short_help="Work on an export's queue.")
@_export_option
@redis_option
@sink_option(required=True, help=_SINK_HELP)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Slices (threads) listed at once by this worker.",
)
@click.option("--burst", is_flag=True, help="Exit once the export's queue is empty.")
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a slice stays with a worker that stopped answering (killed, cut off) "
    "before another worker takes it over. Every worker of an export should use the same.",
)
@base_url_option
@api_key_option
@max_retries_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many workers the fleet has: each takes this share of the rate if Redis is lost.",
)
@click.option(
    "--control",
    type=click.Choice(["shared", "local"]),
    default="shared",
    show_default=True,
    help="The traffic control: shared by the fleet through Redis (one pace, pause and retry "
    "budget for every worker), or local, for comparison; each worker paces and pauses alone "
    "(a fatal answer still stops the fleet).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="REQUESTS_PER_SECOND",
    help="The whole fleet's pace, for a server that sends no rate-limit headers (give every "
    "worker the same). Default: the server's x-ratelimit headers set the pace.",
)
def worker_command(
    *,
    export: str,
    redis_url: str,
    sink: str,
    concurrency: int,
    burst: bool,
    lease: float,
    base_url: str | None,
    api_key: str | None,
    max_retries: int,
    workers: int,
    control: Literal["shared", "local"],
    rate: float | None,
) -> int:
    """Take slices of the export NAME's threads from the queue and store them in the
    database, until stopped (SIGTERM / Ctrl-C: the current pages are stored, the rest handed
    back) or, with --burst, until no work is left.

    Exit codes: 0 stopped or done, 1 the fleet was stopped by an answer no retry cures (a
    rejected API key, an exhausted quota), 2 bad input, other settings, or Redis or the
    database unreachable.
    """
    # From here on a SIGTERM or Ctrl-C stops the worker cleanly, even while it is starting.
    with _signals_noted() as signalled:
        fleet = _fleet()  # its absence: one line, exit code 2
        make_client = _client_maker(api_key, base_url, max_retries)
        options = fleet.WorkerOptions(
            concurrency, burst, make_client, workers=workers, control=control, rate=rate
        )
        from aiorunlist.fleet._export import work  # noqa: PLC0415 - with the fleet, above

        result = _run(
            work(export, redis_url, sink, options, lease=lease, signalled_before=signalled),
            redis_url,
            sink,
        )
    _say(
        f"aiorunlist: worker stopped: {result.slices} slices, {result.pages} pages, "
        f"{result.runs} runs"
    )
    if result.stopped is not None:
        _say(f"aiorunlist: error: the fleet is stopped: {result.stopped}")
        return EXIT_FAILED
    return 0


@contextlib.contextmanager
def _signals_noted() -> Iterator[Callable[[], bool]]:
    """Note SIGTERM and SIGINT instead of dying of them, until the worker receives them
    itself; the handlers before are put back after."""
    noted: list[int] = []
    previous: dict[int, Any] = {}
    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda signum, _: noted.append(signum))
    except ValueError:  # not the main thread (the command run by a test, in a thread)
        pass
    try:
        yield lambda: bool(noted)
    finally:
        for again, handler in previous.items():
            signal.signal(again, handler)


def _client_maker(
    api_key: str | None, base_url: str | None, max_retries: int
) -> Callable[[TrafficControl], Client]:
    """What makes the worker's one client, its key and URL checked (bad ones: one line, exit
    code 2, the key never shown)."""
    # streaq's Redis client (coredis) leaves the in-memory buffers of a connection that
    # could not be made unclosed: nothing but memory, freed at once, yet under -W error or
    # -X dev every start while Redis is away would print a screenful of them.
    warnings.filterwarnings(
        "ignore", message=r"Unclosed <MemoryObject(Send|Receive)Stream", category=ResourceWarning
    )
    if not api_key:
        raise CLIError("no API key: pass --api-key KEY or set the OPENAI_API_KEY variable")
    from .. import Client  # noqa: PLC0415

    def make_client(control: TrafficControl) -> Client:
        return Client(api_key, base_url=base_url or None, max_retries=max_retries, control=control)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            make_client(None)  # type: ignore[arg-type]  # checks the key and the URL only
        except (ValueError, TypeError, RunListError) as exc:
            text = str(exc).replace(api_key, "***") if len(api_key) >= 8 else str(exc)
            raise CLIError(text) from None
    for warning in caught:
        _say(f"aiorunlist: warning: {' '.join(str(warning.message).split())}")
    return make_client


@fleet_group.command("status", short_help="Where an export stands.")
@_export_option
@redis_option
@sink_option(required=True, help=_SINK_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the status as a JSON object.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1 when threads failed or the fleet was stopped by a fatal error.",
)
def status_command(*, export: str, redis_url: str, sink: str, as_json: bool, check: bool) -> int:
    """Threads done, pending and failed, runs stored, slices queued, the fleet's pace and
    pause, its live workers, and why it stopped, if it did."""
    fleet = _fleet()
    status = _run(fleet.fleet_status(export, redis_url, sink), redis_url, sink)
    if as_json:
        click.echo(orjson.dumps(status.as_json()).decode())
    else:
        rate = "not known yet" if status.rate is None else f"{status.rate:.3g} requests/s"
        click.echo(
            f"export {export}: threads done {status.threads_done}, pending "
            f"{status.threads_pending}, failed {status.threads_failed}; runs {status.runs}"
        )
        click.echo(
            f"queue: {status.queued} slices; workers alive {status.workers}; "
            f"{status.runs_per_second:.1f} runs/s and {status.pages_per_second:.1f} pages/s "
            f"over the last minute; pace {rate}; paused for {status.paused_for:.1f} s"
        )
        if status.stopped is not None:
            click.echo(f"stopped: {status.stopped}")
    if check:
        if status.stopped is not None:
            _say(f"aiorunlist: the fleet is stopped: {status.stopped}")
            return EXIT_FAILED
        if status.threads_failed:
            _say(f"aiorunlist: {status.threads_failed} threads failed")
            return EXIT_FAILED
    return 0


@fleet_group.command("resume", short_help="Clear a fleet's stop once its cause is fixed.")
@_export_option
@redis_option
def resume_command(*, export: str, redis_url: str) -> int:
    """Let the export NAME's fleet send again after a stop (a rejected API key, an exhausted
    quota), once its cause is fixed; then start the workers. The slices they handed back when
    they stopped are waiting in the queue."""
    fleet = _fleet()
    was = _run(fleet.resume(export, redis_url), redis_url)
    click.echo(f"export {export}: " + ("stop cleared" if was else "was not stopped"))
    return 0
