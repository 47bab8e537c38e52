"""Changes proposed for files this benchmark does not own, patched in here only to measure them.

``python benchmarks/bench.py --proposals`` adds these contenders next to the others, so each
proposal is judged by ratios within the same rounds (docs/performance.md has the figures):

* ``aiorunlist-gc-paused``: pause the cyclic garbage collector while ``_protocol.read_page``
  decodes and structures a page, so the ~8 decoded containers per run die before any
  collection has to look at them (the collector runs right after, on the typed page only);
* ``aiorunlist-lazy-pages``: that, and structure each page in the consumer
  (``RunStream.__anext__``) right before its runs are handed out, not in the worker that
  fetched it: the pipeline between workers and consumer then holds response bytes (which the
  collector does not track), not ``2 x concurrency`` pages of typed runs waiting their turn.
  The worker waits for the consumer's verdict on its page (a future) before it asks for the
  next one, so a malformed page still fails (or could be retried) in the worker.

These patch private internals as they were when written; if those change, the patch refuses
to run (``ProposalUnavailable``) rather than measure something else. They are prototypes: the
lazy one handles ``runs_many`` only (not ``pages_many``) and does not retry a malformed body.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any


class ProposalUnavailable(RuntimeError):
    """The internals a proposal patches are not (or no longer) there."""


def _gc_paused(fn: Callable[..., Any]) -> Callable[..., Any]:
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return paused


def gc_paused() -> None:
    """Patch ``aiorunlist._client.read_page`` to run with the cyclic GC paused."""
    from aiorunlist import _client

    if not callable(getattr(_client, "read_page", None)):
        raise ProposalUnavailable("aiorunlist._client.read_page is gone")
    _client.read_page = _gc_paused(_client.read_page)  # type: ignore[assignment]


class _Raw:
    __slots__ = ("body", "headers", "status", "thread_id")

    def __init__(self, status: int, headers: Any, body: bytes, thread_id: str) -> None:
        self.status, self.headers, self.body, self.thread_id = status, headers, body, thread_id


class _Lazy:
    __slots__ = ("future", "raw", "walk")

    def __init__(self, raw: _Raw, future: asyncio.Future[Any], walk: Any) -> None:
        self.raw, self.future, self.walk = raw, future, walk


def lazy_pages() -> None:
    """Patch the fan-out to structure pages in the consumer (see the module docstring)."""
    from aiorunlist import _client, _fanout
    from aiorunlist._protocol import PageWalk, check_list_args

    for owner, name in (
        (_client, "read_page"),
        (_fanout, "ThreadPage"),
        (getattr(_fanout, "_FanOut", None), "walk"),
        (_fanout.RunStream, "_next_page"),
    ):
        if owner is None or not hasattr(owner, name):
            raise ProposalUnavailable(f"{owner!r}.{name} is gone")
    read_page = _gc_paused(_client.read_page)

    def read_page_raw(status: int, headers: Any, body: bytes, *, thread_id: str) -> Any:
        if not 200 <= status < 300:
            return read_page(status, headers, body, thread_id=thread_id)  # raises the error
        return _Raw(status, headers, body, thread_id)

    async def walk(self: Any, out: Any, item: Any) -> None:
        if not isinstance(item, str):
            raise ProposalUnavailable("the lazy-pages prototype lists plain thread ids only")
        check_list_args(item, limit=self.page_size, order=self.order, after=None, before=None)
        cursor = PageWalk(item, after=None, before=None)
        fetch = self.client._fetch_page
        while True:
            raw = await fetch(item, self.page_size, self.order, cursor.after, cursor.before)
            future = asyncio.get_running_loop().create_future()
            await out.send(_fanout.ThreadPage(item, _Lazy(raw, future, cursor), False))
            page = await future  # the consumer's verdict on the page
            if not cursor.advance(page):
                return

    async def anext(self: Any) -> Any:
        try:
            return next(self._current)
        except StopIteration:
            pass
        while True:
            runs = (await self._next_page()).runs
            if runs.__class__ is _Lazy:
                raw = runs.raw
                try:
                    page = read_page(raw.status, raw.headers, raw.body, thread_id=raw.thread_id)
                except Exception as exc:  # handed to the worker, which raises it
                    runs.future.set_exception(exc)
                    continue
                runs.future.set_result(page)
                runs = runs.walk.ordered(page)
            if runs:
                it = iter(runs)
                self._current = it
                return next(it)

    _client.read_page = read_page_raw  # type: ignore[assignment]
    _fanout._FanOut.walk = walk  # type: ignore[method-assign]
    _fanout.RunStream.__anext__ = anext  # type: ignore[method-assign]


#: contender name -> the patch that turns plain aiorunlist into it
PATCHES: dict[str, Callable[[], None]] = {
    "aiorunlist-gc-paused": gc_paused,
    "aiorunlist-lazy-pages": lazy_pages,
}
