"""Traffic control shared by a fleet of processes through Redis.

Every call is one round trip: a Lua script reads Redis's clock (``TIME``), so the processes
need no synchronised clocks, and updates the fleet's state atomically. The state of one fleet
lives in one hash (and a short list of rate estimates) under ``aiorunlist:fleet:{name}``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Mapping
from typing import Any

import anyio
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .._attempts import retry_hint
from .._control import LocalTrafficControl, Pacer, Pacing, RetryBudget, TrafficControl
from .._protocol import parse_go_duration
from ..exceptions import RunListError

__all__ = ["RedisTrafficControl", "TrafficStoppedError"]

logger = logging.getLogger("aiorunlist.fleet")

#: Errors that mean Redis cannot be used: unreachable, or refusing the fleet's commands (out
#: of memory, a read-only replica, a password). The control then falls back to local state.
_UNREACHABLE = (redis.exceptions.RedisError, OSError)

#: Seconds of disuse after which a fleet's state expires from Redis.
_TTL = 86_400

#: Seconds between the requests the whole fleet sends while its retry budget is drained (an
#: outage): one at a time, until one succeeds and everyone may send again.
PROBE_INTERVAL = 1.0

#: Before the fleet has booked any answer (and has no pace): seconds the first request may
#: take before another goes anyway, and how often at first the others ask whether it has
#: come (less often the longer they wait, four times less at most).
FIRST_WAIT = 1.0
FIRST_POLL = 0.02

_LUA_COMMON = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local key = KEYS[1]
local function num(field, default)
  local v = redis.call('HGET', key, field)
  if v then return tonumber(v) end
  return default
end
local function put(field, value)
  redis.call('HSET', key, field, string.format('%.17g', value))
end
"""

#: Arguments of one booked answer in a script's ARGV (see _RECORD_FN).
_RECORD_WIDTH = 13

# Books answers: record(o) reads the _RECORD_WIDTH arguments of one answer from ARGV[o + 1]
# on: status, ok, refill (the budget tokens a success gives back), has bucket headers,
# limit, remaining, reset, hint pause, window pause, min rate, budget capacity (-1: none),
# max pause, age (seconds between the answer and this call: successes are booked with the
# process's next call). records(o) books the count at ARGV[o] and the answers after it.
_RECORD_FN = """
local function record(o)
  local status = tonumber(ARGV[o + 1])
  local ok = ARGV[o + 2] == '1'
  local refilled = tonumber(ARGV[o + 3])
  local has = ARGV[o + 4] == '1'
  local limit, remaining = tonumber(ARGV[o + 5]), tonumber(ARGV[o + 6])
  local reset = tonumber(ARGV[o + 7])
  local hint, window = tonumber(ARGV[o + 8]), tonumber(ARGV[o + 9])
  local min_rate, budget_cap = tonumber(ARGV[o + 10]), tonumber(ARGV[o + 11])
  local max_pause = tonumber(ARGV[o + 12])
  local seen = now - tonumber(ARGV[o + 13])
  local function pause(seconds)
    if seconds > 0 then
      put('pause', math.max(num('pause', 0), now + math.min(seconds, max_pause)))
    end
  end
  local function tokens(refill, cap)
    return math.min(cap, (now - num('empty', 0)) * refill)
  end
  -- The server's bucket, as its rate-limit headers describe it (as Pacer.observe does).
  local function observe()
    if not has then return false end
    local known = num('refill', nil) ~= nil
    local scale = num('scale', 1)
    if reset > 0 and limit > remaining then
      local est = KEYS[2]
      redis.call('LPUSH', est, string.format('%.17g', (limit - remaining) / reset))
      redis.call('LTRIM', est, 0, 8)
      redis.call('EXPIRE', est, ARGV[1])
      local all = redis.call('LRANGE', est, 0, -1)
      local values = {}
      for i, v in ipairs(all) do values[i] = tonumber(v) end
      table.sort(values)
      put('refill', math.max(min_rate, values[math.floor(#values / 2) + 1] * scale))
    end
    local refill = num('refill', nil)
    if not refill then return false end
    put('scale', math.min(1, scale + 0.0005))
    local cap
    if not known then cap = limit else cap = math.min(num('cap', limit), limit) end
    put('cap', cap)
    -- Trust the lower count: no more tokens than the server says were left when it said so.
    put('empty', math.max(num('empty', 0), seen - remaining / refill))
    return true
  end
  if ok then
    -- Only when drained: a first write lets a script go on past maxmemory (Redis skips the
    -- out-of-memory check after it), which would hide a Redis refusing the fleet's writes.
    if redis.call('HEXISTS', key, 'drained') == 1 then redis.call('HDEL', key, 'drained') end
    if budget_cap >= 0 then
      put('budget', math.min(budget_cap, num('budget', budget_cap) + refilled))
    end
    observe()
    if not num('refill', nil) then pause(window) end
  elseif status == 429 then
    local refill = num('refill', nil)
    local before = refill and tokens(refill, num('cap', 1)) or 0
    if observe() or refill then
      refill = num('refill', nil)
      local cap = num('cap', 1)
      -- None left, whatever the headers say; a surprise halves the bursts allowed.
      put('empty', math.max(num('empty', 0), now))
      if before >= 1 then put('cap', math.max(1, math.min(cap, before, refill) / 2)) end
      if now >= num('slowed', -1) + 0.5 then
        put('slowed', now)
        put('scale', math.max(0.1, num('scale', 1) * 0.95))
        put('refill', math.max(min_rate, refill * 0.95))
      end
    end
  elseif status > 0 then
    observe()
  end
  if status > 0 and not ok then
    pause(hint)
    if not num('refill', nil) then pause(window) end
  end
  if status > 0 and redis.call('HEXISTS', key, 'contact') == 0 then put('contact', now) end
end
local function records(o)
  for i = 0, tonumber(ARGV[o]) - 1 do record(o + i * WIDTH) end
end
""".replace("WIDTH", str(_RECORD_WIDTH))

# ARGV: ttl, fixed rate (0: none), held (1: the caller holds a booked slot: check only the
# stop and the pause), seconds between probes while the budget is drained, then the answers
# to book first (records). Returns {wait, rate, stop reason, drained, contact}; a wait > 0
# with no pause to wait for is a slot booked that far ahead (the caller holds it and asks
# again, held, then). drained is 1 while the fleet's retry budget is drained (an outage),
# contact 1 once the fleet has booked an answer.
_RESERVE = (
    _LUA_COMMON
    + _RECORD_FN
    + """
records(5)
local fatal = redis.call('HGET', key, 'fatal')
if fatal then return {'0', '0', fatal, 0, 1} end
local fixed = tonumber(ARGV[2])
local refill = num('refill', nil)
local rate = fixed
if refill and (rate == 0 or refill < rate) then rate = refill end
local drained = redis.call('HEXISTS', key, 'drained')
local contact = redis.call('HEXISTS', key, 'contact')
local paused = num('pause', 0) - now
if paused > 0 then
  return {string.format('%.17g', paused), string.format('%.17g', rate), 'pause', drained, contact}
end
if ARGV[3] == '1' then return {'0', string.format('%.17g', rate), '', drained, contact} end
-- The retry budget ran out and no request has succeeded since: an outage. One request of
-- the whole fleet goes every ARGV[4] seconds to see whether it is over; the others wait.
if drained == 1 then
  local probe = num('probe', 0)
  if now < probe then
    return {string.format('%.17g', probe - now), string.format('%.17g', rate), 'pause', 1, contact}
  end
  put('probe', now + tonumber(ARGV[4]))
end
-- Nothing heard from the server yet (no answer booked, no pace): one request goes first and
-- the others wait for its answer (FIRST_WAIT s at most), rather than the whole fleet's
-- concurrency meeting a limit nobody knows yet.
-- They ask again after a quarter of the time waited so far (FIRST_POLL to 4 times that).
if fixed == 0 and not refill and contact == 0 then
  local first = num('first', 0)
  if now < first + FIRST_WAIT then
    local poll = math.min(4 * FIRST_POLL, math.max(FIRST_POLL, (now - first) / 4))
    return {string.format('%.17g', poll), string.format('%.17g', rate), 'pause', drained, 0}
  end
  put('first', now)
end
local start = now
if fixed > 0 then
  -- Slots booked at another rate (a fleet started again with another --rate) do not hold
  -- this one back.
  local slot = now
  if num('slot_rate', 0) == fixed then slot = math.max(num('slot', 0), now) end
  start = math.max(start, slot)
  put('slot', slot + 1 / fixed)
  put('slot_rate', fixed)
end
if refill then
  -- GCRA: the bucket holds cap requests and refills at refill per second. 'empty' is when
  -- it was (or will be) empty, so it holds (now - empty) * refill, at most cap; a theoretical
  -- arrival time that does not depend on cap, which 429s and headers lower. The request goes
  -- once its token is in the bucket; its slot is booked now (no herd of waiters).
  local cap = num('cap', 1)
  local period = 1 / refill
  local empty = math.max(num('empty', 0), now - cap * period)
  start = math.max(start, empty + period)
  put('empty', empty + period)
end
redis.call('EXPIRE', key, ARGV[1])
return {string.format('%.17g', start - now), string.format('%.17g', rate), '', drained, contact}
""".replace("FIRST_WAIT", repr(FIRST_WAIT)).replace("FIRST_POLL", repr(FIRST_POLL))
)

# ARGV: ttl, then the answers to book (records)
_RECORD = (
    _LUA_COMMON
    + _RECORD_FN
    + """
records(2)
redis.call('EXPIRE', key, ARGV[1])
return 1
"""
)

# ARGV: cost, budget capacity, ttl -> the cost taken, or -1 when too few tokens are left
_TAKE = (
    _LUA_COMMON
    + """
local cost, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local left = num('budget', cap)
-- EXPIRE after a write Redis checks against maxmemory (HSET): first, it would exempt the
-- script from that check.
if left < cost then
  put('drained', now)
  redis.call('EXPIRE', key, ARGV[3])
  return -1
end
put('budget', left - cost)
redis.call('EXPIRE', key, ARGV[3])
return cost
"""
)

# ARGV: tokens, budget capacity, ttl
_REFUND = (
    _LUA_COMMON
    + """
put('budget', math.min(tonumber(ARGV[2]), num('budget', tonumber(ARGV[2])) + tonumber(ARGV[1])))
redis.call('EXPIRE', key, ARGV[3])
return 1
"""
)


class TrafficStoppedError(RunListError):
    """Every client sharing a :class:`RedisTrafficControl` refuses to send: one of them got
    an answer no retry cures (a 401, or a 429 saying the quota is exhausted).

    ``reason`` is that answer's error. Fix its cause (the API key, the billing), then call
    :meth:`RedisTrafficControl.clear` once to let the fleet send again.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the fleet's traffic control is stopped: {reason}. Fix the cause (the API key, the "
            "quota), then call RedisTrafficControl.clear() to let the fleet send again"
        )
        #: The error that stopped the fleet.
        self.reason = reason


class RedisTrafficControl(TrafficControl):
    """A :class:`~aiorunlist.TrafficControl` shared through Redis by every process that
    uses the same Redis and ``name``: one ``Retry-After`` pause, one pace, one retry budget,
    and one stop when the API key or the quota fails.

    Pass it as ``Client(control=...)``. A request costs one round trip to Redis, timed by
    Redis's clock: its turn is asked for, and the successes answered since the process's
    previous call are booked, in one script (a pause, a failure and a success while the fleet
    is in an outage are booked at once). The pace is the server's rate limit as its
    ``x-ratelimit-*-requests`` headers describe it (a token bucket, shared by the fleet), and
    never above ``pacing``'s rate when one is given. Learning a pace from 429s without such
    headers is not shared: give servers that send none a ``Pacing`` rate.

    If Redis cannot be reached or refuses the fleet's commands, the control logs one warning
    and goes on in this process alone (a :class:`~aiorunlist.LocalTrafficControl`) at a fair
    share of the fleet's rate, ``rate / workers``, with a fair share of the retry budget.

    :param redis: a ``redis://`` URL, or a ``redis.asyncio.Redis`` client (not closed by
        :meth:`aclose`).
    :param name: the fleet: processes with the same name share their traffic state.
    :param pacing: a :class:`~aiorunlist.Pacing` with a fixed rate for the whole fleet.
    :param budget: the fleet's retry budget in tokens (``None``: no budget).
    :param workers: how many processes are expected to share the control (the fair share
        of the rate each one takes if Redis is lost).
    :raises ValueError: a setting out of range (before anything is sent).
    """

    def __init__(
        self,
        redis: str | aioredis.Redis,
        name: str = "default",
        *,
        pacing: Pacing | None = None,
        budget: int | None = 500,
        workers: int = 1,
    ) -> None:
        if not isinstance(name, str) or not name or any(c in name for c in "{}\n\r\x00"):
            raise ValueError(f"name must be a non-empty string without braces, got {name!r}")
        if pacing is not None and not isinstance(pacing, Pacing):
            raise TypeError(f"pacing must be an aiorunlist.Pacing, got {pacing!r}")
        if pacing is not None and pacing.adaptive:
            raise ValueError(
                "a fleet's control does not learn a pace from 429s (adaptive=True): give "
                "Pacing(requests_per_second=...) for servers without rate-limit headers"
            )
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget < 0
        ):
            raise ValueError(f"budget must be an integer >= 0 or None, got {budget!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        if isinstance(redis, str):
            if not redis.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(
                    "redis must be a redis://, rediss:// or unix:// URL or a redis.asyncio.Redis"
                )
            # No retries of its own: an unreachable Redis means the local fallback, at once.
            self._redis = aioredis.Redis.from_url(
                redis, socket_connect_timeout=2.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 0)
            )
            self._owned = True
        elif isinstance(redis, aioredis.Redis):
            self._redis = redis
            self._owned = False
        else:
            raise TypeError(f"redis must be a URL or a redis.asyncio.Redis, got {redis!r}")
        self.name = name
        self.pacing = pacing
        self.budget = budget
        self.workers = workers
        self._keys = [f"aiorunlist:fleet:{{{name}}}", f"aiorunlist:fleet:{{{name}}}:estimates"]
        self._fixed = pacing.requests_per_second if pacing and pacing.requests_per_second else 0.0
        self._min_rate = pacing.min_requests_per_second if pacing else 0.5
        self._costs = RetryBudget()  # the prices of a retry and the refill of a success
        self._reserve = self._redis.register_script(_RESERVE)
        self._record = self._redis.register_script(_RECORD)
        self._take = self._redis.register_script(_TAKE)
        self._refund = self._redis.register_script(_REFUND)
        #: The fleet's rate as last seen in Redis (requests per second; 0: unknown).
        self.rate = self._fixed
        #: The local control used since Redis was lost (``None``: Redis is in use).
        self.fallback: LocalTrafficControl | None = None
        self._stopped: str | None = None
        #: Slots booked ahead, by the task that will use them: when (monotonic) they come.
        self._held: weakref.WeakKeyDictionary[asyncio.Task[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        #: Successes not yet booked in Redis (they go with the next call), merged into one.
        self._pending: _Successes | None = None
        #: Redis's last word on whether the fleet's retry budget is drained (an outage).
        self._drained = False
        #: Redis's last word on whether the fleet has booked any answer yet: until it has,
        #: every answer is booked at once (the other processes wait for the first one).
        self._contact = False

    def __repr__(self) -> str:
        state = "local fallback" if self.fallback is not None else "shared"
        return f"RedisTrafficControl(name={self.name!r}, {state})"

    async def __aenter__(self) -> RedisTrafficControl:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Book the successes not yet booked, then close the Redis connections this control
        opened (not a client it was given)."""
        try:
            # Even when cancelled: the successes would be lost (2 s at most).
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                await self.flush()
        finally:
            if self._owned:
                await self._redis.aclose()

    async def flush(self) -> None:
        """Book in Redis the successes this process has not booked yet (each call to Redis
        does so on its way; this sends them alone)."""
        if self._pending is not None and self.fallback is None:
            await self._run(self._record, [_TTL, *self._take_pending()])

    def _take_pending(self) -> list[Any]:
        """The booking arguments of the successes not yet booked (a count, then each)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return [0]
        age = time.monotonic() - pending.seen
        return [
            1,
            *self._answer(
                200,
                ok=True,
                refill=pending.refill,
                bucket=pending.bucket,
                hint=0,
                window=0,
                age=age,
            ),
        ]

    def _answer(
        self,
        status: int,
        *,
        ok: bool,
        refill: int,
        bucket: tuple[int, int, float] | None,
        hint: float,
        window: float,
        age: float,
    ) -> list[Any]:
        """The arguments that book one answer (_RECORD_WIDTH of them)."""
        limit, remaining, reset = bucket if bucket is not None else (0, 0, 0.0)
        budget = -1 if self.budget is None else self.budget
        return [
            status,
            int(ok),
            refill,
            int(bucket is not None),
            limit,
            remaining,
            reset,
            hint,
            window,
            self._min_rate,
            budget,
            Pacer.MAX_PAUSE,
            max(0.0, age),
        ]

    async def clear(self) -> None:
        """Forget the fleet's state in Redis: the pause, the pace learned, the budget spent
        and a stop. Call it (in any one process) once the cause of a
        :class:`TrafficStoppedError` is fixed: every process of the fleet may send again."""
        await self._redis.delete(*self._keys)
        self._stopped = None

    def _fall_back(self, error: BaseException) -> LocalTrafficControl:
        if self.fallback is None:
            share = self.rate / self.workers if self.rate > 0 else None
            budget = None if self.budget is None else self.budget // self.workers
            self.fallback = LocalTrafficControl(
                Pacing(requests_per_second=share) if share else None, budget
            )
            logger.warning(
                "Redis cannot be used (%s: %s): fleet %r goes on with this process's own "
                "traffic control at %s",
                type(error).__name__,
                error,
                self.name,
                f"{share:.3g} requests/s (a share of {self.workers})" if share else "its own pace",
            )
        return self.fallback

    async def _run(self, script: Any, args: list[Any]) -> Any:
        try:
            return await script(keys=self._keys, args=args)
        except _UNREACHABLE as error:
            self._fall_back(error)
            return None

    async def reserve(self) -> float:
        """See :meth:`aiorunlist.TrafficControl.reserve`.

        A request that must wait for the pace gets its slot booked in Redis at once, and
        comes back only to check the fleet's pause (no herd of waiters asking again).

        :raises TrafficStoppedError: the fleet was stopped by a 401 or an exhausted quota.
        """
        if self.fallback is None:
            task = asyncio.current_task()
            held = self._held.pop(task, None) if task is not None else None
            args = [_TTL, self._fixed, int(held is not None), PROBE_INTERVAL]
            answer = await self._run(self._reserve, [*args, *self._take_pending()])
            if answer is not None:
                wait_text, rate, why, drained, contact = (_text(part) for part in answer)
                if why not in ("", "pause"):
                    self._stopped = why
                    raise TrafficStoppedError(why)
                self._stopped = None  # Redis's word wins: clear() in one process frees all
                self._drained = drained == "1"
                self._contact = contact == "1"
                self.rate = float(rate)
                wait = float(wait_text)
                if why == "pause":
                    if held is not None and task is not None:
                        self._held[task] = held  # the slot stays this request's
                    return wait
                if held is not None:
                    wait = max(0.0, held - time.monotonic())  # the slot booked before
                if wait > 0 and task is not None:
                    self._held[task] = time.monotonic() + wait
                return wait
        assert self.fallback is not None  # noqa: S101 - _run fell back
        if self._stopped is not None:
            raise TrafficStoppedError(self._stopped)
        return await self.fallback.reserve()

    async def record(
        self, status: int, headers: Mapping[str, str], *, ok: bool, spent: int = 0
    ) -> None:
        """See :meth:`aiorunlist.TrafficControl.record`.

        A success is booked with this process's next call to Redis (a success while the
        fleet's budget is drained, one whose headers say no request is left, and every failure
        are booked at once)."""
        if self.fallback is None:
            bucket = _bucket(headers)
            hint = 0.0
            if status in (429, 503):
                found = retry_hint(headers)
                if found is not None and found <= Pacer.MAX_PAUSE:
                    hint = found
            window = 0.0
            if headers.get("x-ratelimit-remaining-requests") == "0":
                try:
                    window = parse_go_duration(headers.get("x-ratelimit-reset-requests", ""))
                except ValueError:
                    window = 0.0
            window = window if math.isfinite(window) else 0.0
            refill = spent if spent > 0 else self._costs.success_refill
            if ok and not window and not self._drained and self._contact:
                now = time.monotonic()
                if self._pending is None:
                    self._pending = _Successes(refill, bucket, now)
                else:
                    self._pending.add(refill, bucket, now)
                return
            answer = self._answer(
                status,
                ok=ok,
                refill=refill if ok else 0,
                bucket=bucket,
                hint=hint,
                window=window,
                age=0,
            )
            waiting = self._take_pending()  # booked first: they came before this one
            if await self._run(self._record, [_TTL, waiting[0] + 1, *waiting[1:], *answer]):
                if ok:
                    self._drained = False  # a success ends the outage
                self._contact = self._contact or status > 0
                return
        assert self.fallback is not None  # noqa: S101 - _run fell back
        await self.fallback.record(status, headers, ok=ok, spent=spent)

    async def take_retry(self, *, connection_failure: bool) -> int | None:
        """See :meth:`aiorunlist.TrafficControl.take_retry`."""
        if self.budget is None:
            return 0
        if self.fallback is None:
            await self.flush()  # this process's successes refill the budget first
        if self.fallback is None:
            costs = self._costs
            cost = costs.timeout_cost if connection_failure else costs.retry_cost
            taken = await self._run(self._take, [cost, self.budget, _TTL])
            if taken is not None:
                if int(taken) < 0:
                    self._drained = True  # successes are booked at once until one is
                    return None
                return int(taken)
        assert self.fallback is not None  # noqa: S101 - _run fell back
        return await self.fallback.take_retry(connection_failure=connection_failure)

    async def refund(self, tokens: int) -> None:
        """See :meth:`aiorunlist.TrafficControl.refund`."""
        if self.budget is None or not tokens:
            return
        await self.flush()
        if self.fallback is None and await self._run(self._refund, [tokens, self.budget, _TTL]):
            return
        assert self.fallback is not None  # noqa: S101 - _run fell back
        await self.fallback.refund(tokens)

    async def halt(self, error: RunListError) -> None:
        """Stop every client of the fleet: their next :meth:`reserve` raises
        :class:`TrafficStoppedError` with this error as the reason."""
        reason = f"{type(error).__name__}: {error}"[:500]
        self._stopped = reason
        if self.fallback is None:
            try:
                await self._redis.hsetnx(self._keys[0], "fatal", reason)
            except _UNREACHABLE as exc:
                self._fall_back(exc)


class _Successes:
    """Successes a process has not booked in Redis yet, merged: the budget tokens they give
    back, and the latest bucket their headers described, with when it was seen."""

    __slots__ = ("bucket", "refill", "seen")

    def __init__(self, refill: int, bucket: tuple[int, int, float] | None, seen: float) -> None:
        self.refill = refill
        self.bucket = bucket
        self.seen = seen

    def add(self, refill: int, bucket: tuple[int, int, float] | None, seen: float) -> None:
        self.refill += refill
        if bucket is not None:
            self.bucket, self.seen = bucket, seen


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bucket(headers: Mapping[str, str]) -> tuple[int, int, float] | None:
    """The server's bucket from its headers: (limit, remaining, reset), or ``None`` when the
    headers do not describe one (as :meth:`aiorunlist.Pacer.observe` reads them)."""
    try:
        limit = int(headers["x-ratelimit-limit-requests"])
        remaining = int(headers["x-ratelimit-remaining-requests"])
        reset = parse_go_duration(headers["x-ratelimit-reset-requests"])
    except (KeyError, ValueError):
        return None
    if limit <= 0 or remaining < 0 or not math.isfinite(reset):
        return None
    return limit, remaining, reset
