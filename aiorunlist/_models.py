"""The typed objects a listing yields: :class:`Run`, its parts, and :class:`RunPage`.

Every class is an attrs frozen slotted class whose field names equal the JSON keys of the
contract (the Assistants API v2 ``RunObject``). Three rules make them safe against servers
that differ from the spec, and against the API growing:

* every field defaults to ``None``: a key the server left out reads as ``None``, and
  :func:`aiorunlist.unstructure` leaves it out again (a key sent as ``null`` comes back as
  ``null``);
* keys the library does not know are kept, unchanged, in ``unknown_fields``;
* enum values the library does not know are kept as members of the same open enum that
  compare equal to their string (``run.status == "paused_for_review"``).

So ``unstructure(structure(d, Run)) == d`` for any run a server sends. A value of the wrong
JSON type (a number for an id, a string for a timestamp, an array for ``metadata``) is
refused with :class:`aiorunlist.StructureError` naming the field, never coerced; integers and
floats are both numbers (lax servers send float timestamps, kept as sent).
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from typing import Any, Literal, NoReturn, TypeAlias

import attrs

__all__ = [
    "CodeInterpreterTool",
    "FileSearchOptions",
    "FileSearchRanker",
    "FileSearchRankingOptions",
    "FileSearchTool",
    "FunctionCall",
    "FunctionDefinition",
    "FunctionTool",
    "IncompleteDetails",
    "IncompleteReason",
    "JSONSchemaFormat",
    "LastError",
    "LastErrorCode",
    "NamedToolChoice",
    "NamedToolChoiceFunction",
    "RequiredAction",
    "ResponseFormat",
    "ResponseFormatJSONObject",
    "ResponseFormatJSONSchema",
    "ResponseFormatText",
    "Run",
    "RunPage",
    "RunStatus",
    "SubmitToolOutputs",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "TruncationStrategy",
    "TruncationType",
    "UnknownResponseFormat",
    "UnknownTool",
    "Usage",
]


#: The shared empty mapping for ``unknown_fields`` (read-only, so sharing it is safe).
class FrozenDict(dict[str, Any]):
    """A read-only dict: what ``unknown_fields`` holds (it pickles and copies like a dict)."""

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("unknown_fields is read-only; use attrs.evolve() to change a model")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return FrozenDict(copy.deepcopy(dict(self), memo))


EMPTY: Mapping[str, Any] = FrozenDict()
_NOTHING_ABSENT: frozenset[str] = frozenset()


class _OpenEnum(str, enum.Enum):
    """A string enum that keeps values it does not know instead of failing.

    ``RunStatus("paused_for_review")`` returns a member-like value of ``RunStatus`` that
    equals ``"paused_for_review"``; ``str()`` and f-strings give the plain value on every
    supported Python, and hashing matches the plain string so dict look-ups work both ways.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        return member

    def __str__(self) -> str:
        return self._value_  # type: ignore[no-any-return]

    def __format__(self, format_spec: str) -> str:
        return format(self._value_, format_spec)

    def __hash__(self) -> int:
        return str.__hash__(self)

    @property
    def is_known(self) -> bool:
        """Whether this value is one the library knows (not kept from a newer server)."""
        return self._value_ in type(self)._value2member_map_


class RunStatus(_OpenEnum):
    """The status of a run.

    An open enum, like every enum here: a status the library does not know (from a newer or
    different server) is kept as a value of this class that equals its string
    (``run.status == "paused_for_review"``), with ``is_known`` false, instead of failing.
    ``str()`` and f-strings give the plain value; members hash like their strings.
    """

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FAILED = "failed"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """Whether the run can no longer change (cancelled, failed, completed, ...)."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        RunStatus.CANCELLED,
        RunStatus.FAILED,
        RunStatus.COMPLETED,
        RunStatus.INCOMPLETE,
        RunStatus.EXPIRED,
    }
)


class LastErrorCode(_OpenEnum):
    """``last_error.code`` of a failed run."""

    SERVER_ERROR = "server_error"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    INVALID_PROMPT = "invalid_prompt"


class IncompleteReason(_OpenEnum):
    """``incomplete_details.reason``: which token limit ended the run."""

    MAX_COMPLETION_TOKENS = "max_completion_tokens"
    MAX_PROMPT_TOKENS = "max_prompt_tokens"


class TruncationType(_OpenEnum):
    """``truncation_strategy.type``."""

    AUTO = "auto"
    LAST_MESSAGES = "last_messages"


class FileSearchRanker(_OpenEnum):
    """``file_search.ranking_options.ranker``."""

    AUTO = "auto"
    DEFAULT_2024_08_21 = "default_2024_08_21"


def _unknown() -> Any:
    return attrs.field(default=EMPTY, repr=False, kw_only=True, hash=False)


def _absent() -> Any:
    return attrs.field(default=_NOTHING_ABSENT, repr=False, eq=False, kw_only=True, alias="_absent")


# Every model ends with these two fields:
#   unknown_fields: keys the library does not know, kept as sent;
#   _absent:        known keys the server left out (they read as None and stay out).


@attrs.frozen
class FunctionCall:
    """The function a tool call asks for: its name and JSON-encoded arguments."""

    name: str | None = None
    arguments: str | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class ToolCall:
    """One tool call a run waits on (``required_action.submit_tool_outputs.tool_calls[]``)."""

    id: str | None = None
    type: str | None = None
    function: FunctionCall | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class SubmitToolOutputs:
    """The tool calls whose outputs the run needs."""

    tool_calls: tuple[ToolCall, ...] | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class RequiredAction:
    """What a ``requires_action`` run waits for."""

    type: str | None = None
    submit_tool_outputs: SubmitToolOutputs | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class LastError:
    """The last error of a run (``code`` may be missing on compatible servers)."""

    code: LastErrorCode | None = None
    message: str | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class IncompleteDetails:
    """Why a run is ``incomplete``."""

    reason: IncompleteReason | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class CodeInterpreterTool:
    """The ``code_interpreter`` tool."""

    type: Literal["code_interpreter"] | str | None = "code_interpreter"
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class FileSearchRankingOptions:
    """Ranking options of the ``file_search`` tool."""

    ranker: FileSearchRanker | None = None
    score_threshold: float | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class FileSearchOptions:
    """Overrides of the ``file_search`` tool."""

    max_num_results: int | None = None
    ranking_options: FileSearchRankingOptions | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class FileSearchTool:
    """The ``file_search`` tool."""

    type: Literal["file_search"] | str | None = "file_search"
    file_search: FileSearchOptions | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class FunctionDefinition:
    """A function the assistant may call: name, description, JSON Schema parameters."""

    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = attrs.field(
        default=None, hash=False
    )  # JSON as sent: compared, not hashed
    strict: bool | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class FunctionTool:
    """The ``function`` tool."""

    type: Literal["function"] | str | None = "function"
    function: FunctionDefinition | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class UnknownTool:
    """A tool whose ``type`` the library does not know; ``payload`` is the whole object as sent."""

    type: str | None
    payload: Mapping[str, Any] = attrs.field(hash=False)


#: One entry of ``Run.tools``.
Tool: TypeAlias = CodeInterpreterTool | FileSearchTool | FunctionTool | UnknownTool


@attrs.frozen
class Usage:
    """Token usage of a run (``None`` until the run is terminal)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class TruncationStrategy:
    """How the thread was truncated before the run."""

    type: TruncationType | None = None
    last_messages: int | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class ResponseFormatText:
    """``{"type": "text"}``."""

    type: str | None = "text"
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class ResponseFormatJSONObject:
    """``{"type": "json_object"}``: JSON mode."""

    type: str | None = "json_object"
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class JSONSchemaFormat:
    """The ``json_schema`` member of a ``json_schema`` response format."""

    name: str | None = None
    description: str | None = None
    schema: dict[str, Any] | None = attrs.field(
        default=None, hash=False
    )  # JSON as sent: compared, not hashed
    strict: bool | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class ResponseFormatJSONSchema:
    """``{"type": "json_schema", "json_schema": {...}}``: Structured Outputs."""

    type: str | None = "json_schema"
    json_schema: JSONSchemaFormat | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class UnknownResponseFormat:
    """A response format object whose ``type`` the library does not know, kept whole."""

    type: str | None
    payload: Mapping[str, Any] = attrs.field(hash=False)


#: ``Run.response_format``: the string ``"auto"`` (or another string a server sends) or an object.
ResponseFormat: TypeAlias = (
    str
    | ResponseFormatText
    | ResponseFormatJSONObject
    | ResponseFormatJSONSchema
    | UnknownResponseFormat
)


@attrs.frozen
class NamedToolChoiceFunction:
    """The function a named tool choice forces."""

    name: str | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class NamedToolChoice:
    """A tool choice that forces one tool: ``{"type": "function", "function": {"name": ...}}``."""

    type: str | None = None
    function: NamedToolChoiceFunction | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


#: ``Run.tool_choice``: ``"none"``, ``"auto"``, ``"required"`` or a :class:`NamedToolChoice`.
ToolChoice: TypeAlias = str | NamedToolChoice


class _Listed:
    """The base of :class:`Run`: one more slot, ``_listed``, true for a run built by a listing.

    A listed run types its nested objects (``tools``, ``usage``, ...) only when they are first
    read: until then their slots hold the JSON objects (or array) the server sent, and the
    converter's descriptors in front of those slots type them, once, and keep the result.
    ``_listed`` is unset for a run built any other way, whose values are all typed already.
    """

    __slots__ = ("_listed",)


@attrs.frozen
class Run(_Listed):
    """One run of a thread, as listed by ``GET /threads/{thread_id}/runs``.

    Field names equal the JSON keys. A key the server left out reads as ``None`` (and is left
    out again by :func:`aiorunlist.unstructure`); keys this library does not know are in
    ``unknown_fields``. Values are kept as the server sent them: nothing is coerced, and a
    value of the wrong JSON type raises :class:`aiorunlist.StructureError`.

    The JSON a run holds as it is (``metadata``, ``tool_resources``, unknown fields and tools)
    is plain ``dict`` and ``list`` objects that belong to the run: treat them as read-only.
    :func:`aiorunlist.unstructure` hands out copies, which are yours to edit.
    ``tool_resources`` and ``reasoning_effort`` are sent by servers although the schema
    leaves them out, so they are fields too. Times are Unix timestamps in seconds (UTC).

    :param id: the run's id, ``run_...``.
    :param object: the object type, always ``"thread.run"``.
    :param created_at: when the run was created, in Unix seconds.
    :param thread_id: the id of the thread the run belongs to.
    :param assistant_id: the id of the assistant the run used.
    :param status: ``queued``, ``in_progress``, ``requires_action``, ``cancelling``,
        ``cancelled``, ``failed``, ``completed``, ``incomplete`` or ``expired`` (an unknown
        status is kept as a plain string).
    :param required_action: what the run needs to go on (tool outputs); ``None`` if nothing.
    :param last_error: the run's last error (``code`` and ``message``); ``None`` if none.
    :param expires_at: when the run will expire, in Unix seconds.
    :param started_at: when the run was started, in Unix seconds.
    :param cancelled_at: when the run was cancelled, in Unix seconds.
    :param failed_at: when the run failed, in Unix seconds.
    :param completed_at: when the run was completed, in Unix seconds.
    :param incomplete_details: why the run is incomplete; ``None`` if it is not.
    :param model: the model the assistant used for this run.
    :param instructions: the instructions the assistant used for this run.
    :param tools: the tools the assistant used for this run.
    :param metadata: up to 16 key-value pairs attached to the run, as sent.
    :param usage: the tokens the run used (prompt, completion, total); ``None`` until it ends.
    :param temperature: the sampling temperature used for this run.
    :param top_p: the nucleus sampling value used for this run.
    :param max_prompt_tokens: the most prompt tokens the run was allowed to use.
    :param max_completion_tokens: the most completion tokens the run was allowed to use.
    :param truncation_strategy: how the thread was truncated before the run.
    :param response_format: the format the model was asked to answer in.
    :param tool_choice: which tool, if any, the model was made to call.
    :param parallel_tool_calls: whether the model could call several tools at once.
    :param tool_resources: the resources the run's tools used (files, vector stores), as sent.
    :param reasoning_effort: the reasoning effort asked of a reasoning model.
    :param unknown_fields: the keys this library does not know, exactly as sent.

    A run listed by ``runs()``, ``runs_many()`` or ``list_page()`` types its nested objects
    (``required_action``, ``last_error``, ``incomplete_details``, ``tools``, ``usage``,
    ``truncation_strategy``, and ``response_format`` / ``tool_choice`` when they are objects)
    when they are first read, so that runs cost only what is read of them (``pages_many()``
    types each page whole, for exporters). A value of the wrong JSON type for a field
    itself (a string for ``usage``, a number for ``tools``) fails the listing as always; a
    wrong type deeper inside a nested object (``usage.prompt_tokens`` a string) is raised
    when that field is first read, as an error that is both a
    :class:`aiorunlist.StructureError` (with the field's path) and an
    :class:`aiorunlist.APIResponseValidationError`. :func:`aiorunlist.structure` types
    everything at once.
    """

    id: str | None = None
    object: str | None = None
    created_at: int | None = None
    thread_id: str | None = None
    assistant_id: str | None = None
    status: RunStatus | None = None
    required_action: RequiredAction | None = None
    last_error: LastError | None = None
    expires_at: int | None = None
    started_at: int | None = None
    cancelled_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str | None = None
    instructions: str | None = None
    tools: tuple[Tool, ...] | None = None
    metadata: dict[str, Any] | None = attrs.field(
        default=None, hash=False
    )  # JSON as sent: compared, not hashed
    usage: Usage | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_prompt_tokens: int | None = None
    max_completion_tokens: int | None = None
    truncation_strategy: TruncationStrategy | None = None
    response_format: ResponseFormat | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    tool_resources: dict[str, Any] | None = attrs.field(
        default=None, hash=False
    )  # JSON as sent: compared, not hashed
    reasoning_effort: str | None = None
    unknown_fields: Mapping[str, Any] = _unknown()
    _absent: frozenset[str] = _absent()


@attrs.frozen
class RunPage:
    """One page of a listing, exactly as the server cut it.

    ``first_id`` and ``last_id`` are ``None`` when the server left them out (lax servers do);
    ``request_id`` is the response's ``x-request-id`` header, if any.
    """

    data: tuple[Run, ...]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None
    object: str | None = "list"
    request_id: str | None = None
    unknown_fields: Mapping[str, Any] = _unknown()

    def __len__(self) -> int:
        return len(self.data)
