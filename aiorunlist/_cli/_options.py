"""Options that several commands share, so that they read and behave the same everywhere."""

from __future__ import annotations

import click

__all__ = ["api_key_option", "base_url_option"]

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
