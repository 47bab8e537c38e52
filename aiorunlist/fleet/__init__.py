"""A fleet of worker processes exporting into one database sink (extra ``aiorunlist[fleet]``).

:func:`enqueue` adds threads to an export, :func:`run_worker` works on its queue (slices of a
few pages of one thread, each page stored with a compare-and-set), :func:`fleet_status` says
where it stands. :class:`RedisTrafficControl` shares the pause, the pace, the retry budget and
a stop on a fatal answer among every client that uses the same Redis and fleet name.

The queue needs streaq (Python 3.11+); without it, this module still imports, and only the
queue's functions raise ``ImportError``, saying what to install.
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401 - checked here for a clear error
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("aiorunlist.fleet needs redis-py: pip install 'redis>=5'") from exc

from ._control import RedisTrafficControl, TrafficStoppedError
from ._export import (
    EnqueueResult,
    ExportSettings,
    FleetStatus,
    WorkerOptions,
    WorkerResult,
    check_export_name,
    enqueue,
    export_settings,
    fleet_status,
    open_queue,
    resume,
    run_worker,
)

__all__ = [
    "EnqueueResult",
    "ExportSettings",
    "FleetStatus",
    "RedisTrafficControl",
    "TrafficStoppedError",
    "WorkerOptions",
    "WorkerResult",
    "check_export_name",
    "enqueue",
    "export_settings",
    "fleet_status",
    "open_queue",
    "resume",
    "run_worker",
]
