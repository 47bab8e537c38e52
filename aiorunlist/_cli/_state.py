"""The ``--resume`` state: an append-only journal of checkpoints of an export.

The first line is a header naming the export (output file, format, order, cursors). Each
further line is one checkpoint, written in a single ``write`` after the output was flushed
and fsync'd::

    {"offset": 81234, "last": {"thread_a": "run_x"}, "done": ["thread_b"]}

``offset`` is the size of the output at that moment; ``last`` maps threads to the last run
written for them since the previous checkpoint, ``done`` lists the threads finished since then.
A checkpoint therefore describes exactly the first ``offset`` bytes of the output. On resume
the journal is replayed up to its last complete line, the output is cut back to that
checkpoint's ``offset`` (dropping whatever was written after it, which the journal does not
know about), and the export carries on: done threads are skipped, the others continue after
their last run. No run is written twice and none is missed, whatever the point where the
previous attempt stopped (Ctrl-C, a crash, a power cut between two writes).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, BinaryIO

import orjson

from ._inputs import CLIError

__all__ = ["Journal", "ResumePoint", "open_journal"]

_MAGIC = "aiorunlist runs --resume"
_VERSION = 1


class ResumePoint:
    """What the journal knows: finished threads, the last run of the others, the output size."""

    def __init__(self) -> None:
        #: Threads listed to the end.
        self.done: set[str] = set()
        #: Thread id -> id of the last run written (threads not finished).
        self.last: dict[str, str] = {}
        #: Bytes of output the journal accounts for.
        self.offset = 0

    def apply(self, entry: Mapping[str, Any]) -> None:
        """Replay one checkpoint."""
        for thread_id, run_id in entry["last"].items():
            self.last[thread_id] = run_id
        for thread_id in entry["done"]:
            self.done.add(thread_id)
            self.last.pop(thread_id, None)
        self.offset = entry["offset"]


def _checkpoint(line: bytes) -> dict[str, Any] | None:
    """A decoded checkpoint line, or ``None`` if it is cut short or not a checkpoint."""
    if not line.endswith(b"\n"):
        return None
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entry, dict):
        return None
    offset, last, done = entry.get("offset"), entry.get("last"), entry.get("done")
    if (
        not isinstance(offset, int)
        or isinstance(offset, bool)
        or offset < 0
        or not isinstance(last, dict)
        or not all(isinstance(v, str) for v in last.values())
        or not isinstance(done, list)
        or not all(isinstance(t, str) for t in done)
    ):
        return None
    return entry


class Journal:
    """An open journal: :meth:`commit` appends one checkpoint, durably."""

    def __init__(
        self, path: str, file: BinaryIO, point: ResumePoint, *, created: bool = False
    ) -> None:
        self.path = path
        self._file = file
        #: The state as of the last committed checkpoint.
        self.point = point
        #: Whether this journal was started just now (not resumed).
        self.created = created

    def commit(self, offset: int, last: Mapping[str, str], done: list[str]) -> None:
        """Append a checkpoint for an output whose first ``offset`` bytes are flushed to disk."""
        line = orjson.dumps({"offset": offset, "last": last, "done": done}) + b"\n"
        self._file.write(line)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.point.apply({"offset": offset, "last": last, "done": done})

    def close(self) -> None:
        """Close the journal file."""
        self._file.close()


def _header(settings: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"state": _MAGIC, "version": _VERSION, **settings}) + b"\n"


def _check_header(path: str, line: bytes, settings: Mapping[str, Any]) -> None:
    try:
        header = orjson.loads(line) if line.endswith(b"\n") else None
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("state") != _MAGIC:
        raise CLIError(f"{path} is not an aiorunlist resume state file")
    if header.get("version") != _VERSION:
        raise CLIError(
            f"{path} was written by another version of aiorunlist "
            f"(state version {header.get('version')!r}); start over with a new state file"
        )
    for key, value in settings.items():
        if header.get(key) != value:
            raise CLIError(
                f"{path} belongs to another export ({key} was {header.get(key)!r}, now "
                f"{value!r}); use the same options, or a new state file to start over"
            )


def _replay(file: BinaryIO) -> ResumePoint:
    """Replay the checkpoints after the header; cut the file after the last complete one."""
    point = ResumePoint()
    good = file.tell()
    for line in iter(file.readline, b""):
        entry = _checkpoint(line)
        if entry is None:
            break  # cut short by a crash: everything after it is unknown
        point.apply(entry)
        good = file.tell()
    file.truncate(good)
    file.seek(0, os.SEEK_END)
    return point


def open_journal(path: str, settings: Mapping[str, Any]) -> Journal:
    """Open (or start) the journal at ``path`` for an export described by ``settings``.

    A missing or empty file starts a new export. An existing one must describe the same export
    (same ``settings``), else :class:`CLIError`. The file is cut back to its last complete
    checkpoint, so that new checkpoints append cleanly after it.
    """
    try:
        file = open(path, "a+b")  # noqa: SIM115 - the Journal owns and closes it
    except OSError as exc:
        raise CLIError(f"cannot open the state file {path}: {exc.strerror or exc}") from None
    try:
        file.seek(0)
        header_line = file.readline()
        if not header_line:
            file.write(_header(settings))
            file.flush()
            os.fsync(file.fileno())
            return Journal(path, file, ResumePoint(), created=True)
        _check_header(path, header_line, settings)
        return Journal(path, file, _replay(file))
    except BaseException:
        file.close()
        raise
