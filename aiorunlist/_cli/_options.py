"""Options that several commands share, so that they read and behave the same everywhere."""

from __future__ import annotations

from collections.abc import Callable

import click
from click.decorators import FC

__all__ = ["api_key_option", "base_url_option", "redis_option", "sink_option"]

base_url_option = click.option(
    "--base-url",
    envvar="OPENAI_BASE_URL",
    show_envvar=True,
    metavar="URL",
    help="The API root, e.g. http://127.0.0.1:8080/v1.  [default: https://api.openai.com/v1]",
)

api_key_option = click.option(
    "--api-key",
    envvar="OPENAI_API_KEY",
    show_envvar=True,
    metavar="KEY",
    help="The API key (prefer the environment variable: arguments show in process lists). "
    "Never printed.",
)


def sink_option(*, required: bool = False, help: str) -> Callable[[FC], FC]:
    """``--sink URL``, read from ``AIORUNLIST_SINK`` when not given."""
    return click.option(
        "--sink",
        envvar="AIORUNLIST_SINK",
        show_envvar=True,
        metavar="URL",
        required=required,
        help=help,
    )


redis_option = click.option(
    "--redis",
    "redis_url",
    envvar="AIORUNLIST_REDIS_URL",
    show_envvar=True,
    metavar="URL",
    required=True,
    help="The fleet's Redis, e.g. redis://127.0.0.1:6379/0.",
)

max_retries_option = click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Retries of one page request on connection errors, timeouts, 408, 409, 429 and 5xx.",
)
