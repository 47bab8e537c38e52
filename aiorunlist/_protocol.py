"""The sans-I/O half of the client: build a request, read a response, decide about retries.

Nothing here touches the network or the event loop, so all of it is tested without either.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote, urlencode, urljoin, urlsplit

import orjson
from yarl import URL

from ._convert import failing_index, structure_page_body, structure_run
from ._models import Run, RunPage
from ._text import shown
from ._version import __version__
from .exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaginationError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    UnprocessableEntityError,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "USER_AGENT",
    "Order",
    "PageWalk",
    "QuirkNotes",
    "accept_page",
    "build_headers",
    "build_url",
    "check_header",
    "check_list_args",
    "check_order",
    "check_page_size",
    "check_thread_id",
    "decode_page",
    "error_message",
    "is_loopback_host",
    "make_status_error",
    "normalize_base_url",
    "parse_go_duration",
    "redirect_target",
    "shape_error",
    "structure_runs",
    "to_run_page",
    "which_run",
]

logger = logging.getLogger("aiorunlist")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
USER_AGENT = f"aiorunlist/{__version__}"

#: The order of a listing: ``"desc"`` (newest first, the default) or ``"asc"``.
Order = Literal["asc", "desc"]

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}

#: Statuses worth another try: request timeout, conflict, rate limit, and server errors.
RETRYABLE_STATUSES = frozenset({408, 409, 429})


# --- arguments -----------------------------------------------------------------------------------


def normalize_base_url(base_url: str) -> str:
    """Check a base URL and return it without a trailing slash.

    Raises ``ValueError`` naming what is wrong.
    """
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string such as {DEFAULT_BASE_URL!r}")
    base_url = base_url.strip()  # a trailing newline from a file or an environment variable
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in base_url):
        raise ValueError(
            f"base_url {base_url!r} has whitespace or a control character inside it (a copy-paste "
            "gone wrong?); pass the bare URL"
        )
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url {base_url!r} is not an http(s) URL with a host; "
            f"pass something like {DEFAULT_BASE_URL!r} or 'http://127.0.0.1:8080/v1'"
        )
    if "?" in base_url or "#" in base_url:
        # Even an empty one ("/v1?", "/v1#"): the path of every request would be cut there.
        raise ValueError(
            f"base_url {base_url!r} must not have a query or fragment ('?' or '#'); "
            "pass just the API root, such as 'https://api.openai.com/v1'"
        )
    if parts.username or parts.password:
        raise ValueError(
            "base_url must not carry credentials; pass the key as api_key (or OPENAI_API_KEY)"
        )
    try:
        parts.port  # noqa: B018 - raises for a port out of range
    except ValueError:
        raise ValueError(
            f"base_url {base_url!r} has an invalid port; use a number from 1 to 65535"
        ) from None
    return base_url.rstrip("/")


def is_loopback_host(host: str | None) -> bool:
    """Whether ``host`` names this machine: ``localhost``, or a loopback IP (127/8, ``::1``).

    Names that merely start with ``127.`` (``127.0.0.1.example.com``) are not loopback.
    """
    if host is None:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_list_args(
    thread_id: object,
    *,
    order: object,
    after: object = None,
    before: object = None,
) -> None:
    """Raise ``ValueError``/``TypeError`` for a thread id, order or cursor no server would accept.

    Runs before anything is sent, so a bad call never costs a request.
    """
    check_thread_id(thread_id)
    check_order(order)
    for name, cursor in (("after", after), ("before", before)):
        if cursor is not None and (not isinstance(cursor, str) or not cursor):
            raise ValueError(
                f"{name} must be a run id such as 'run_abc123' or None, got {shown(cursor)}"
            )


def check_thread_id(thread_id: object) -> None:
    """Raise ``TypeError``/``ValueError`` for what cannot be a thread id."""
    if not isinstance(thread_id, str):
        raise TypeError(
            f"thread_id must be a string such as 'thread_abc123', not {shown(thread_id)}"
        )
    if not thread_id or not thread_id.strip():
        raise ValueError("thread_id must not be empty; pass an id such as 'thread_abc123'")
    if thread_id in (".", ".."):
        raise ValueError(f"thread_id {shown(thread_id)} is not a thread id")


def check_order(order: object) -> None:
    """Raise ``ValueError`` unless ``order`` is ``"asc"`` or ``"desc"``."""
    if order not in ("asc", "desc"):
        raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")


def check_page_size(limit: object, *, name: str = "limit") -> None:
    """Raise ``ValueError`` unless ``limit`` is an integer from 1 to 100 (``name`` it is
    called by in the caller's API)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise ValueError(f"{name} must be an integer from 1 to 100, got {limit!r}")


def build_url(
    base_url: str,
    thread_id: str,
    *,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
) -> str:
    """The full, already-encoded URL of one list request.

    ``thread_id`` is encoded as a single path segment: ``/``, ``?``, ``#`` and ``%`` in it
    cannot reach another path or query.
    """
    query: list[tuple[str, str | int]] = [("limit", limit), ("order", order)]
    if after is not None:
        query.append(("after", after))
    if before is not None:
        query.append(("before", before))
    return f"{base_url}/threads/{quote(thread_id, safe='')}/runs?{urlencode(query)}"


#: What an HTTP header name may be made of (RFC 9110 ``token``).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_header(setting: str, name: object, value: object) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``name: value`` can be sent as a header."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"{setting}: {shown(name)} is not a valid HTTP header name")
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{setting}: the value of {name} must be a string, not {shown(value)}")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(
            f"{setting}: the value of {name} has a line break or NUL in it (a stray newline "
            "from a file or an environment variable?); pass the bare value"
        )


def build_headers(
    api_key: str,
    *,
    organization: str | None = None,
    project: str | None = None,
    default_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers of every request: auth, the Assistants v2 beta header, user agent.

    Raises ``TypeError``/``ValueError`` for a header no request could carry (a name that is
    not a token, a value with a line break), before anything is sent.
    """
    check_header("organization", "OpenAI-Organization", organization)
    check_header("project", "OpenAI-Project", project)
    if default_headers is not None:
        if not isinstance(default_headers, Mapping):
            raise TypeError(
                "default_headers must be a mapping of header names to values, not "
                f"{shown(default_headers)}"
            )
        for name, value in default_headers.items():
            check_header("default_headers", name, value)
    headers = {
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        "OpenAI-Beta": "assistants=v2",
    }
    if organization:
        headers["OpenAI-Organization"] = organization
    if project:
        headers["OpenAI-Project"] = project
    if default_headers:
        names = {name.lower(): name for name in headers}
        for name, value in default_headers.items():
            if name.lower() == "authorization":
                continue  # the API key is sent as the client's own bearer token
            existing = names.pop(name.lower(), None)
            if existing is not None:
                del headers[existing]  # header names are case-insensitive: replace, not add
            headers[name] = value
            names[name.lower()] = name
    headers["Authorization"] = f"Bearer {api_key}"
    return headers


# --- responses -----------------------------------------------------------------------------------

#: Every byte that is an ASCII digit -> ``0``, every other byte -> ``x`` (see _exact_needed).
_DIGIT_MAP = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _exact_needed(body: bytes) -> bool:
    """Whether ``body`` may hold an integer orjson cannot keep exact (beyond 64 bits).

    Such an integer has at least 19 digits in a row. Any 19 consecutive bytes hold three
    consecutive multiples of 6, so sampling every 6th byte finds each candidate for a few
    microseconds a page; only candidates (13+ digits in a row, rare) are looked at closely.
    """
    sampled = body[::6].translate(_DIGIT_MAP)
    i = sampled.find(b"000")
    while i >= 0:
        at = 6 * i
        if _LONG_DIGITS.search(body, max(at - 18, 0), at + 19):
            return True
        i = sampled.find(b"000", i + 1)
    return False


class TooDeepError(ValueError):
    """JSON nested too deeply to decode (the same server would send it again)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(body: bytes) -> Any:
    """Decode a JSON body, keeping every integer exact.

    orjson (the fast path) turns an integer beyond 64 bits into a float; a body that may hold
    one is decoded by the standard library's exact decoder instead. Raises ``ValueError``
    for what is not JSON.
    """
    if _exact_needed(body):
        try:
            return json.loads(body, parse_constant=_no_constant)
        except RecursionError:
            raise TooDeepError("JSON nested too deeply to decode exactly") from None
    return orjson.loads(body)


def _error_fields(body: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """``(message, code, type, param)`` from an ``{"error": {...}}`` body, where present."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, None, None, None

    def text(key: str) -> str | None:
        value = err.get(key)
        return value if isinstance(value, str) else None

    return text("message"), text("code"), text("type"), text("param")


def _detail_message(detail: Any) -> str | None:
    """The message of a FastAPI-style ``detail``: a string, or a list of ``{"msg": ...}``."""
    if isinstance(detail, str) and detail:
        return detail
    if not isinstance(detail, list):
        return None
    parts = []
    for item in detail:
        if not isinstance(item, dict) or not isinstance(item.get("msg"), str):
            continue
        loc = item.get("loc")
        where = ".".join(str(p) for p in loc) if isinstance(loc, list) and loc else ""
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts) or None


def error_message(decoded: Any, body: bytes) -> str | None:
    """The server's own words in an error body of any shape: ``error.message``, a top-level
    ``message``, ``detail`` (a string, or a list of ``{"msg": ...}``), else the first 200
    characters of the body; ``None`` for an empty body."""
    message = _error_fields(decoded)[0]
    if message:
        return message
    if isinstance(decoded, dict):
        top = decoded.get("message")
        if isinstance(top, str) and top:
            return top
        detail = _detail_message(decoded.get("detail"))
        if detail:
            return detail
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    return text[:200] + ("..." if len(text) > 200 else "")


def make_status_error(
    status: int, headers: Mapping[str, str], body: bytes, *, thread_id: str
) -> APIStatusError:
    """The typed error for a 4xx/5xx answer, with the server's own message and code."""
    try:
        decoded: Any = loads(body) if body else None
    except ValueError:
        decoded = body[:500].decode("utf-8", "replace")
    _message, code, err_type, param = _error_fields(decoded)
    message = error_message(decoded, body)
    if status == 429 and code == "insufficient_quota":
        cls: type[APIStatusError] = QuotaExceededError
    elif status >= 500:
        cls = InternalServerError
    else:
        cls = _STATUS_ERRORS.get(status, APIStatusError)
    request_id = headers.get("x-request-id")
    detail = message or "no error message"
    text = f"listing runs of thread {shown(thread_id)} failed with HTTP {status}: {detail}"
    if code:
        text += f" (code {code!r})"
    if request_id:
        text += f" [request id {request_id}]"
    return cls(
        text,
        status_code=status,
        thread_id=thread_id,
        request_id=request_id,
        code=code,
        type=err_type,
        param=param,
        body=decoded,
        headers=headers,
        retryable=_retryable_status(status, headers, cls),
    )


def _retryable_status(status: int, headers: Mapping[str, str], cls: type[APIStatusError]) -> bool:
    """Whether an answer with ``status`` is worth another try.

    ``x-should-retry`` from the server wins; a quota error is never retried (waiting cannot
    help); otherwise 408, 409, 429 and 5xx are retried.
    """
    if issubclass(cls, QuotaExceededError):
        return False
    hint = headers.get("x-should-retry")
    if hint == "true":
        return True
    if hint == "false":
        return False
    return status in RETRYABLE_STATUSES or status >= 500


class RawPage:
    """A decoded list answer whose runs are still JSON objects (structured later, on demand).

    Decoding checks the envelope (``data`` a list of objects, ``has_more`` a boolean), which
    is what paging needs; building typed runs is left to whoever hands them out, so that
    pages waiting in a fan-out's buffer are plain decoded JSON, not typed objects.
    """

    __slots__ = ("body", "data", "has_more", "request_id", "status")

    def __init__(
        self,
        body: dict[str, Any],
        data: list[Any],
        has_more: bool,
        status: int,
        request_id: str | None,
    ) -> None:
        self.body = body
        self.data = data
        self.has_more = has_more
        self.status = status
        self.request_id = request_id


def shape_error(
    thread_id: str, status: int, request_id: str | None, what: object
) -> APIResponseValidationError:
    """The (not retryable) error for a 2xx answer that is not a list of runs."""
    return APIResponseValidationError(
        f"listing runs of thread {shown(thread_id)}: the HTTP {status} body is not a list of runs: "
        f"{what}",
        thread_id=thread_id,
        status_code=status,
        request_id=request_id,
        retryable=False,
    )


def decode_page(status: int, headers: Mapping[str, str], body: bytes, *, thread_id: str) -> RawPage:
    """Decode one answer into a :class:`RawPage`, or raise the error it stands for.

    Raises :class:`APIStatusError` (a subclass per status) for 4xx/5xx, and
    :class:`APIResponseValidationError` for a 2xx body that is not JSON (``retryable``) or
    not a list of JSON objects (not retryable).
    """
    request_id = headers.get("x-request-id")
    if status >= 400:
        raise make_status_error(status, headers, body, thread_id=thread_id)
    if not 200 <= status < 300:
        raise APIResponseValidationError(
            f"listing runs of thread {shown(thread_id)}: unexpected HTTP {status}",
            thread_id=thread_id,
            status_code=status,
            request_id=request_id,
            retryable=False,
        )
    problem: ValueError | None = None
    try:
        decoded = loads(body)
    except ValueError as exc:
        problem = exc
    if problem is not None:
        # Raised here, not in the except block: the decoder's error holds the whole body
        # (server text, kept alive), so it must not become this error's context.
        problem.__traceback__ = None
        if isinstance(problem, TooDeepError):
            raise shape_error(thread_id, status, request_id, problem)
        preview = body[:60].decode("utf-8", "replace")
        raise APIResponseValidationError(
            f"listing runs of thread {shown(thread_id)}: the HTTP {status} body is not JSON "
            f"({problem}); it starts {preview!r}. Is base_url pointing at the API?",
            thread_id=thread_id,
            status_code=status,
            request_id=request_id,
        )
    if decoded.__class__ is not dict:
        raise shape_error(thread_id, status, request_id, f"a JSON {type(decoded).__name__}")
    data = decoded.get("data")
    if data.__class__ is not list:
        raise shape_error(
            thread_id, status, request_id, f"expected 'data' to be a JSON array, got {data!r:.40}"
        )
    for item in data:
        if item.__class__ is not dict:
            raise shape_error(
                thread_id, status, request_id, f"expected runs as JSON objects, got {item!r:.40}"
            )
        other = item.get("thread_id")
        if other is not None and other != thread_id:
            # A redirect to another thread's listing, or a confused server: those runs are
            # not this thread's, and handing them out under its id would mix two threads.
            raise shape_error(
                thread_id,
                status,
                request_id,
                f"a run of another thread ({shown(other)}) in this thread's listing",
            )
    has_more = decoded.get("has_more", False)
    if has_more.__class__ is not bool:
        raise shape_error(
            thread_id,
            status,
            request_id,
            f"expected 'has_more' to be a boolean, got {has_more!r:.40}",
        )
    return RawPage(decoded, data, has_more, status, request_id)


def structure_runs(raw: RawPage, items: Sequence[Any], *, thread_id: str) -> tuple[Run, ...]:
    """Typed runs from some of ``raw``'s run objects; a malformed run raises (not retryable)."""
    try:
        return tuple([structure_run(d) for d in items])
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise shape_error(thread_id, raw.status, raw.request_id, which_run(items, exc)) from exc


def which_run(items: Sequence[Any], exc: Exception) -> str:
    """``exc`` (a run that could not be typed) with the id of that run, for a message."""
    index = failing_index(structure_run, list(items))
    run_id = items[index].get("id") if index < len(items) else None
    return f"run {shown(run_id)}: {exc}" if run_id is not None else str(exc)


def to_run_page(raw: RawPage, *, thread_id: str) -> RunPage:
    """The typed :class:`RunPage` of a decoded answer."""
    try:
        return structure_page_body(raw.body, request_id=raw.request_id)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise shape_error(thread_id, raw.status, raw.request_id, exc) from exc


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def redirect_target(url: str, location: str, *, thread_id: str) -> str:
    """The URL a redirect from ``url`` to ``location`` leads to, if the client may follow it.

    Only the same origin is followed (the API key goes with the request); a ``Location``
    that is not a usable URL, or leads elsewhere, raises a non-retryable
    :class:`APIConnectionError`.
    """
    try:
        here = URL(url, encoded=True)
        there = URL(location)
        if there.scheme and not there.host:
            raise ValueError("an absolute URL without a host")  # noqa: TRY301
        # Resolved on the encoded text: yarl's join decodes the base path, which would turn a
        # thread id's %2F back into a path separator.
        target = URL(urljoin(str(here), str(there)), encoded=True)
        same = target.origin() == here.origin()
    except (ValueError, TypeError):
        raise APIConnectionError(
            f"listing runs of thread {shown(thread_id)}: the server redirected to "
            f"{location[:80]!r}, which is not a usable URL",
            thread_id=thread_id,
            retryable=False,
        ) from None
    if not same:
        raise APIConnectionError(
            f"listing runs of thread {shown(thread_id)}: the server redirected to another origin "
            f"({target.origin()}); not following, as the API key would go with it",
            thread_id=thread_id,
            retryable=False,
        )
    return str(target)


def accept_page(
    walk: PageWalk, status: int, headers: Mapping[str, str], body: bytes
) -> tuple[RawPage, list[Any], bool]:
    """Decode one answer of ``walk``'s thread and check it against the walk, before any run
    of it is handed out: the page, its run objects in hand-out order, and whether more
    pages follow. Raises the answer's error, or :class:`PaginationError`.
    """
    raw = decode_page(status, headers, body, thread_id=walk.thread_id)
    items = walk.ordered(raw)
    return raw, items, walk.advance(raw)


# --- rate-limit headers ------------------------------------------------------------------------


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string, as in rate-limit headers: ``1s``, ``6m0s``, ``12ms``.

    Raises ``ValueError`` for anything else.
    """
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    if s == "0":
        return 0.0
    total = 0.0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        if j == i:
            raise ValueError(f"invalid duration {text!r}")
        try:
            number = float(s[i:j])
        except ValueError:
            raise ValueError(f"invalid duration {text!r}") from None
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        unit = s[j:k]
        if unit not in units:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r}")
        total += number * units[unit]
        i = k
    return total


# --- pagination ----------------------------------------------------------------------------------


class QuirkNotes:
    """The quirks one client has already warned about: each kind is logged once per client.

    Quirks that one page cannot prove wrong (a full page without ``has_more``, a page longer
    than the limit, an order that contradicts the one asked for) are logged as warnings on
    the ``aiorunlist`` logger, not raised.
    """

    __slots__ = ("has_more_seen", "warned")

    def __init__(self) -> None:
        self.warned: set[str] = set()
        #: Whether any page has said ``has_more: true``: then the server computes it, and a
        #: full page with ``has_more: false`` is a listing that ends exactly there.
        self.has_more_seen = False

    def warn(self, kind: str, message: str, *args: object, thread_id: str) -> None:
        """Log ``message`` (``%``-style with ``args``) once for this ``kind``."""
        if kind in self.warned:
            return
        self.warned.add(kind)
        logger.warning(message, *args, extra={"thread_id": thread_id, "quirk": kind})


def _created(run: Mapping[str, Any]) -> float | None:
    value = run.get("created_at")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _order_contradiction(data: Sequence[Any], order: str) -> tuple[Any, Any] | None:
    """The first two neighbouring runs whose ``created_at`` contradicts ``order``, if any."""
    times = [run.get("created_at") for run in data]
    try:  # the common case, at C speed: numbers in order
        if order == "asc":
            if all(map(operator.le, times, times[1:])):
                return None
        elif all(map(operator.ge, times, times[1:])):
            return None
    except TypeError:  # a missing or odd created_at: looked at one by one below
        pass
    previous: Any = None
    previous_at: float = float("nan")  # compares false either way
    for run in data:
        at = _created(run)
        if at is None:
            continue
        backwards = at < previous_at if order == "asc" else at > previous_at
        if backwards:
            return previous, run
        previous, previous_at = run, at
    return None


class PageWalk:
    """Cursor bookkeeping for walking one thread's listing, page by page (no I/O).

    Forward (the default, or with ``after``): each next page starts after the last run seen.
    Backward (``before`` without ``after``): each next page ends before the first run seen,
    and each page is handed out reversed, so runs come nearest-to-``before`` first.
    ``has_more`` is authoritative; a page that cannot advance, or that repeats a run already
    handed out in this listing, raises :class:`PaginationError` before any of its runs is
    handed out. The walk keeps the id of every run it handed out: one set entry per run.

    With ``order``, ``limit`` and ``notes`` (the client's :class:`QuirkNotes`), pages are also
    checked for quirks that one page cannot prove wrong, each logged once per client.
    """

    __slots__ = (
        "after",
        "backward",
        "before",
        "ids",
        "limit",
        "notes",
        "order",
        "seen",
        "thread_id",
    )

    def __init__(
        self,
        thread_id: str,
        *,
        after: str | None,
        before: str | None,
        order: str | None = None,
        limit: int | None = None,
        notes: QuirkNotes | None = None,
    ) -> None:
        self.thread_id = thread_id
        self.after = after
        self.before = before
        self.backward = before is not None and after is None
        self.order = order
        self.limit = limit
        self.notes = notes
        #: The cursors used so far.
        self.seen: set[str] = set()
        #: The id of every run handed out so far in this listing.
        self.ids: set[Any] = set()

    def ordered(self, page: RawPage) -> list[Any]:
        """The page's run objects in the order they are to be handed out.

        Raises :class:`PaginationError` if the page holds the very run it was asked to start
        after (or end before): the server ignored the cursor. Raises it too if the page holds
        a run already handed out in this listing (the server's pages overlap), or the same
        run twice. Either way, before any run of the page is handed out.
        """
        thread_id = self.thread_id
        cursor = self.before if self.backward else self.after
        if cursor is not None:
            for run in page.data:
                if run.get("id") == cursor:
                    name = "before" if self.backward else "after"
                    raise PaginationError(
                        f"thread {shown(thread_id)}: asked for the runs {name} "
                        f"{shown(cursor)}, the server sent that run again: it ignored the "
                        f"{name!r} cursor. List "
                        "this thread without a cursor, or diagnose the server with "
                        f"`aiorunlist check-server {thread_id}`",
                        thread_id=thread_id,
                    )
        if self.notes is not None:
            self._observe(page)
        ids = self.ids
        try:  # the common case, at C speed: every id new and distinct
            page_ids = [run.get("id") for run in page.data]
            distinct = set(page_ids)
            if len(distinct) == len(page_ids) and distinct.isdisjoint(ids):
                ids |= distinct
                return page.data[::-1] if self.backward else page.data
        except TypeError:  # an unhashable id: checked one by one below
            pass
        fresh: set[str] = set()
        for run in page.data:
            run_id = run.get("id")
            if not isinstance(run_id, str):
                continue
            if run_id in fresh:
                raise PaginationError(
                    f"thread {thread_id!r}: the server's page lists run {run_id!r} twice; "
                    "refusing to hand it out twice. Diagnose the server with "
                    f"`aiorunlist check-server {thread_id}`",
                    thread_id=thread_id,
                )
            if run_id in ids:
                raise PaginationError(
                    f"thread {thread_id!r}: run {run_id!r} was already handed out earlier in "
                    "this listing: the server's pages overlap. The likely cause is a cursor "
                    "that is unstable for runs created in the same second (pages sorted by "
                    'created_at, the cursor compared by id). List with order="asc", or '
                    f"diagnose the server with `aiorunlist check-server {thread_id}`",
                    thread_id=thread_id,
                )
            fresh.add(run_id)
        ids |= fresh
        return page.data[::-1] if self.backward else page.data

    def _observe(self, page: RawPage) -> None:
        """Warn (once per client and kind) about what this page suggests but cannot prove."""
        notes, thread_id, limit, data = self.notes, self.thread_id, self.limit, page.data
        assert notes is not None  # noqa: S101 - checked by the caller
        if page.has_more:
            notes.has_more_seen = True
        if limit is not None and len(data) > limit:
            notes.warn(
                "limit_ignored",
                "thread %s: asked for at most %d runs, the server sent %d: it ignores "
                "'limit'. Diagnose it with `aiorunlist check-server %s`",
                thread_id,
                limit,
                len(data),
                thread_id,
                thread_id=thread_id,
            )
        elif limit is not None and len(data) == limit and not page.has_more and self._suspect(page):
            said = "false" if "has_more" in page.body else "absent"
            notes.warn(
                "has_more_full_page",
                "thread %s: a full page (%d runs, the limit) came with has_more %s: if the "
                "server does not compute has_more, the runs after this page are not listed. "
                "Diagnose it with `aiorunlist check-server %s`; page_size=100 gets the most "
                "runs per page",
                thread_id,
                limit,
                said,
                thread_id,
                thread_id=thread_id,
            )
        if self.order in ("asc", "desc"):
            pair = _order_contradiction(data, self.order)
            if pair is not None:
                first, second = pair
                notes.warn(
                    "order_contradicted",
                    "thread %s: asked for order=%s, but the page lists run %r (created_at %s) "
                    "before run %r (created_at %s): the server may ignore 'order'. Diagnose it "
                    "with `aiorunlist check-server %s`",
                    thread_id,
                    self.order,
                    first.get("id"),
                    first.get("created_at"),
                    second.get("id"),
                    second.get("created_at"),
                    thread_id,
                    thread_id=thread_id,
                )

    def _suspect(self, page: RawPage) -> bool:
        """Whether a full page without ``has_more: true`` is worth a warning: always when
        ``has_more`` is absent; when it is false, only on the first page of a listing that
        started without a cursor, before this client saw any ``has_more: true`` (elsewhere it
        most likely ends a listing that holds a multiple of the page size)."""
        if "has_more" not in page.body:
            return True
        assert self.notes is not None  # noqa: S101 - checked by the caller
        first = not self.seen and self.after is None and self.before is None
        return first and not self.notes.has_more_seen

    def advance(self, page: RawPage) -> bool:
        """Move the cursor past ``page``; ``False`` when the listing is complete."""
        if not page.has_more:
            return False
        if not page.data:
            raise PaginationError(
                f"thread {shown(self.thread_id)}: the server sent has_more with an empty page, "
                "which leaves no run to continue after",
                thread_id=self.thread_id,
            )
        edge = page.data[0] if self.backward else page.data[-1]
        cursor = edge.get("id")
        if not isinstance(cursor, str) or not cursor:
            raise PaginationError(
                f"thread {shown(self.thread_id)}: a run without an id cannot serve as a cursor",
                thread_id=self.thread_id,
            )
        if cursor in self.seen or cursor in (self.after, self.before):
            raise PaginationError(
                f"thread {shown(self.thread_id)}: the cursor {shown(cursor)} came back: an "
                "earlier page ended at the same run, so the cursor did not advance",
                thread_id=self.thread_id,
            )
        self.seen.add(cursor)
        if self.backward:
            self.before = cursor
        else:
            self.after = cursor
        return True
