"""The click commands: ``runs``, ``summary``, ``check-server``, ``fake-server`` and ``demo``.

Every problem with the user's input ends in one line on stderr, ``aiorunlist: error: ...``,
and exit code 2; never a traceback. Exit codes: 0 done, 1 some threads failed (the others
were exported) or the export could not go on, 2 bad input, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any, BinaryIO, Literal, NoReturn, TextIO

import click

from .. import Client, ThreadStart
from ..exceptions import RunListError
from ..sinks import Sink, SinkError, open_sink
from ..testing import Quirks, RateLimit
from ._check import check_server_command
from ._export import Export
from ._failures import failure_lines
from ._fleet import fleet_group
from ._inputs import CLIError, ThreadIds
from ._options import api_key_option, base_url_option, max_retries_option, sink_option
from ._output import FORMATS, Summary, Writer, format_count
from ._progress import LogWarnings, Progress
from ._serve import FAKE_KEY, run_demo, serve_fake
from ._sinkexport import SinkExport
from ._state import Journal, open_journal

__all__ = ["cli"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _stderr() -> TextIO:
    return sys.stderr


def _binary(stream: TextIO) -> BinaryIO:
    """The binary stream under a standard text stream."""
    buffer: BinaryIO | None = getattr(stream, "buffer", None)
    if buffer is None:
        raise CLIError(f"{getattr(stream, 'name', 'a standard stream')} has no binary layer")
    return buffer


def _say(line: str) -> None:
    """One line on stderr."""
    click.echo(line, file=_stderr())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _scrub(text: str, api_key: str | None) -> str:
    """``text`` with the API key masked, should a server ever echo it (keys are long: a
    short test key is left alone rather than masking every word that contains it)."""
    if api_key and len(api_key) >= 8:
        return text.replace(api_key, "***")
    return text


def _is_tty(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _screen_width() -> int:
    """The width tables fit: ``COLUMNS`` when set, else the terminal's (that of standard
    output, else of standard error: ``| less`` shows on it too), else 80."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream.isatty():
                return os.get_terminal_size(stream.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def _is_quiet(stream: IO[Any]) -> bool:
    """Whether what is written to ``stream`` never shows on a screen while we run: a regular
    file or ``/dev/null``, not a terminal, a pipe or a socket."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, ValueError, OSError):
        return False
    return stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not _is_tty(stream))


class _CLI(click.Group):
    """The ``aiorunlist`` group: click's parsing, with one-line error messages."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        """Run a command and exit with its code; errors in one line, never a traceback."""
        try:
            code = super().main(
                args, prog_name or "aiorunlist", complete_var, standalone_mode=False, **extra
            )
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _say(f"aiorunlist: error: {_one_line(exc.format_message())}{where}")
            code = EXIT_USAGE
        except click.ClickException as exc:
            _say(f"aiorunlist: error: {_one_line(exc.format_message())}")
            code = exc.exit_code
        except CLIError as exc:
            _say(f"aiorunlist: error: {_one_line(str(exc))}")
            code = EXIT_USAGE
        except (click.Abort, KeyboardInterrupt):
            _say("aiorunlist: interrupted")
            code = EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (`aiorunlist runs ... | head`): stop quietly.
            _silence_stdout()
            code = EXIT_FAILED
        sys.exit(code if isinstance(code, int) else 0)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


@click.group(cls=_CLI, invoke_without_command=True, context_settings={"max_content_width": 100})
@click.version_option(package_name="aiorunlist", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context) -> int:
    """List the runs of Assistants-API threads (GET /threads/{thread_id}/runs), fast.

    \b
    Try it without a key or a network first:
      aiorunlist demo
    Then export the runs of your own threads:
      aiorunlist runs thread_abc123 thread_def456 -o runs.jsonl
      aiorunlist runs --threads-from threads.txt -o runs.jsonl --resume runs.state
    Or into a database you can query (re-run it to sync):
      aiorunlist runs --threads-from threads.txt --sink sqlite:///runs.db
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
    return 0


# --- runs ----------------------------------------------------------------------------------------


def _thread_source(threads_from: str | None) -> tuple[BinaryIO | None, str]:
    if threads_from is None:
        return None, ""
    if threads_from == "-":
        return _binary(sys.stdin), "<stdin>"
    try:
        return open(threads_from, "rb"), threads_from
    except OSError as exc:
        raise CLIError(f"cannot read {threads_from}: {exc.strerror or exc}") from None


def _check_thread_arguments(thread_ids: Sequence[str]) -> None:
    for thread_id in thread_ids:
        if not thread_id.strip():
            raise CLIError("empty THREAD_ID argument; pass ids such as thread_abc123")
        try:
            ThreadStart(thread_id)
        except (TypeError, ValueError) as exc:
            raise CLIError(str(exc)) from None


def _make_client(
    api_key: str | None, base_url: str | None, max_retries: int, timeout: float
) -> Client:
    if not api_key:
        raise CLIError("no API key: pass --api-key KEY or set the OPENAI_API_KEY variable")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client = Client(
                api_key, base_url=base_url or None, max_retries=max_retries, timeout=timeout
            )
        except (ValueError, TypeError, RunListError) as exc:
            raise CLIError(_scrub(str(exc), api_key)) from None
    for warning in caught:
        _say(f"aiorunlist: warning: {_one_line(str(warning.message))}")
    return client


def _same_file(a: str, b: str) -> bool:
    """Whether paths ``a`` and ``b`` name one file: the same path, or (when both exist) the
    same inode, as a hard link or a bind mount gives."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


def _open_output(output: str, journal: Journal | None) -> tuple[BinaryIO, int]:
    """The output stream and its current size; cut back to the journal's checkpoint."""
    if output == "-":
        return _binary(sys.stdout), 0
    try:
        if journal is None or not os.path.exists(output):
            if journal is not None and journal.point.offset > 0:
                raise CLIError(
                    f"{output} is missing, but {journal.path} records "
                    f"{format_count(journal.point.offset)} bytes written to it; restore it, "
                    "or start over with a new state file"
                )
            return open(output, "wb", buffering=1 << 20), 0
        file = open(output, "r+b", buffering=1 << 20)  # noqa: SIM115 - returned, closed by the caller
    except OSError as exc:
        raise CLIError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        offset = _cut_back(file, output, journal)
    except OSError as exc:
        file.close()
        raise CLIError(f"cannot write {output}: {exc.strerror or exc}") from None
    except BaseException:
        file.close()
        raise
    return file, offset


def _cut_back(file: BinaryIO, output: str, journal: Journal) -> int:
    """Cut the output back to the journal's last checkpoint; the offset it ends at."""
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise CLIError(
            f"--resume needs a regular file as --output, and {output} is not one: on resume "
            "the output is cut back to the last checkpoint"
        )
    offset = journal.point.offset
    if info.st_size < offset:
        raise CLIError(
            f"{output} has {format_count(info.st_size)} bytes, fewer than the "
            f"{format_count(offset)} that {journal.path} records; was it changed? Start "
            "over with a new state file"
        )
    # Whatever follows the last checkpoint was written after the journal last spoke: the
    # runs it holds will be listed again, so it goes.
    file.truncate(offset)
    file.seek(offset)
    return offset


@cli.command(
    "runs", short_help="Export the runs of many threads (jsonl, csv, table or a database)."
)
@click.argument("thread_ids", nargs=-1, metavar="[THREAD_ID]...")
@click.option(
    "--threads-from",
    metavar="FILE",
    help="Read thread ids from FILE, one per line ('-': standard input); blank lines and "
    "'#' comments are skipped. Read as the export goes: a file of millions of ids is fine.",
)
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default="desc",
    show_default=True,
    help="Order of each thread's runs: 'desc' newest first, 'asc' oldest first.",
)
@click.option("--after", metavar="RUN_ID", help="One thread only: the runs following RUN_ID.")
@click.option("--before", metavar="RUN_ID", help="One thread only: the runs preceding RUN_ID.")
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=100,
    show_default=True,
    help="Runs per request.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Most requests in flight at once.",
)
@base_url_option
@api_key_option
@max_retries_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Time limit of one request.",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    default="-",
    show_default=True,
    help="Write the runs to FILE ('-': standard output). Replaced unless resuming.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="jsonl",
    show_default=True,
    help="jsonl: each run as the server sent it, one per line: JSON-equal, keys in the "
    "server's order (whitespace and string escapes are not kept). csv, table: the "
    "columns thread_id, id, status, created_at, model, total_tokens, last_error_code.",
)
@click.option(
    "--summary",
    is_flag=True,
    help="At the end, print runs by status, tokens by model and failed runs by error code "
    "(on standard error).",
)
@click.option(
    "--resume",
    metavar="STATE",
    help="Keep a checkpoint journal in STATE; started again with the same STATE, an "
    "interrupted export carries on where it stopped, with no run written twice or missed. "
    "Needs --output FILE.",
)
@sink_option(
    help="Store the runs in a database instead: sqlite:///path/to/runs.db, or "
    "postgresql://user@host:port/db (needs aiorunlist[postgres]). One transaction per page; "
    "the same command again carries on after an interruption, and once done, syncs what is "
    "new or changed.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress line on standard error.  [default: when it is a terminal and the "
    "runs go to a file, not to a terminal or a pipe]",
)
def runs_command(
    *,
    thread_ids: tuple[str, ...],
    threads_from: str | None,
    order: str,
    after: str | None,
    before: str | None,
    page_size: int,
    concurrency: int,
    base_url: str | None,
    api_key: str | None,
    max_retries: int,
    timeout: float,
    output: str,
    fmt: str,
    summary: bool,
    resume: str | None,
    sink: str | None,
    progress: bool | None,
) -> int:
    """Export the runs of THREAD_IDs (and/or of --threads-from FILE), fetching many threads
    at once.

    \b
    Examples:
      aiorunlist runs thread_abc123 --format table
      aiorunlist runs --threads-from threads.txt -o runs.jsonl --summary
      cat threads.txt | aiorunlist runs --threads-from - --format csv > runs.csv
      aiorunlist runs --threads-from threads.txt -o runs.jsonl --resume runs.state
      aiorunlist runs --threads-from threads.txt --sink sqlite:///runs.db

    Runs of different threads interleave; each thread's runs come in --order. Threads that
    fail are listed on standard error (THREAD_ID: error) and make the exit code 1; the
    others are still exported. Exit codes: 0 done, 1 some threads failed, 2 bad input,
    130 interrupted.
    """
    order_: Literal["asc", "desc"] = "asc" if order == "asc" else "desc"
    _check_thread_arguments(thread_ids)
    if not thread_ids and threads_from is None:
        raise CLIError(
            "no thread ids: pass THREAD_ID arguments or --threads-from FILE ('-' for stdin)"
        )
    for name, cursor in (("--after", after), ("--before", before)):
        if cursor is None:
            continue
        if not cursor.strip():
            raise CLIError(f"{name} needs a run id such as run_abc123")
        if threads_from is not None or len(thread_ids) != 1:
            raise CLIError(
                f"{name} applies to one thread (a run id belongs to one thread); pass exactly "
                "one THREAD_ID and no --threads-from"
            )
    if sink is not None:
        return _runs_into_sink(
            sink,
            thread_ids=thread_ids,
            threads_from=threads_from,
            order=order_,
            page_size=page_size,
            concurrency=concurrency,
            client_args=(api_key, base_url, max_retries, timeout),
            summary=summary,
            progress=progress,
            conflicting={
                "--after": after is not None,
                "--before": before is not None,
                "--output": output != "-",
                "--format": fmt != "jsonl",
                "--resume": resume is not None,
            },
        )
    if resume is not None:
        if output == "-":
            raise CLIError(
                "--resume needs --output FILE: on resume the output is cut back to the last "
                "checkpoint, which standard output cannot be"
            )
        if _same_file(resume, output):
            raise CLIError("--resume STATE and --output FILE must be different files")
    client = _make_client(api_key, base_url, max_retries, timeout)
    source, source_name = _thread_source(threads_from)
    journal: Journal | None = None
    out: BinaryIO | None = None
    try:
        if resume is not None:
            journal = open_journal(
                resume,
                {
                    "output": os.path.realpath(output),
                    "format": fmt,
                    "order": order_,
                    "after": after,
                    "before": before,
                },
            )
        try:
            out, offset = _open_output(output, journal)
        except CLIError:
            if journal is not None and journal.created:  # leave no trace of a false start
                journal.close()
                os.unlink(journal.path)
                journal = None
            raise
        stdout = sys.stdout
        stderr = _stderr()
        # By default on a terminal, and only when nothing else can show on it meanwhile: not
        # the runs (on it, or through a pipe to `head` or `less`), not the ids being typed.
        show_progress = (
            progress
            if progress is not None
            else _is_tty(stderr)
            and (output != "-" or _is_quiet(stdout))
            and not (threads_from == "-" and _is_tty(sys.stdin))
        )
        ids = ThreadIds(thread_ids, source, source_name=source_name)
        writer = Writer(
            out,
            fmt,
            offset=offset,
            header=offset == 0,
            width=_screen_width() if fmt == "table" else None,
            thread_column=threads_from is not None or len(thread_ids) != 1,
        )
        counts = Summary() if summary else None
        status = Progress(stderr, enabled=show_progress)
        with LogWarnings(stderr, status):
            export = Export(
                client,
                ids,
                order=order_,
                page_size=page_size,
                concurrency=concurrency,
                after=after,
                before=before,
                writer=writer,
                journal=journal,
                summary=counts,
                progress=status,
                output_fd=None if output == "-" else out.fileno(),
            )
            try:
                asyncio.run(_run(client, export))
                writer.flush()
            except BrokenPipeError:
                raise
            except OSError as exc:  # the output or the state could not be written
                export.error = exc
    finally:
        if source is not None and threads_from != "-":
            source.close()
        if out is not None and output != "-":
            with contextlib.suppress(OSError):  # reported from export.error or the flush
                out.close()
        if journal is not None:
            journal.close()
    return _report(export, resume, counts, show_progress, api_key, output=output)


async def _run(client: Client, export: Export) -> None:
    async with client:
        await export.run()


def _runs_into_sink(
    url: str,
    *,
    thread_ids: tuple[str, ...],
    threads_from: str | None,
    order: Literal["asc", "desc"],
    page_size: int,
    concurrency: int,
    client_args: tuple[str | None, str | None, int, float],
    summary: bool,
    progress: bool | None,
    conflicting: dict[str, bool],
) -> int:
    """``runs --sink URL``: the export into a database."""
    for name, given in conflicting.items():
        if given:
            raise CLIError(
                f"--sink and {name} cannot be combined: the sink keeps its own cursors and "
                "its own format"
            )
    api_key = client_args[0]
    client = _make_client(*client_args)
    source, source_name = _thread_source(threads_from)
    stderr = _stderr()
    show_progress = (
        progress
        if progress is not None
        else _is_tty(stderr) and not (threads_from == "-" and _is_tty(sys.stdin))
    )
    counts = Summary() if summary else None
    status = Progress(stderr, enabled=show_progress)
    settings = {"order": order, "page_size": str(page_size)}
    switch_interval = sys.getswitchinterval()
    if url.startswith("sqlite:"):
        # SQLite writes in a thread of its own, which needs the GIL back between statements:
        # a shorter switch interval than the default 5 ms keeps it from waiting on the event
        # loop (measured: about a fifth less time for an export).
        sys.setswitchinterval(min(switch_interval, 0.001))
    try:
        ids = ThreadIds(thread_ids, source, source_name=source_name)
        with LogWarnings(stderr, status):
            export = asyncio.run(
                _run_sink(
                    client,
                    url,
                    settings,
                    lambda sink: SinkExport(
                        client,
                        ids,
                        sink,
                        order=order,
                        page_size=page_size,
                        concurrency=concurrency,
                        summary=counts,
                        progress=status,
                    ),
                )
            )
    finally:
        sys.setswitchinterval(switch_interval)
        if source is not None and threads_from != "-":
            source.close()
    if isinstance(export.error, SinkError):
        _say(f"aiorunlist: error: {_one_line(_scrub(str(export.error), api_key))}")
        return EXIT_FAILED
    return _report(export, url, counts, show_progress, api_key)


async def _open_sink(url: str, settings: dict[str, str] | None) -> Sink:
    """The sink at ``url`` (to export into, with ``settings``; else to read an existing one);
    any problem with it is one line and exit code 2."""
    try:
        return await open_sink(url, settings=settings, create=settings is not None)
    except (ValueError, TypeError, ImportError, SinkError) as exc:
        raise CLIError(str(exc)) from None


async def _run_sink(
    client: Client,
    url: str,
    settings: dict[str, str],
    make_export: Callable[[Sink], SinkExport],
) -> SinkExport:
    async with client, await _open_sink(url, settings) as sink:
        export = make_export(sink)
        await sink.start_sync()
        await export.run()
        if export.error is None and export.interrupted is None:
            await sink.finish_sync()
    return export


def _report(
    export: Export,
    resume: str | None,
    summary: Summary | None,
    tty: bool,
    api_key: str | None,
    *,
    output: str = "-",
) -> int:
    def scrub(text: str) -> str:
        return _one_line(_scrub(text, api_key))

    error = export.error
    if isinstance(error, CLIError):
        raise error
    if isinstance(error, BrokenPipeError):
        raise error
    if isinstance(error, OSError):
        name = error.filename if error.filename is not None else output
        name = "standard output" if name == "-" else name
        _say(f"aiorunlist: error: cannot write {name}: {error.strerror or error}")
        return EXIT_FAILED
    if error is not None:
        raise error
    if export.fatal is not None:
        _say(f"aiorunlist: error: {scrub(str(export.fatal))}")
        return EXIT_FAILED
    for line in failure_lines(
        export.failures,
        base_url=export.client.base_url,
        none_succeeded=export.threads_done == 0,
        scrub=scrub,
    ):
        _say(line)
    elapsed = max(export.elapsed, 1e-9)
    listed = export.threads_finished() - export.threads_skipped
    totals = (
        f"{format_count(export.runs)} runs from {format_count(listed)} "
        f"threads ({format_count(len(export.failures))} failed) in {elapsed:.2f} s, "
        f"{format_count(export.runs / elapsed)} runs/s"
    )
    totals += f", {format_count(export.client.retries)} retries"
    if export.threads_skipped:
        totals += f"; {format_count(export.threads_skipped)} threads already done, skipped"
    if isinstance(export, SinkExport) and export.lost:
        totals += f", {format_count(export.lost)} threads left to another writer"
    if summary is not None:
        _say(f"{totals}\n\n{summary.render()}")
    elif tty or export.failures:
        _say(totals)
    if export.interrupted is not None:
        again = (
            "; run the same command again to resume"
            if resume
            else "; next time, add --resume STATE (with -o FILE) to be able to carry on"
        )
        _say(f"aiorunlist: interrupted after {format_count(export.runs)} runs{again}")
        return 128 + export.interrupted
    return EXIT_FAILED if export.failures else 0


# --- summary -------------------------------------------------------------------------------------


@cli.command("summary", short_help="Summary tables of the runs stored in a database.")
@sink_option(
    required=True,
    help="The database an export wrote to: sqlite:///path/to/runs.db or "
    "postgresql://user@host:port/db.",
)
def summary_command(*, sink: str) -> int:
    """Print runs by status, tokens by model and failed runs by error code, computed by the
    database that 'aiorunlist runs --sink URL' filled.

    \b
    Example:
      aiorunlist summary --sink sqlite:///runs.db
    """
    counts = asyncio.run(_summary(sink))
    click.echo(counts.render(), nl=False)
    return 0


async def _summary(url: str) -> Summary:
    async with await _open_sink(url, None) as sink:
        try:
            totals = await sink.totals()
        except SinkError as exc:
            raise CLIError(str(exc)) from None
    counts = Summary()
    counts.runs = totals.runs
    for status, n in totals.by_status:
        counts.by_status[status] = n
    for model, n, tokens in totals.by_model:
        counts.runs_by_model[model] = n
        counts.tokens_by_model[model] = tokens
    for code, n in totals.errors_by_code:
        counts.errors_by_code[code] = n
    return counts


# --- fake-server and demo ------------------------------------------------------------------------


@cli.command("fake-server", short_help="Serve a seeded fake API on 127.0.0.1 to try clients on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Port on 127.0.0.1 (0: a free one)."
)
@click.option(
    "--threads",
    "n_threads",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="How many threads to serve.",
)
@click.option(
    "--runs",
    "max_runs",
    type=click.IntRange(min=0),
    default=60,
    show_default=True,
    help="Each thread gets 0 to this many runs.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data.")
@click.option(
    "--chaos",
    type=click.FloatRange(0, 1),
    default=0.0,
    metavar="RATE",
    help="Fraction of requests answered with a random fault (429, 500, 503, a dropped "
    "connection, a cut body, an HTML page, a slow answer).",
)
@click.option(
    "--api-key",
    default=FAKE_KEY,
    show_default=True,
    metavar="KEY",
    help="The key the server accepts.",
)
@click.option(
    "--ids-file",
    metavar="FILE",
    help="Write the thread ids to FILE (kept). [default: a temporary file, removed at exit]",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="N",
    help="Limit listing requests to N per second (a token bucket): over it, answer 429s.",
)
@click.option(
    "--burst",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="With --rate: how many requests may go at once.",
)
@click.option(
    "--rate-headers",
    type=click.Choice(["bucket", "per-minute", "none"]),
    default="bucket",
    show_default=True,
    help="With --rate: the x-ratelimit-* headers sent (per-minute: as OpenAI words them; "
    "none: only 429s and their retry hints).",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Make every answer wait this long, as a distant server's would.",
)
@click.option(
    "--quirks",
    type=click.Choice(sorted(Quirks.MODES)),
    default=None,
    help="Behave like a compatible server with this quirk (see 'Compatible servers' in the "
    "docs): query parameters ignored, no has_more, or cursors unstable among runs created "
    "in the same second.",
)
def fake_server_command(
    *,
    port: int,
    n_threads: int,
    max_runs: int,
    seed: int,
    chaos: float,
    api_key: str,
    ids_file: str | None,
    rate: float | None,
    burst: int,
    rate_headers: str,
    latency: float,
    quirks: str | None,
) -> int:
    """Serve the shipped fake Assistants API on 127.0.0.1 until Ctrl-C.

    Prints the base URL, the (fake) key and where the thread ids are, so that this command
    line, openai-python or any other client can be tried against it.
    """
    if not api_key.strip():
        raise CLIError("--api-key must not be empty")
    try:
        return asyncio.run(
            serve_fake(
                port=port,
                n_threads=n_threads,
                max_runs=max_runs,
                seed=seed,
                chaos=chaos,
                api_key=api_key,
                ids_file=ids_file,
                out=sys.stdout,
                rate_limit=None if rate is None else RateLimit(rate, burst, rate_headers),
                latency=latency,
                quirks=quirks,
            )
        )
    except KeyboardInterrupt:
        return 0  # a second Ctrl-C while stopping


@cli.command("demo", short_help="List thousands of threads from an in-process fake server.")
@click.option(
    "--threads",
    "n_threads",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="How many threads to list.",
)
@click.option(
    "--runs",
    "max_runs",
    type=click.IntRange(min=0),
    default=60,
    show_default=True,
    help="Each thread has 0 to this many runs.",
)
@click.option(
    "--chaos",
    type=click.FloatRange(0, 1),
    default=0.0,
    metavar="RATE",
    help="Fraction of requests the server answers with a random fault; the client retries.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=32,
    show_default=True,
    help="Most requests in flight at once.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 100),
    default=20,
    show_default=True,
    help="Runs per request (the API's default: threads of more runs take several requests).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data.")
def demo_command(
    *, n_threads: int, max_runs: int, chaos: float, concurrency: int, page_size: int, seed: int
) -> int:
    """List thousands of threads from a fake server, in-process: no key, no network.

    Starts the shipped fake server on 127.0.0.1 with seeded data, lists every run of every
    thread with bounded concurrency (with a progress line on a terminal), then prints runs by
    status, tokens by model, failed runs by error code, and the throughput.
    """
    stderr = _stderr()
    return asyncio.run(
        run_demo(
            n_threads=n_threads,
            max_runs=max_runs,
            chaos=chaos,
            concurrency=concurrency,
            page_size=page_size,
            seed=seed,
            out=sys.stdout,
            # Cleared before each write to standard output; a pipe (`| less`) may show it
            # on the same terminal at any time, so then there is none.
            progress=Progress(
                stderr, enabled=_is_tty(stderr) and (_is_tty(sys.stdout) or _is_quiet(sys.stdout))
            ),
            echo=_say,
        )
    )


cli.add_command(check_server_command)
cli.add_command(fleet_group)
