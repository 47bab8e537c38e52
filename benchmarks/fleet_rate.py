"""K clients sharing one rate limit through Redis: how much of it they use, at what cost.

    python benchmarks/fleet_rate.py              # K = 1, 2, 4, shared and not, 4 s each
    python benchmarks/fleet_rate.py --seconds 10

Starts a throwaway redis-server (``redis-server`` on PATH) and, for each K, the shipped fake
server limited to 300 requests/s with a burst of 30 (``RateLimit(300, burst=30)``). K clients
(each with its own ``RedisTrafficControl`` and connections, as K processes have; all in this
process) list threads a run per page, 8 requests in flight each. Without the shared control,
each client has its own ``LocalTrafficControl``. Reported, after a 0.5 s start: the successes
as a share of the limit, and the 429s per 100 requests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import RedisServer
from tests.test_fleet_control import shared_rate


async def main(seconds: float, headers: str) -> None:
    redis = RedisServer()
    redis.start()
    try:
        print(f"limit 300/s, burst 30, {headers} headers, {seconds:g} s per row")
        print(f"{'K':>2}  {'control':<7}  {'share of the limit':>18}  {'429s per 100':>12}")
        for k in (1, 2, 4):
            for local in (False, True):
                share, per_100 = await shared_rate(
                    redis, k, seconds=seconds, local=local, headers=headers
                )
                name = "local" if local else "shared"
                print(f"{k:>2}  {name:<7}  {share:>18.0%}  {per_100:>12.1f}", flush=True)
    finally:
        redis.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--headers", choices=["bucket", "per-minute"], default="bucket")
    args = parser.parse_args()
    anyio.run(main, args.seconds, args.headers)
