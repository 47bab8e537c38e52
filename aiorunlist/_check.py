"""Diagnose an Assistants-compatible server: how it pages one thread's runs.

:func:`check_server` is a read-only probe: it lists one thread in a few ways (both orders,
small limits, from cursors) and asks for an unknown thread, then compares the answers with
each other. Behind ``aiorunlist check-server``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs
import orjson

from ._protocol import PageWalk, check_thread_id, make_status_error, shape_error
from ._transport import Response
from .exceptions import APIStatusError

if TYPE_CHECKING:
    from ._client import Checked, Client

__all__ = ["CHECK_NAMES", "MIN_RUNS", "ServerCheck", "ServerReport", "check_server"]

#: The checks of a :class:`ServerReport`, in the order they are reported.
CHECK_NAMES = (
    "limit",
    "order",
    "after",
    "before",
    "has_more",
    "first_last_id",
    "request_id",
    "unknown_thread",
    "error_shape",
    "stable_pages",
)

#: The fewest runs a thread needs for the checks to mean anything.
MIN_RUNS = 4

#: The page sizes ``stable_pages`` walks the thread with, and the most runs it walks.
_SMALL_PAGES = (1, 2, 3)
_WALK_CAP = 60

#: The probe's page size for whole listings (the API's maximum).
_FULL = 100


@attrs.frozen
class ServerCheck:
    """One check of :func:`check_server`: its name (see ``ServerReport.CHECK_NAMES``), whether the
    server behaved as the API does (``ok``), and what was seen."""

    check: str
    ok: bool
    detail: str


@attrs.frozen
class ServerReport:
    """What :func:`check_server` found about a server, for one thread.

    ``checks`` has one :class:`ServerCheck` per name of ``CHECK_NAMES`` (none when the
    thread has fewer than 4 runs: ``enough_runs`` is then false and ``note``
    says so). ``recommended`` holds the client settings that work with this server
    (``order``, ``page_size``, and ``cursors: False`` when listing from a cursor does not).
    """

    #: The names of the checks, in the order they are reported.
    CHECK_NAMES: ClassVar[tuple[str, ...]] = CHECK_NAMES

    thread_id: str
    base_url: str
    runs: int
    checks: tuple[ServerCheck, ...]
    recommended: Mapping[str, Any]
    note: str | None = None

    @property
    def enough_runs(self) -> bool:
        """Whether the thread had enough runs to check anything."""
        return self.runs >= MIN_RUNS

    @property
    def ok(self) -> bool:
        """Whether every check passed (and there were enough runs to check)."""
        return self.enough_runs and all(check.ok for check in self.checks)

    @property
    def quirks(self) -> tuple[ServerCheck, ...]:
        """The checks that found a quirk."""
        return tuple(check for check in self.checks if not check.ok)

    def __getitem__(self, name: str) -> ServerCheck:
        for check in self.checks:
            if check.check == name:
                return check
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """``{"checks": [{"check", "ok", "detail"}, ...], "recommended": {...}}`` and the
        thread, base URL, run count and note."""
        return {
            "thread_id": self.thread_id,
            "base_url": self.base_url,
            "runs": self.runs,
            "note": self.note,
            "checks": [attrs.asdict(check) for check in self.checks],
            "recommended": dict(self.recommended),
        }


@attrs.frozen
class _Answer:
    """One probe's answer: a decoded page (``body``), or the error it was."""

    status: int
    headers: Mapping[str, str]
    body: Mapping[str, Any] | None = None
    error: APIStatusError | None = None
    #: Whether the body was a JSON object with a ``data`` array.
    listed: bool = False

    @property
    def data(self) -> list[dict[str, Any]]:
        data = self.body.get("data") if self.body is not None else None
        return [run for run in data if isinstance(run, dict)] if isinstance(data, list) else []

    @property
    def ids(self) -> list[str]:
        return [str(run.get("id")) for run in self.data]

    @property
    def has_more(self) -> object:
        """``True``/``False`` as sent, or ``None`` when absent."""
        return self.body.get("has_more") if self.body is not None else None


class _Probe:
    def __init__(self, client: Client, thread_id: str) -> None:
        self.client = client
        self.thread_id = thread_id
        self.answers: list[_Answer] = []

    async def get(
        self,
        *,
        limit: int,
        order: str,
        after: str | None = None,
        before: str | None = None,
        thread_id: str | None = None,
    ) -> _Answer:
        """One request, through the client (its retries included), without the page checks
        of a listing: the answer as the server gave it."""
        tid = self.thread_id if thread_id is None else thread_id
        seen: list[Response] = []

        async def accept(walk: PageWalk, response: Response) -> Checked:
            seen.append(response)
            if response.status >= 400:
                raise make_status_error(
                    response.status, response.headers, response.body, thread_id=tid
                )
            return None, [], False

        walk = PageWalk(tid, after=after, before=before)
        try:
            await self.client._fetch(walk, limit, order, accept)
        except APIStatusError as exc:
            answer = _Answer(exc.status_code, exc.headers, error=exc)
        else:
            response = seen[-1]
            try:
                body = orjson.loads(response.body)
            except orjson.JSONDecodeError:
                body = None
            listed = isinstance(body, dict) and isinstance(body.get("data"), list)
            if not isinstance(body, dict):
                body = {"data": []}
            answer = _Answer(response.status, response.headers, body=body, listed=listed)
        self.answers.append(answer)
        return answer


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _short(ids: Sequence[str], at_most: int = 3) -> str:
    shown = ", ".join(ids[:at_most])
    return shown + (f" and {len(ids) - at_most} more" if len(ids) > at_most else "")


def _created(run: Mapping[str, Any]) -> object:
    return run.get("created_at")


def _cursor_index(listing: Sequence[Mapping[str, Any]]) -> int:
    """A run to use as cursor: one that shares its ``created_at`` with the next run if any
    (where a cursor that compares the wrong thing shows), else one in the middle."""
    for k in range(len(listing) - 1):
        if k > 0 and _created(listing[k]) == _created(listing[k + 1]):
            return k
    return max(0, len(listing) // 2 - 1)


def _compare(
    got: Sequence[str],
    expected: Sequence[str],
    cursor: str,
    listing: Sequence[Mapping[str, Any]],
    *,
    other_side: Sequence[str],
) -> str | None:
    """What is wrong with ``got`` (``None`` if nothing): the runs of ``expected``, in order."""
    if list(got) == list(expected):
        return None
    by_id = {str(run.get("id")): run for run in listing}
    problems = []
    if cursor in got:
        problems.append("the page includes the cursor run itself (the cursor is ignored)")
    back = [i for i in got if i in other_side and i != cursor]
    if back:
        problems.append(f"{len(back)} run(s) from the other side of the cursor ({_short(back)})")
    missing = [i for i in expected if i not in got]
    if missing:
        at = _created(by_id.get(cursor, {}))
        tied = sum(1 for i in missing if _created(by_id.get(i, {})) == at)
        why = f", {tied} of them created in the cursor's second" if tied else ""
        problems.append(f"{len(missing)} run(s) missing ({_short(missing)}{why})")
    if not problems:
        problems.append("the right runs in another order")
    return "; ".join(problems)


class _Checker:
    def __init__(self, probe: _Probe) -> None:
        self.probe = probe
        self.results: dict[str, ServerCheck] = {}
        self.unstable: set[str] = set()  # orders whose cursors misbehave

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.results[name] = ServerCheck(name, ok, detail)

    async def run(self) -> ServerReport:
        probe = self.probe
        asc = await probe.get(limit=_FULL, order="asc")
        if asc.error is not None:
            raise asc.error
        if not asc.listed:
            raise shape_error(
                probe.thread_id,
                asc.status,
                asc.headers.get("x-request-id"),
                "no JSON object with a 'data' array; is base_url pointing at the API?",
            )
        desc = await probe.get(limit=_FULL, order="desc")
        if desc.error is not None:
            raise desc.error
        client = probe.client
        n = len(set(asc.ids))
        if n < MIN_RUNS:
            note = (
                f"thread {probe.thread_id!r} has {n} run(s) (or the server answers an unknown "
                f"thread with an empty list); check-server needs a thread with at least "
                f"{MIN_RUNS} runs, ideally 10 to 50 with some created in the same second"
            )
            return ServerReport(probe.thread_id, client.base_url, n, (), {}, note)
        listings = {"asc": asc, "desc": desc}
        complete = asc.has_more is not True
        small = await probe.get(limit=2, order="asc")
        self.check_limit(small, n)
        self.check_order(asc, desc, complete)
        for name in ("after", "before"):
            await self.check_cursor(name, listings, complete)
        self.check_has_more(small, asc, n)
        self.check_page_ids([asc, desc, small])
        unknown = await self.check_unknown_thread()
        await self.check_error_shape(unknown)
        await self.check_stable_pages(listings, complete)
        self.check_request_id()
        checks = tuple(self.results[name] for name in CHECK_NAMES)
        return ServerReport(probe.thread_id, client.base_url, n, checks, self.recommend())

    def check_limit(self, small: _Answer, n: int) -> None:
        got = len(small.data)
        if got == 2:
            self.add("limit", True, f"limit=2 gives 2 of the thread's {n} runs")
        else:
            self.add("limit", False, f"limit=2 gives {got} runs: 'limit' is ignored")

    def check_order(self, asc: _Answer, desc: _Answer, complete: bool) -> None:
        a, d = asc.ids, desc.ids
        if a == d:
            self.add("order", False, "order=desc lists the runs as order=asc does: it is ignored")
        elif complete and d == a[::-1]:
            self.add("order", True, "order=desc lists the runs of order=asc in reverse")
        elif complete and sorted(a) == sorted(d):
            self.add(
                "order",
                False,
                "order=desc is not order=asc reversed: runs created in the same second keep "
                "their order both ways, so a cursor may not split them the same way",
            )
        elif not complete and a[:1] != d[:1]:
            self.add("order", True, "order=desc starts where order=asc ends")
        else:
            self.add("order", False, "order=asc and order=desc list different runs")

    async def check_cursor(
        self, name: str, listings: Mapping[str, _Answer], complete: bool
    ) -> None:
        problems = []
        for order, listing in listings.items():
            runs, ids = listing.data, listing.ids
            if len(ids) < 2:
                problems.append(f"order={order} lists {len(ids)} run(s): no cursor to try")
                self.unstable.add(order)
                continue
            k = _cursor_index(runs)
            if name == "after":
                cursor = ids[k]
                expected, other = ids[k + 1 :], ids[: k + 1]
                answer = await self.probe.get(limit=_FULL, order=order, after=cursor)
            else:
                cursor = ids[k + 1]
                expected, other = ids[: k + 1], ids[k + 1 :]
                answer = await self.probe.get(limit=_FULL, order=order, before=cursor)
            if answer.error is not None:
                problems.append(f"order={order}: HTTP {answer.status} for {name}={cursor}")
                self.unstable.add(order)
                continue
            got = answer.ids
            if not complete and name == "after":
                got = got[: len(expected)]
            wrong = _compare(got, expected, cursor, runs, other_side=other)
            if wrong is not None:
                problems.append(f"order={order}, {name}={cursor}: {wrong}")
                self.unstable.add(order)
        if problems:
            self.add(name, False, "; ".join(problems))
        else:
            what = "follow" if name == "after" else "precede"
            self.add(name, True, f"exactly the runs that {what} the cursor, in both orders")

    def check_has_more(self, small: _Answer, full: _Answer, n: int) -> None:
        if small.body is None or "has_more" not in small.body:
            self.add(
                "has_more",
                False,
                "has_more is never sent: a listing ends after its first page, so page_size "
                "decides how many runs are listed",
            )
        elif len(small.data) >= n:
            self.add(
                "has_more",
                True,
                f"every run came in one page with has_more {_json(small.has_more)}, which is right "
                "for that page (whether it is computed cannot be told)",
            )
        elif small.has_more is not True:
            self.add(
                "has_more",
                False,
                f"has_more is {_json(small.has_more)} on a page of {len(small.data)} of {n} runs: "
                "a listing ends after its first page",
            )
        elif full.has_more is True and len(full.data) < _FULL:
            self.add("has_more", False, "has_more is true on the last page")
        else:
            self.add("has_more", True, "true on a partial page, false on the last")

    def check_page_ids(self, answers: Sequence[_Answer]) -> None:
        for answer in answers:
            body = answer.body or {}
            data = answer.ids
            if "first_id" not in body or "last_id" not in body:
                self.add("first_last_id", False, "first_id/last_id are not sent")
                return
            if data and (body["first_id"] != data[0] or body["last_id"] != data[-1]):
                self.add(
                    "first_last_id",
                    False,
                    f"first_id/last_id ({body['first_id']}, {body['last_id']}) are not the "
                    f"page's first and last runs ({data[0]}, {data[-1]})",
                )
                return
        self.add("first_last_id", True, "present and equal to each page's first and last run")

    async def check_unknown_thread(self) -> _Answer:
        tid = f"thread_aiorunlist_check_{os.urandom(6).hex()}"
        answer = await self.probe.get(limit=1, order="desc", thread_id=tid)
        if answer.status == 404:
            self.add("unknown_thread", True, "an unknown thread answers 404")
        elif answer.error is None and not answer.data:
            self.add(
                "unknown_thread",
                False,
                "an unknown thread answers 200 with an empty list: a mistyped thread id "
                "looks like a thread without runs",
            )
        else:
            self.add("unknown_thread", False, f"an unknown thread answers HTTP {answer.status}")
        return answer

    async def check_error_shape(self, unknown: _Answer) -> None:
        errors = [unknown] if unknown.error is not None else []
        bad_limit = await self.probe.get(limit=0, order="desc")
        if bad_limit.error is not None:
            errors.append(bad_limit)
        if not errors:
            self.add(
                "error_shape",
                False,
                "no probe got an error answer (an unknown thread and limit=0 both answered "
                "200), so the error shape is unknown",
            )
            return
        odd = []
        for answer in errors:
            assert answer.error is not None  # noqa: S101 - filtered above
            body = answer.error.body
            error = body.get("error") if isinstance(body, dict) else None
            if not (isinstance(error, dict) and isinstance(error.get("message"), str)):
                shown = orjson.dumps(body).decode() if body is not None else "an empty body"
                odd.append(f"HTTP {answer.status}: {shown[:120]}")
        if odd:
            self.add(
                "error_shape",
                False,
                'error bodies are not {"error": {"message": ...}} (aiorunlist reads their '
                "message all the same): " + "; ".join(odd),
            )
        else:
            self.add("error_shape", True, 'errors are {"error": {"message": ...}}')

    async def check_stable_pages(self, listings: Mapping[str, _Answer], complete: bool) -> None:
        problems = []
        for order, listing in listings.items():
            reference = listing.ids
            for size in _SMALL_PAGES:
                found = await self._walk(order, size)
                counts = Counter(found)
                repeated = [i for i, c in counts.items() if c > 1]
                covered = [i for i in reference if i in counts]
                last = reference.index(covered[-1]) if covered else -1
                span = reference if complete and len(found) < _WALK_CAP else reference[: last + 1]
                skipped = [i for i in span if i not in counts]
                if repeated or skipped:
                    parts = []
                    if repeated:
                        parts.append(f"{len(repeated)} run(s) listed twice ({_short(repeated)})")
                    if skipped:
                        parts.append(f"{len(skipped)} run(s) skipped ({_short(skipped)})")
                    problems.append(f"order={order}, page size {size}: " + ", ".join(parts))
                    self.unstable.add(order)
        if problems:
            self.add("stable_pages", False, "pages overlap or skip runs: " + "; ".join(problems))
        else:
            sizes = ", ".join(map(str, _SMALL_PAGES))
            self.add(
                "stable_pages", True, f"no overlap, no gap in either order (page sizes {sizes})"
            )

    async def _walk(self, order: str, size: int) -> list[str]:
        """The run ids of a raw walk (no checks: repeats are kept), up to :data:`_WALK_CAP`."""
        found: list[str] = []
        after: str | None = None
        cap = _WALK_CAP
        for _ in range(cap + 2):
            answer = await self.probe.get(limit=size, order=order, after=after)
            if answer.error is not None:
                break
            ids = answer.ids
            fresh = [i for i in ids if i not in found]
            found.extend(ids)
            more = answer.has_more
            if more is None:  # never sent: go on while pages are full
                more = len(ids) >= size
            if not more or not ids or not fresh or len(found) >= cap:
                break
            after = ids[-1]
        return found

    def check_request_id(self) -> None:
        answers = self.probe.answers
        with_id = sum(1 for a in answers if a.headers.get("x-request-id"))
        if with_id == len(answers):
            self.add("request_id", True, f"every answer ({len(answers)}) had an x-request-id")
        elif with_id == 0:
            self.add(
                "request_id",
                False,
                f"none of {len(answers)} answers had an x-request-id: errors and logs carry no "
                "request id to quote",
            )
        else:
            self.add(
                "request_id", False, f"{with_id} of {len(answers)} answers had an x-request-id"
            )

    def recommend(self) -> dict[str, Any]:
        results = self.results
        recommended: dict[str, Any] = {"page_size": _FULL}
        if "desc" in self.unstable and "asc" not in self.unstable:
            recommended["order"] = "asc"
        elif self.unstable >= {"asc", "desc"} or (self.unstable and not results["order"].ok):
            recommended["cursors"] = False
        return recommended


async def check_server(client: Client, thread_id: str) -> ServerReport:
    """Diagnose how the server behind ``client`` pages the runs of ``thread_id``.

    A read-only probe (a few hundred requests at most, through the client, its retries
    included) of one thread that has at least 4 runs, ideally 10 to 50, some
    created in the same second. It checks ``limit``, ``order``, the ``after`` and ``before``
    cursors, ``has_more``, ``first_id``/``last_id``, request ids, the answer for an unknown
    thread, the error body shape, and whether small pages overlap or skip runs, and
    recommends client settings. Usable from a health check::

        report = await aiorunlist.check_server(client, "thread_abc123")
        if not report.ok:
            for check in report.quirks:
                print(check.check, check.detail)

    :raises ValueError: a malformed thread id (before anything is sent).
    :raises RunListError: the thread could not be listed at all (unreachable server, refused
        key, unknown thread).
    """
    check_thread_id(thread_id)
    return await _Checker(_Probe(client, thread_id)).run()
