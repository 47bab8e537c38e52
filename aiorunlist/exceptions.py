"""The errors aiorunlist raises.

Every error derives from :class:`RunListError`, so one ``except`` catches them all::

    RunListError
    ├── PaginationError                 a server's pages do not advance (would loop forever)
    ├── ResponseTooLargeError           a response body exceeded ``max_response_bytes``
    ├── APIConnectionError              no usable answer: connection refused, reset, DNS, ...
    │   └── APITimeoutError             the request (or its total deadline) timed out
    ├── APIResponseValidationError      a 2xx answer that is not a list of runs
    └── APIStatusError                  the server answered with a 4xx or 5xx status
        ├── BadRequestError             400
        ├── AuthenticationError         401
        ├── PermissionDeniedError       403
        ├── NotFoundError               404
        ├── ConflictError               409
        ├── UnprocessableEntityError    422
        ├── RateLimitError              429
        │   └── QuotaExceededError      429 with code ``insufficient_quota`` (never retried)
        └── InternalServerError         500 and above

Bad arguments (an empty ``thread_id``, a ``limit`` outside 1..100, ...) raise the
built-in :class:`ValueError` (:class:`TypeError` for a value of the wrong type, such as a
thread id that is not a string) before anything is sent.

Context travels as keyword-only attributes (``thread_id``, ``request_id``,
``status_code``, ...); no error ever carries the API key.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ResponseTooLargeError",
    "RunListError",
    "UnprocessableEntityError",
]


class RunListError(Exception):
    """Base class of every error aiorunlist raises (bad arguments aside: ``ValueError``).

    ``retryable`` says whether sending the request again could help (the client retries
    exactly those errors); ``not_retried``, when set, says why a retryable error was raised
    all the same (the retry budget, the page's deadline), and ends the error's text.
    """

    #: Whether sending the same request again could help.
    retryable: bool = False

    def __init__(self, message: str, *, thread_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: The thread whose listing failed, where one was involved.
        self.thread_id = thread_id
        #: Why the client raised this (retryable) error instead of retrying, if it did.
        self.not_retried: str | None = None

    def __str__(self) -> str:
        if self.not_retried:
            return f"{self.message} (not retried: {self.not_retried})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class PaginationError(RunListError):
    """The server's pages cannot be walked safely: a page holds the cursor run (the cursor is
    ignored), ``has_more`` comes with an empty page, a cursor does not advance, or a page
    repeats a run already handed out in the listing (the pages overlap).

    Raised before any run of the offending page is handed out.
    """


class ResponseTooLargeError(RunListError):
    """A response body was larger than the client's ``max_response_bytes``."""


class APIConnectionError(RunListError):
    """The request got no usable answer: connection refused or reset, DNS failure, cut body.

    Also a redirect that is not followed (to another origin, or too many); those have
    ``retryable`` false.
    """

    def __init__(
        self,
        message: str,
        *,
        thread_id: str | None = None,
        request_id: str | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, thread_id=thread_id)
        #: ``x-request-id`` of the response, if one had started to arrive.
        self.request_id = request_id
        #: Whether sending the request again could help.
        self.retryable = retryable


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, read, or the page's total deadline)."""


class APIResponseValidationError(RunListError):
    """A 2xx answer whose body is not JSON, or not a list of runs."""

    def __init__(
        self,
        message: str,
        *,
        thread_id: str | None = None,
        status_code: int = 200,
        request_id: str | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, thread_id=thread_id)
        #: The HTTP status of the response.
        self.status_code = status_code
        #: ``x-request-id`` of the response, if the server sent one.
        self.request_id = request_id
        #: Whether asking again could help: true for a body that is not JSON (a proxy's page,
        #: JSON cut short), false for JSON of the wrong shape, which the same server would
        #: send again.
        self.retryable = retryable


class APIStatusError(RunListError):
    """The server answered with an error status (4xx or 5xx).

    ``code``, ``type``, ``param`` and ``message`` come from the body's ``{"error": {...}}``
    object where the server sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        thread_id: str | None = None,
        request_id: str | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        body: object = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message, thread_id=thread_id)
        #: Whether asking again could help: by default 408, 409, 429 and 5xx (never a quota
        #: error); the client also follows the server's ``x-should-retry`` header.
        self.retryable = (
            (status_code in (408, 409, 429) or status_code >= 500)
            and not isinstance(self, QuotaExceededError)
            if retryable is None
            else retryable
        )
        #: The response headers (``x-ratelimit-*``, ``retry-after``, ...).
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        #: The HTTP status of the response.
        self.status_code = status_code
        #: ``x-request-id`` of the response, if the server sent one.
        self.request_id = request_id
        #: ``error.code`` from the body, e.g. ``"rate_limit_exceeded"``.
        self.code = code
        #: ``error.type`` from the body, e.g. ``"invalid_request_error"``.
        self.type = type
        #: ``error.param`` from the body: the parameter the server objected to.
        self.param = param
        #: The decoded JSON body (or the text, if it was not JSON).
        self.body = body


class BadRequestError(APIStatusError):
    """400: the server rejected the request's parameters or headers."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not read this thread (organization, project or region)."""


class NotFoundError(APIStatusError):
    """404: no such thread on this server."""


class ConflictError(APIStatusError):
    """409: the server reported a conflict (retried, as it usually passes)."""


class UnprocessableEntityError(APIStatusError):
    """422: the server could not process the request."""


class RateLimitError(APIStatusError):
    """429: too many requests; retried after the server's hint or a backoff."""


class QuotaExceededError(RateLimitError):
    """429 with code ``insufficient_quota``: out of quota, so retrying cannot help."""


class InternalServerError(APIStatusError):
    """500 and above: the server failed; retried."""
