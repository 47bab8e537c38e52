"""The API key is masked in server text, whatever its length, and masking leaves the rest alone.

A key of 8 characters or more is masked wherever it appears, whole or cut short to at least
its first 8 characters. A shorter key (a test key, a local server's placeholder) is masked
whole where it stands as a word of its own, not inside a thread id or a host name that
happens to hold it. The mask itself never holds the key.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import aiorunlist
from aiorunlist._client import _KEY_HEAD, _mask_text
from aiorunlist._transport import Request
from aiorunlist.testing import MockResponse, MockTransport
from tests.conftest import SOCKETLESS_URL, fast_client

pytestmark = pytest.mark.anyio

_WORD = "A-Za-z0-9_-"


#: Escapes that may end just before a key (URL encoding, a repr's or JSON's backslash escapes):
#: their last character is not a word glued to the key.
_ESCAPES = (
    "(?<=%[0-9A-Fa-f]{2})",
    "(?<=\\\\[abfnrtv0])",
    "(?<=\\\\x[0-9A-Fa-f]{2})",
    "(?<=\\\\u[0-9A-Fa-f]{4})",
)


def standalone(text: str, key: str) -> bool:
    """Whether ``key`` is in ``text`` as a word of its own: not where a letter, digit, ``_`` or
    ``-`` of it touches another (``sk-1`` in ``thread_task-1``), unless that character ends
    an escape (``Bearer%20sk-1``)."""
    glued = re.fullmatch(f"[{_WORD}]", key[0])
    left = f"(?:(?<![{_WORD}])|{'|'.join(_ESCAPES)})" if glued else ""
    right = f"(?![{_WORD}])" if re.fullmatch(f"[{_WORD}]", key[-1]) else ""
    return re.search(f"{left}{re.escape(key)}{right}", text) is not None


def leaked(text: str, key: str) -> bool:
    """What masking must leave no trace of: a long key anywhere, a short one as a word; as
    it is or as a repr shows it."""
    forms = {key, repr(key + '"')[1:-2]}  # as in a repr in single quotes: ' escaped
    if '"' not in key:
        forms.add(repr(key + "'")[1:-2])  # in double quotes: ' as it is
    return any(form in text if len(form) >= _KEY_HEAD else standalone(text, form) for form in forms)


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        # A short key, masked where it is a word of its own...
        ("sk-1", "Incorrect API key provided: sk-1.", "Incorrect API key provided: <hidden>."),
        ("sk-1", "Bearer sk-1", "Bearer <hidden>"),
        ("sk-1", '{"key": "sk-1"}', '{"key": "<hidden>"}'),
        ("sk-1", "/v1/moved?k=sk-1&x=1", "/v1/moved?k=<hidden>&x=1"),
        ("k", "key=k", "key=<hidden>"),
        # ...an escape's last character is no word of its own (URL encoding, repr, JSON).
        ("sk-1", "Authorization=Bearer%20sk-1", "Authorization=Bearer%20<hidden>"),
        ("sk-1", "(raw: 'x\\nsk-1')", "(raw: 'x\\n<hidden>')"),
        ("sk-1", '"x\\u00a0sk-1"', '"x\\u00a0<hidden>"'),
        # ...not inside an id, a word or a host name that happens to hold it.
        ("sk-1", "thread 'thread_task-1' failed", "thread 'thread_task-1' failed"),
        ("sk-1", "sk-12 is another key", "sk-12 is another key"),
        ("k", "Incorrect API key at https://fake.test", "Incorrect API key at https://fake.test"),
        ("x", "x-request-id: req_x1", "x-request-id: req_x1"),
        # Cut short, a short key is not told from ordinary text ("sk-" is in every key).
        ("sk-1", "provided: sk-", "provided: sk-"),
        # The mask never holds the key.
        ("hid", "Bearer hid", "Bearer ***"),
        ("hidden", "Bearer hidden", "Bearer ***"),
        ("<hidden>", "Bearer <hidden>", "Bearer ***"),
        # A long key: anywhere, whole or cut to at least its first 8 characters.
        ("sk-test-key-0123456789", "Bearer sk-test-key-0123456789", "Bearer <hidden>"),
        ("sk-test-key-0123456789", "xsk-test-key-0123456789x", "x<hidden>x"),
        ("sk-test-key-0123456789", "provided: sk-test-k", "provided: <hidden>"),
        ("sk-test-key-0123456789", "provided: sk-test-", "provided: <hidden>"),
        # Its first 7 characters are a public prefix (sk-proj), not the secret.
        ("sk-test-key-0123456789", "provided: sk-test", "provided: sk-test"),
    ],
)
def test_what_is_masked(key: str, text: str, expected: str) -> None:
    assert _mask_text(text, key) == expected
    assert _mask_text(expected, key) == expected  # masking again changes nothing


#: Keys as a client accepts them (no whitespace at the ends, no line break or NUL).
KEYS = st.text(
    st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"]),
    min_size=1,
    max_size=24,
).filter(lambda k: k == k.strip())
TEXT = st.text(max_size=30)


@settings(max_examples=400, deadline=None)
@given(KEYS, st.lists(st.tuples(TEXT, st.integers(min_value=1, max_value=40)), max_size=4))
def test_no_copy_of_the_key_survives_masking(key: str, pieces: list[tuple[str, int]]) -> None:
    # Text around copies of the key, some cut short (as a server that quotes N characters).
    text = "".join(t + key[:n] for t, n in pieces) + " " + key + "."
    masked = _mask_text(text, key)
    assert not leaked(masked, key)
    if len(key) >= _KEY_HEAD:
        assert key[:_KEY_HEAD] not in masked
    assert _mask_text(masked, key) == masked


@settings(max_examples=300, deadline=None)
@given(KEYS, TEXT)
def test_text_without_the_key_is_left_alone(key: str, text: str) -> None:
    assume(key[: min(len(key), _KEY_HEAD)] not in text)
    assert _mask_text(text, key) == text


# --- through a client: the error, its causes, its repr, the log ----------------------------------


def texts(error: BaseException) -> Iterator[str]:
    """Every string an error shows or holds: str and repr of it, its attributes and causes
    (strings as they are, not only their repr, which escapes backslashes and quotes)."""
    seen: set[int] = set()
    todo: list[Any] = [error]
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen or isinstance(obj, (type, logging.Logger)):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            yield obj
            continue
        yield repr(obj)
        if isinstance(obj, BaseException):
            yield str(obj)
            todo += [obj.__cause__, obj.__context__, *obj.args, *vars(obj).values()]
        elif isinstance(obj, dict) or hasattr(obj, "items"):
            todo += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set)):
            todo += list(obj)


def _echo(request: Request) -> MockResponse:
    key = request.headers["Authorization"].split()[1]
    return MockResponse(
        401,
        body={"error": {"message": f"Incorrect API key provided: {key}.", "code": key}},
        headers={"x-echo": f"Bearer {key}"},
    )


def _echo_in_a_run(request: Request) -> MockResponse:
    key = request.headers["Authorization"].split()[1]
    return MockResponse(200, body={"object": "list", "data": [{"usage": key}], "has_more": False})


@pytest.mark.parametrize(
    "key",
    [
        "sk-1",  # a test key
        "ollama",  # a local server's placeholder
        "hidden",  # part of the mask
        "sk-ab\\cdefghijkl",  # a backslash: escaped in a repr
        'sk-it\'s-"key"-0123',  # both quotes: one is escaped in a repr
        "sk-test-key-0123456789",
    ],
)
@pytest.mark.parametrize("answer", [_echo, _echo_in_a_run])
async def test_an_echoed_key_of_any_length_is_masked_and_the_thread_id_kept(
    key: str, answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiorunlist")
    thread = "thread_task-1_ollama-hidden"  # holds two of the keys, inside words
    async with fast_client(
        SOCKETLESS_URL, api_key=key, transport=MockTransport(answer), max_retries=0
    ) as client:
        with pytest.raises(aiorunlist.RunListError) as info:
            await client.list_page(thread)
    error = info.value
    shown = list(texts(error))
    assert all(not leaked(text, key) for text in shown), [t for t in shown if leaked(t, key)]
    assert thread in str(error)  # readable: a short key inside it is not masked
    assert "<hidden>" in str(error) or "***" in str(error)
    assert not leaked(caplog.text, key)
    assert thread in caplog.text
