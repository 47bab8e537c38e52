"""The ``aiorunlist`` command line: export runs from many threads, and a demo on a fake server.

The commands need click, an optional dependency (the ``cli`` extra: ``pip install -e '.[cli]'``
from a clone). This module imports nothing beyond the standard library, so that a missing
click is reported in one line instead of a traceback, and so that ``import aiorunlist`` never
pulls click in.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def _needs_click() -> str:
    """The one line that says what to install, into the Python that is running."""
    python = sys.executable or "python3"
    if " " in python:
        python = f'"{python}"'
    return f"aiorunlist: the command line needs click: {python} -m pip install 'click>=8.1'"


def main() -> None:
    """Run the ``aiorunlist`` command line (the console script and ``python -m aiorunlist``)."""
    try:
        from ._app import cli  # noqa: PLC0415 - click is optional: import it only when needed
    except ImportError as exc:
        if exc.name is None or exc.name.partition(".")[0] != "click":
            raise
        print(_needs_click(), file=sys.stderr)
        sys.exit(2)
    cli.main(prog_name="aiorunlist")
