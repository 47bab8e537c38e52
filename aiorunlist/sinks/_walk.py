"""Where each thread's listing starts, given what the sink holds, and what each page writes.

A thread the sink does not know, or holds as ``pending`` or ``failed``, is listed on from its
``cursor`` (from the start when there is none). A ``done`` thread is synced: only what is
newer than its ``head`` is listed (``after=head`` in ascending order, ``before=head`` in
descending order, which the client walks nearest-first), or, when it holds runs in a status
that was not final, everything from the newest run older than the oldest such run
(:attr:`ThreadState.refresh_from`), so that their new status lands too.

Every page then becomes one :class:`PageWrite`: the runs, and the thread's new cursor and head,
compare-and-set against the state the walk started from (and then against its own last write).
"""

from __future__ import annotations

from typing import Literal

import attrs

from .._fanout import ThreadPage, ThreadStart, shared_raw
from ._base import PageWrite, ThreadState, ThreadStateName

__all__ = ["Walk", "plan_walk"]

#: ``list``: a first (or resumed) listing, the cursor advances page by page.
#: ``sync``: a done thread, listed nearest-first from its head (or refresh point).
#: ``resync``: a done thread listed again in full, newest first; its head moves at the end.
WalkKind = Literal["list", "sync", "resync"]


@attrs.define
class Walk:
    """One thread's listing in progress: the state it was started from, updated as pages
    are stored; ``lost`` once another writer got there first (its later pages are dropped)."""

    thread_id: str
    kind: WalkKind
    order: str
    expected: ThreadState | None
    #: The name this walk's writes carry (``PageWrite.writer``).
    writer: str | None = None
    newest: str | None = None
    lost: bool = False

    def page_write(self, page: ThreadPage) -> PageWrite | None:
        """The write for one page of this thread, or ``None`` when it changes nothing."""
        raw = [run for run in shared_raw(page) if isinstance(run.get("id"), str)]
        ids: list[str] = [run["id"] for run in raw]
        old = self.expected
        cursor = old.cursor if old is not None else None
        head = old.head if old is not None else None
        state: ThreadStateName
        error = None if page.error is None else " ".join(str(page.error).split())
        if self.kind == "list":
            if error is not None:
                state = "failed"
            else:
                state = "done" if page.last else "pending"
                if ids:
                    cursor = ids[-1]
                    if self.order == "asc":
                        head = cursor
                    elif head is None:
                        head = ids[0]
        else:
            state = "done"
            if self.kind == "sync":
                if ids:
                    head = ids[-1]
                    if self.order == "asc":
                        cursor = head
            else:  # resync: newest first; the head moves once everything below it is stored
                if self.newest is None and ids:
                    self.newest = ids[0]
                if page.last and error is None and self.newest is not None:
                    head = self.newest
        if (
            not raw
            and old is not None
            and (old.state, old.cursor, old.head, old.last_error) == (state, cursor, head, error)
        ):
            return None
        return PageWrite(self.thread_id, raw, old, state, cursor, head, error, self.writer)

    def written(self, write: PageWrite) -> None:
        """Record that ``write`` was stored: the next page compares against it."""
        self.expected = ThreadState(
            write.thread_id,
            write.state,
            write.cursor,
            write.head,
            last_error=write.last_error,
            writer=write.writer,
        )


def plan_walk(
    thread_id: str, state: ThreadState | None, order: str, writer: str | None = None
) -> tuple[str | ThreadStart, Walk]:
    """The item for :meth:`Client.pages_many` that lists ``thread_id`` from where the sink's
    ``state`` of it says, and the walk that turns its pages into writes (named ``writer``)."""
    if state is None or state.state != "done":
        cursor = None if state is None else state.cursor
        start: str | ThreadStart = (
            thread_id if cursor is None else ThreadStart(thread_id, after=cursor)
        )
        return start, Walk(thread_id, "list", order, state, writer)
    point = state.head if state.refresh_from is None else state.refresh_from or None
    if point is None:
        kind: WalkKind = "sync" if order == "asc" else "resync"
        return thread_id, Walk(thread_id, kind, order, state, writer)
    if order == "asc":
        return ThreadStart(thread_id, after=point), Walk(thread_id, "sync", order, state, writer)
    return ThreadStart(thread_id, before=point), Walk(thread_id, "sync", order, state, writer)
