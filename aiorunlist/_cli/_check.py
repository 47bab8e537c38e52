"""The ``check-server`` command: diagnose how a server pages one thread's runs."""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any

import click
import orjson

from .. import Client
from .._check import CHECK_NAMES, ServerReport, check_server
from .._protocol import check_thread_id
from ..exceptions import RunListError
from ._inputs import CLIError
from ._options import api_key_option, base_url_option

__all__ = ["check_server_command", "render_report"]

EXIT_OK = 0
EXIT_QUIRKS = 1
EXIT_USAGE = 2


def _scrub(text: str, api_key: str) -> str:
    return text.replace(api_key, "***") if len(api_key) >= 8 else text


def _setting(name: str, value: Any) -> str:
    if name == "cursors" and value is False:
        return "no cursors (list whole threads: no after=/before=, no --resume)"
    return f'{name}="{value}"' if isinstance(value, str) else f"{name}={value}"


def render_report(report: ServerReport) -> str:
    """The report as text: a table of the checks, then the recommended settings."""
    lines = [f"thread {report.thread_id} at {report.base_url}: {report.runs} run(s) listed"]
    if report.note:
        lines.append(report.note)
        return "\n".join(lines) + "\n"
    width = max(len(name) for name in CHECK_NAMES)
    lines.append("")
    lines.append(f"{'check'.ljust(width)}  {'result':6}  detail")
    lines.append(f"{'-' * width}  ------  {'-' * 40}")
    for check in report.checks:
        result = "ok" if check.ok else "quirk"
        lines.append(f"{check.check.ljust(width)}  {result:6}  {check.detail}")
    lines.append("")
    settings = ", ".join(_setting(k, v) for k, v in report.recommended.items())
    lines.append(f"recommended: {settings}")
    quirks = report.quirks
    if quirks:
        names = ", ".join(check.check for check in quirks)
        lines.append(f"{len(quirks)} quirk(s) found: {names}")
    else:
        lines.append("no quirks found: the server pages like the API")
    return "\n".join(lines) + "\n"


async def _check(client: Client, thread_id: str) -> ServerReport:
    async with client:
        return await check_server(client, thread_id)


@click.command("check-server", short_help="Diagnose how a compatible server pages a thread's runs.")
@click.argument("thread_id")
@base_url_option
@api_key_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print the report as one JSON object instead."
)
def check_server_command(
    *, thread_id: str, base_url: str | None, api_key: str | None, as_json: bool
) -> int:
    """Diagnose how the server pages the runs of THREAD_ID: a read-only probe of one thread
    that has at least 4 runs (ideally 10 to 50, some created in the same second).

    \b
    Checks:
      limit           is 'limit' honoured?
      order           does 'order' change the order?
      after / before  does a cursor give exactly the runs that follow / precede it?
      has_more        is has_more computed?
      first_last_id   are first_id and last_id present and right?
      request_id      is there an x-request-id?
      unknown_thread  does an unknown thread answer 404 (or 200 with an empty list)?
      error_shape     is the error body {"error": {"message": ...}}?
      stable_pages    do small pages overlap or skip runs, in either order?

    Prints a table (check, ok or quirk, detail) and the client settings that work with the
    server. --json prints {"checks": [{"check", "ok", "detail"}, ...], "recommended": {...}}.
    Exit codes: 0 no quirks, 1 quirks found, 2 bad input (or the thread could not be listed,
    or has too few runs).
    """
    try:
        check_thread_id(thread_id)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if not api_key:
        raise CLIError("no API key: pass --api-key KEY or set the OPENAI_API_KEY variable")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client = Client(api_key, base_url=base_url or None, max_retries=2)
        except (ValueError, TypeError, RunListError) as exc:
            raise CLIError(_scrub(str(exc), api_key)) from None
    for warning in caught:
        click.echo(f"aiorunlist: warning: {warning.message}", file=sys.stderr)
    try:
        report = asyncio.run(_check(client, thread_id))
    except RunListError as exc:
        raise CLIError(f"cannot probe the server: {_scrub(str(exc), api_key)}") from None
    if as_json:
        click.echo(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(_scrub(render_report(report), api_key), nl=False)
    if not report.enough_runs:
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_QUIRKS
