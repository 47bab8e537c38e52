"""The sans-I/O layer: URLs, headers, status -> error, retry decisions. No loop, no network."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

import aiorunlist
from aiorunlist._protocol import (
    REDIRECT_STATUSES,
    PageWalk,
    QuirkNotes,
    RawPage,
    build_headers,
    build_url,
    check_list_args,
    check_page_size,
    decode_page,
    error_message,
    is_loopback_host,
    loads,
    make_status_error,
    normalize_base_url,
    parse_go_duration,
    redirect_target,
    structure_runs,
    to_run_page,
)


def _err(status: int, code: str | None = None, headers: dict[str, str] | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": "nope", "type": "invalid_request_error", "param": None, "code": code}}
    )


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, None, aiorunlist.BadRequestError),
        (401, "invalid_api_key", aiorunlist.AuthenticationError),
        (403, None, aiorunlist.PermissionDeniedError),
        (404, None, aiorunlist.NotFoundError),
        (409, None, aiorunlist.ConflictError),
        (422, None, aiorunlist.UnprocessableEntityError),
        (429, "rate_limit_exceeded", aiorunlist.RateLimitError),
        (429, "insufficient_quota", aiorunlist.QuotaExceededError),
        (500, None, aiorunlist.InternalServerError),
        (503, None, aiorunlist.InternalServerError),
        (418, None, aiorunlist.APIStatusError),
    ],
)
def test_status_maps_to_error_class(status: int, code: str | None, cls: type) -> None:
    err = make_status_error(
        status, {"x-request-id": "req_1"}, _err(status, code), thread_id="thread_x"
    )
    assert type(err) is cls
    assert err.status_code == status
    assert err.request_id == "req_1"
    assert err.code == code
    assert err.type == "invalid_request_error"
    assert err.message.startswith("listing runs of thread 'thread_x' failed with HTTP")
    assert "nope" in str(err)
    assert "req_1" in str(err)
    assert err.thread_id == "thread_x"


def test_status_error_with_non_json_body_keeps_text() -> None:
    err = make_status_error(502, {}, b"<html>Bad gateway</html>", thread_id="t")
    assert isinstance(err, aiorunlist.InternalServerError)
    assert "Bad gateway" in str(err)
    assert err.code is None
    assert err.request_id is None


def _read(body: bytes, *, thread_id: str) -> aiorunlist.RunPage:
    return to_run_page(decode_page(200, {}, body, thread_id=thread_id), thread_id=thread_id)


def test_read_page_rejects_non_json_and_non_list() -> None:
    with pytest.raises(aiorunlist.APIResponseValidationError, match="not JSON"):
        _read(b"<html>proxy</html>", thread_id="t")
    with pytest.raises(aiorunlist.APIResponseValidationError, match="not a list of runs"):
        _read(b'{"object": "list", "data": {}}', thread_id="t")
    with pytest.raises(aiorunlist.APIResponseValidationError, match="not a list of runs"):
        _read(b'{"data": [1, 2]}', thread_id="t")
    with pytest.raises(aiorunlist.APIResponseValidationError, match="not JSON"):
        _read(b'{"data": [', thread_id="t")


def test_read_page_lax_server() -> None:
    page = _read(b'{"object": "list", "data": [{"id": "r1"}], "has_more": false}', thread_id="t")
    assert page.first_id is None
    assert page.last_id is None
    assert page.request_id is None
    assert [r.id for r in page.data] == ["r1"]


@pytest.mark.parametrize("thread_id", ["../x", "a/b", "a?b", "a#b", "%2F", "a b", "ü"])
def test_thread_id_is_one_path_segment(thread_id: str) -> None:
    url = build_url("http://h/v1", thread_id, limit=5, order="asc", after="run_1", before=None)
    path, _, query = url.partition("?")
    assert path.startswith("http://h/v1/threads/")
    segment = path.removeprefix("http://h/v1/threads/").removesuffix("/runs")
    assert "/" not in segment
    assert "?" not in segment
    assert "#" not in segment
    assert query == "limit=5&order=asc&after=run_1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thread_id": ""}, "thread_id must not be empty"),
        ({"thread_id": "  "}, "thread_id must not be empty"),
        ({"thread_id": ".."}, "not a thread id"),
        ({"thread_id": 5}, "thread_id must be a string"),
        ({"limit": 0}, "limit must be an integer from 1 to 100"),
        ({"limit": 101}, "limit must be an integer from 1 to 100"),
        ({"limit": True}, "limit must be an integer"),
        ({"limit": 2.0}, "limit must be an integer"),
        ({"order": "up"}, "order must be 'asc' or 'desc'"),
        ({"after": ""}, "after must be a run id"),
        ({"before": 3}, "before must be a run id"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "thread_id": "thread_1",
        "limit": 20,
        "order": "desc",
        "after": None,
        "before": None,
    }
    args.update(kwargs)
    thread_id = args.pop("thread_id")
    limit = args.pop("limit")
    with pytest.raises((ValueError, TypeError), match=message):
        check_list_args(thread_id, **args)
        check_page_size(limit)


@pytest.mark.parametrize(
    "url",
    [
        "api.openai.com/v1",
        "ftp://x/v1",
        "http://",
        "http://h/v1?x=1",
        "http://u:p@h/v1",
        "http://h/v1#",  # an empty fragment: every request would go to GET /v1
        "http://h/v1?",  # an empty query: every request would go to GET /v1?/threads/...
        "http://h/v1/#/x",
        "http://h/v 1",
        "http://h/v1\tx",
        "http://h/v1\nx",
        "http://h:99999/v1",
    ],
)
def test_bad_base_url(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        normalize_base_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v 1", "http://h/v1\tx", "http://h\x7f/v1"])
def test_base_url_with_whitespace_inside_is_refused(url: str) -> None:
    # A copy-pasted OPENAI_BASE_URL: every request would fail with "Bad status line".
    with pytest.raises(ValueError, match="whitespace or a control character inside it"):
        normalize_base_url(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1 ", " http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1\n"]
)
def test_base_url_whitespace_around_it_is_dropped(url: str) -> None:
    assert normalize_base_url(url) == "http://127.0.0.1:8000/v1"


def test_base_url_strips_slash() -> None:
    assert normalize_base_url("http://h/~me/v1") == "http://h/~me/v1"  # '~' is no control
    assert normalize_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert normalize_base_url(" http://127.0.0.1:8000/v1\n") == "http://127.0.0.1:8000/v1"


def test_headers() -> None:
    h = build_headers("sk-1", organization="org", project="proj", default_headers={"X-A": "b"})
    assert h["Authorization"] == "Bearer sk-1"
    assert h["OpenAI-Beta"] == "assistants=v2"
    assert h["OpenAI-Organization"] == "org"
    assert h["OpenAI-Project"] == "proj"
    assert h["User-Agent"] == f"aiorunlist/{aiorunlist.__version__}"
    assert h["X-A"] == "b"
    assert "OpenAI-Organization" not in build_headers("k")


def test_default_headers_replace_case_insensitively_but_never_the_key() -> None:
    h = build_headers(
        "sk-1", default_headers={"openai-beta": "assistants=v3", "authorization": "Basic x"}
    )
    assert [k for k in h if k.lower() == "openai-beta"] == ["openai-beta"]
    assert h["openai-beta"] == "assistants=v3"
    assert [k for k in h if k.lower() == "authorization"] == ["Authorization"]
    assert h["Authorization"] == "Bearer sk-1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1h2m3.5s", 3723.5),
        ("0", 0.0),
        ("250us", 0.00025),
    ],
)
def test_go_duration(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5", "1x", "1.5.5s"])
def test_go_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_go_duration(text)


def _page(ids: list[str], has_more: bool) -> RawPage:
    body = orjson.dumps({"object": "list", "data": [{"id": i} for i in ids], "has_more": has_more})
    return decode_page(200, {}, body, thread_id="t")


def test_walk_forward_and_backward() -> None:
    w = PageWalk("t", after=None, before=None)
    assert w.advance(_page(["a", "b"], True))
    assert w.after == "b"
    assert not w.advance(_page(["c"], False))
    back = PageWalk("t", after=None, before="z")
    p = _page(["x", "y"], True)
    assert [r["id"] for r in back.ordered(p)] == ["y", "x"]
    assert back.advance(p)
    assert back.before == "x"


def test_walk_refuses_to_loop() -> None:
    with pytest.raises(aiorunlist.PaginationError, match="has_more with an empty page"):
        PageWalk("t", after=None, before=None).advance(_page([], True))
    w = PageWalk("t", after=None, before=None)
    w.advance(_page(["a", "b"], True))
    with pytest.raises(aiorunlist.PaginationError, match="came back: an earlier page ended"):
        w.advance(_page(["a", "b"], True))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, False),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("[::1]", True),
        ("::1", True),
        ("127.0.0.1.example.com", False),
        ("notlocalhost", False),
        ("10.0.0.1", False),
        ("api.openai.com", False),
    ],
)
def test_is_loopback_host(host: str | None, expected: bool) -> None:
    assert is_loopback_host(host) is expected


def test_page_size_bounds() -> None:
    check_page_size(1)
    check_page_size(100)
    for bad in (0, 101, True, 5.0, "5"):
        with pytest.raises(ValueError, match=r"limit must be an integer from 1 to 100"):
            check_page_size(bad)
    with pytest.raises(ValueError, match=r"per_page must be"):
        check_page_size(0, name="per_page")


@pytest.mark.parametrize(
    "body",
    [
        b"1" * 30,  # the long integer starts the body
        b"[" + b"9" * 19 + b"]",  # 19 digits, the shortest that may pass 64 bits
        b'{"a": [1, 2], "big": ' + b"12345678901234567890123" + b"}",  # at the end
        b"  " + b"1" * 25 + b"  ",
        b"[" + b"9" * 25 + b"]",  # the last digit only
    ],
)
def test_loads_keeps_big_integers_exact(body: bytes) -> None:
    import json

    assert loads(body) == json.loads(body)


def _raw(runs: list[dict[str, Any]], **envelope: Any) -> RawPage:
    body = orjson.dumps({"object": "list", "data": runs, **envelope})
    return decode_page(200, {}, body, thread_id="t")


def _quirks(caplog: pytest.LogCaptureFixture, *pages: RawPage, **walk: Any) -> list[str]:
    caplog.set_level(logging.WARNING, logger="aiorunlist")
    caplog.clear()
    notes = walk.pop("notes", None) or QuirkNotes()
    w = PageWalk("t", after=walk.pop("after", None), before=None, notes=notes, **walk)
    for page in pages:
        w.ordered(page)
        w.advance(page)
    return [str(getattr(r, "quirk", None)) for r in caplog.records]


def _runs(*ids: str) -> list[dict[str, Any]]:
    return [{"id": i} for i in ids]


def test_quirk_a_page_longer_than_the_limit(caplog: pytest.LogCaptureFixture) -> None:
    assert _quirks(caplog, _raw(_runs("a", "b", "c"), has_more=False), limit=2) == ["limit_ignored"]
    assert "asked for at most 2 runs, the server sent 3" in caplog.text
    assert _quirks(caplog, _raw(_runs("a", "b"), has_more=True), limit=2) == []
    # Once per client, however many pages show it.
    notes = QuirkNotes()
    pages = [_raw(_runs("a", "b", "c"), has_more=True), _raw(_runs("d", "e", "f"), has_more=False)]
    assert _quirks(caplog, *pages, limit=2, notes=notes) == ["limit_ignored"]


def test_quirk_a_full_page_without_has_more(caplog: pytest.LogCaptureFixture) -> None:
    assert _quirks(caplog, _raw(_runs("a", "b")), limit=2) == ["has_more_full_page"]
    assert "has_more absent" in caplog.text
    assert _quirks(caplog, _raw(_runs("a", "b"), has_more=False), limit=2) == ["has_more_full_page"]
    assert "has_more false" in caplog.text
    # Not a full page; or has_more false where a listing may simply end there.
    assert _quirks(caplog, _raw(_runs("a")), limit=2) == []
    assert _quirks(caplog, _raw(_runs("a", "b"), has_more=False), limit=2, after="z") == []
    seen = QuirkNotes()
    seen.has_more_seen = True
    assert _quirks(caplog, _raw(_runs("a", "b"), has_more=False), limit=2, notes=seen) == []
    pages = [_raw(_runs("a", "b"), has_more=True), _raw(_runs("c", "d"), has_more=False)]
    assert _quirks(caplog, *pages, limit=2) == []
    # has_more absent is always suspect, also after a cursor.
    assert _quirks(caplog, _raw(_runs("a", "b")), limit=2, after="z") == ["has_more_full_page"]


def _timed(*times: object) -> list[dict[str, Any]]:
    return [{"id": f"r{n}", "created_at": t} for n, t in enumerate(times)]


@pytest.mark.parametrize(
    ("order", "times", "warned"),
    [
        ("asc", (1, 2, 2, 3), False),
        ("asc", (1, 3, 2), True),
        ("desc", (3, 2, 2, 1), False),
        ("desc", (1, 2), True),
        # A missing or odd created_at is skipped, its neighbours still compared.
        ("asc", (1, None, 0), True),
        ("asc", (1, None, 1), False),
        ("desc", (2, None, 2), False),
        ("desc", (1, "x", 2), True),
        ("desc", (2, True, 1), False),
        ("asc", (2, False, 3), False),
        ("desc", (None, 1, 2), True),
    ],
)
def test_quirk_an_order_contradicted(
    caplog: pytest.LogCaptureFixture, order: str, times: tuple[object, ...], warned: bool
) -> None:
    got = _quirks(caplog, _raw(_timed(*times), has_more=False), order=order)
    assert got == (["order_contradicted"] if warned else [])
    if warned:
        assert f"asked for order={order}" in caplog.text


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "gone", "param": "p", "code": "c"}}', "gone"),
        (b'{"error": {"message": "", "param": "p"}, "message": "top"}', "top"),
        (b'{"message": "", "detail": "d"}', "d"),
        (b'{"detail": ""}', '{"detail": ""}'),
        (b'{"detail": [{"loc": ["query", "limit"], "msg": "too big"}]}', "query.limit: too big"),
        (b'{"detail": [{"loc": [], "msg": "a"}, {"loc": "q", "msg": "b"}]}', "a; b"),
        (b'{"detail": [{"msg": 1}, "x", {"msg": "kept"}]}', "kept"),
        (b'{"detail": [{"msg": 1}]}', '{"detail": [{"msg": 1}]}'),
        (b'{"detail": {"msg": "x"}}', '{"detail": {"msg": "x"}}'),
        (b'{"message": ["not", "text"]}', '{"message": ["not", "text"]}'),
        (b"  ", None),
        (b"x" * 200, "x" * 200),
        (b"x" * 201, "x" * 200 + "..."),
    ],
)
def test_error_message_exactly(body: bytes, expected: str | None) -> None:
    decoded = orjson.loads(body) if body.startswith(b"{") else body.decode()
    assert error_message(decoded, body) == expected


def test_a_non_json_error_body_is_kept_up_to_500_characters() -> None:
    err = make_status_error(502, {}, b"<" + b"x" * 599, thread_id="t")
    assert err.body == "<" + "x" * 499
    short = make_status_error(502, {}, b"<html>", thread_id="t")
    assert short.body == "<html>"


def test_statuses_around_the_boundaries() -> None:
    body = orjson.dumps({"object": "list", "data": [], "has_more": False})
    assert decode_page(299, {}, body, thread_id="t").status == 299
    for status in (199, 300, 304, 399):
        with pytest.raises(aiorunlist.APIResponseValidationError, match="unexpected HTTP") as info:
            decode_page(status, {}, body, thread_id="t")
        assert info.value.retryable is False
    with pytest.raises(aiorunlist.BadRequestError):
        decode_page(400, {}, _err(400), thread_id="t")
    assert type(make_status_error(499, {}, b"", thread_id="t")) is aiorunlist.APIStatusError
    assert isinstance(
        make_status_error(500, {}, b"", thread_id="t"), aiorunlist.InternalServerError
    )


def test_has_more_defaults_to_false() -> None:
    body = orjson.dumps({"object": "list", "data": [{"id": "a"}]})
    assert decode_page(200, {}, body, thread_id="t").has_more is False


def test_the_redirects_followed_are_those_with_a_location() -> None:
    # 300 (a choice), 304 (not modified) and 305 (use proxy) are no redirect to follow.
    assert frozenset({301, 302, 303, 307, 308}) == REDIRECT_STATUSES


def test_redirects_stay_on_the_origin_and_are_not_retried() -> None:
    here = "https://api.test/v1/threads/t/runs?limit=2"
    assert redirect_target(here, "/v2/threads/t/runs", thread_id="t") == (
        "https://api.test/v2/threads/t/runs"
    )
    for location, words in [
        ("https://evil.test/v1/threads/t/runs", "another origin"),
        ("http://api.test/v1/threads/t/runs", "another origin"),
        ("https:///nohost", "not a usable URL"),
    ]:
        with pytest.raises(aiorunlist.APIConnectionError, match=words) as info:
            redirect_target(here, location, thread_id="t")
        assert info.value.retryable is False


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("runs?after=x", "https://api.test/v1/threads/a%2Fb/runs?after=x"),
        ("./runs", "https://api.test/v1/threads/a%2Fb/runs"),
        ("?limit=5", "https://api.test/v1/threads/a%2Fb/runs?limit=5"),
        ("../a%2Fb/runs", "https://api.test/v1/threads/a%2Fb/runs"),
        ("/v2/threads/a%2Fb/runs", "https://api.test/v2/threads/a%2Fb/runs"),
        ("/v2/threads/a b/runs", "https://api.test/v2/threads/a%20b/runs"),
    ],
)
def test_a_relative_redirect_keeps_the_thread_id_encoded(location: str, expected: str) -> None:
    # A thread id holding "/" is sent as %2F; a relative Location resolved against that URL
    # must not turn it back into a path separator (another thread's path).
    here = "https://api.test/v1/threads/a%2Fb/runs?limit=2"
    assert redirect_target(here, location, thread_id="a/b") == expected


def test_walk_refuses_an_ignored_cursor_and_repeated_runs() -> None:
    with pytest.raises(aiorunlist.PaginationError, match="ignored the 'after' cursor"):
        PageWalk("t", after="a", before=None).ordered(_page(["b", "a"], False))
    with pytest.raises(aiorunlist.PaginationError, match="ignored the 'before' cursor"):
        PageWalk("t", after=None, before="a").ordered(_page(["a"], False))
    # With both cursors the walk goes forward: 'before' is then no cursor of the walk.
    assert PageWalk("t", after="x", before="a").ordered(_page(["a"], False)) == [{"id": "a"}]
    with pytest.raises(aiorunlist.PaginationError, match="lists run 'a' twice"):
        PageWalk("t", after=None, before=None).ordered(_page(["a", "b", "a"], False))
    w = PageWalk("t", after=None, before=None)
    w.ordered(_page(["a", "b"], True))
    with pytest.raises(aiorunlist.PaginationError, match="already handed out earlier"):
        w.ordered(_page(["c", "b"], False))
    # Ids that are not strings are not compared (nothing to hand out twice by id).
    odd = _raw([{"id": ["x"]}, {"id": ["x"]}, {"id": "y"}], has_more=False)
    assert len(PageWalk("t", after=None, before=None).ordered(odd)) == 3


def test_walk_refuses_a_cursor_that_does_not_advance() -> None:
    w = PageWalk("t", after="z", before=None)
    with pytest.raises(aiorunlist.PaginationError, match="came back"):
        w.advance(_page(["a", "z"], True))
    back = PageWalk("t", after=None, before="a")
    with pytest.raises(aiorunlist.PaginationError, match="came back"):
        back.advance(_page(["a", "b"], True))
    bads: list[list[dict[str, Any]]] = [[{"id": ""}], [{"id": 5}], [{}]]
    for bad in bads:
        with pytest.raises(aiorunlist.PaginationError, match="without an id"):
            PageWalk("t", after=None, before=None).advance(_raw(bad, has_more=True))


@pytest.mark.parametrize("url", ["http://user@h/v1", "http://:secret@h/v1", "http://u:p@h/v1"])
def test_base_url_with_any_credential_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="must not carry credentials"):
        normalize_base_url(url)


def test_a_non_json_page_shows_its_first_60_characters() -> None:
    body = b"<" + b"x" * 59 + b"TAIL" + b"y" * 40
    with pytest.raises(aiorunlist.APIResponseValidationError, match="is not JSON") as info:
        decode_page(200, {}, body, thread_id="t")
    assert repr("<" + "x" * 59) in str(info.value)
    assert "TAIL" not in str(info.value)
    assert info.value.retryable is True


def test_a_run_that_cannot_be_typed_is_named_by_its_id() -> None:
    raw = _raw([{"id": "run_ok", "created_at": 1}, {"id": "run_1", "created_at": "x"}])
    with pytest.raises(aiorunlist.APIResponseValidationError, match="run 'run_1': created_at"):
        structure_runs(raw, raw.data, thread_id="t")
    anonymous = _raw([{"created_at": "x"}])
    with pytest.raises(aiorunlist.APIResponseValidationError, match="runs: created_at") as info:
        structure_runs(anonymous, anonymous.data, thread_id="t")
    assert "run None" not in str(info.value)


def test_advance_says_false_at_the_end() -> None:
    assert PageWalk("t", after=None, before=None).advance(_page(["a"], False)) is False
    assert PageWalk("t", after=None, before=None).advance(_page(["a"], True)) is True


def test_a_client_that_saw_has_more_trusts_a_full_last_page(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notes = QuirkNotes()
    assert _quirks(caplog, _raw(_runs("a"), has_more=True), limit=2, notes=notes) == []
    assert notes.has_more_seen
    # A new listing by the same client: its first, full page with has_more false is trusted.
    assert _quirks(caplog, _raw(_runs("x", "y"), has_more=False), limit=2, notes=notes) == []


def test_a_backward_walk_reverses_a_page_with_odd_ids_too() -> None:
    odd = _raw([{"id": "a"}, {"id": ["x"]}, {"id": "c"}], has_more=False)
    got = PageWalk("t", after=None, before="z").ordered(odd)
    assert got == [{"id": "c"}, {"id": ["x"]}, {"id": "a"}]
