"""A fleet of processes sharing one rate limit (extra ``aiorunlist[fleet]``).

:class:`RedisTrafficControl` shares the pause, the pace, the retry budget and a stop on a
fatal answer among every client that uses the same Redis and fleet name.
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401 - checked here for a clear error
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("aiorunlist.fleet needs redis-py: pip install 'redis>=5'") from exc

from ._control import RedisTrafficControl, TrafficStoppedError

__all__ = ["RedisTrafficControl", "TrafficStoppedError"]
