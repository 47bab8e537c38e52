"""The fan-out of :meth:`Client.pages_many`, with each page's runs left as the server's JSON.

A sink stores the server's JSON (``raw``) and columns read from it: typing every run first, as
:class:`~aiorunlist.PageStream` does, would cost the export more time than storing it. The
pages are checked as usual (shape, cursors); each run must be a JSON object with a string
``id`` (what it is stored by), or its thread fails like on a malformed run.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from contextlib import AbstractAsyncContextManager

from .._client import Client
from .._fanout import PageStream, ThreadPage, ThreadStart, fan_out
from .._protocol import Order, shape_error

__all__ = ["RawPageStream", "raw_pages_many"]


class RawPageStream(PageStream):
    """:class:`~aiorunlist.PageStream` whose pages carry ``raw`` runs only (``runs`` empty)."""

    __slots__ = ()

    async def _next_page(self) -> ThreadPage:
        while True:
            item = await self._next_item()
            if item.walk is None:
                return ThreadPage(item.thread_id, (), True, item.error)
            accepted = self._accept(item)
            if accepted is None:
                continue
            raw, items, last = accepted
            for run in items:
                if not isinstance(run, dict) or not isinstance(run.get("id"), str):
                    cause = TypeError(f"a run without a string 'id': {str(run)[:100]}")
                    error = shape_error(item.thread_id, raw.status, raw.request_id, cause)
                    error.__cause__ = cause
                    if not self._collect:
                        raise error
                    self.failures[item.thread_id] = error
                    self._dropped.add(item.thread_id)
                    return ThreadPage(item.thread_id, (), True, error)
            if last:
                self.threads_done += 1
            return ThreadPage(item.thread_id, (), last, raw=items)


def raw_pages_many(
    client: Client,
    thread_ids: Iterable[str | ThreadStart] | AsyncIterable[str | ThreadStart],
    *,
    concurrency: int = 16,
    order: Order = "desc",
    page_size: int = 100,
) -> AbstractAsyncContextManager[RawPageStream]:
    """:meth:`Client.pages_many` with ``on_error="collect"``, pages of raw runs."""
    return fan_out(
        client,
        thread_ids,
        RawPageStream,
        concurrency=concurrency,
        order=order,
        page_size=page_size,
        on_error="collect",
    )
