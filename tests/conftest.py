"""Shared fixtures: the anyio backend, a fake server on 127.0.0.1 and a client pointed at it,
and database sinks (a SQLite file, a throwaway PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import aiorunlist
from aiorunlist._control import Pacer, RetryBudget
from aiorunlist.testing import FakeServer, MockTransport
from tests.postgres import PostgresServer, find_binaries
from tests.redis_server import RedisServer

API_KEY = "sk-test-key-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer(api_key=API_KEY) as srv:
        yield srv


#: Settings -> (the grouped class, its attribute).
_GROUPED = {
    "initial_retry_delay": ("retry", "initial_delay"),
    "max_retry_delay": ("retry", "max_delay"),
    "retry_budget": ("retry", "budget"),
    "max_retries": ("retry", "max_retries"),
    "page_timeout": ("timeout", "page"),
    "connect_timeout": ("timeout", "connect"),
    "read_timeout": ("timeout", "read"),
    "timeout": ("timeout", "request"),
}


def fast_client(base_url: str, **kwargs: Any) -> aiorunlist.Client:
    """A client for tests: quick retries; flat settings grouped into Retries and Timeouts."""
    kwargs.setdefault("initial_retry_delay", 0.001)
    kwargs.setdefault("max_retry_delay", 0.01)
    groups: dict[str, dict[str, Any]] = {"retry": {}, "timeout": {}}
    for name in list(kwargs):
        if name in _GROUPED:
            group, attribute = _GROUPED[name]
            groups[group][attribute] = kwargs.pop(name)
    kwargs.setdefault("api_key", API_KEY)
    return aiorunlist.Client(
        base_url=base_url,
        retry=aiorunlist.Retries(**groups["retry"]),
        timeout=aiorunlist.Timeouts(**groups["timeout"]),
        **kwargs,
    )


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[aiorunlist.Client]:
    async with fast_client(server.base_url, timeout=5) as c:
        yield c


def other_tasks() -> set[asyncio.Task[object]]:
    """The client-side tasks other than the current one (to show nothing was left running).

    The fake server runs in the same loop; its own tasks (one per connection, one per request
    still being answered) are not the client's and are left out.
    """
    current = asyncio.current_task()
    found = set()
    for task in asyncio.all_tasks():
        if task is current:
            continue
        coro = task.get_coro()
        code = getattr(coro, "cr_code", None)
        filename = code.co_filename if code is not None else ""
        if "aiohttp/web_" in filename or "/aiorunlist/testing/" in filename:
            continue
        if getattr(code, "co_qualname", "").startswith("Event.wait"):
            continue  # the fake server's delayed answers wait on an event
        found.add(task)
    return found


def budget_of(client: aiorunlist.Client) -> RetryBudget:
    """The retry budget of a client with the default (local) traffic control."""
    control = client.control
    assert isinstance(control, aiorunlist.LocalTrafficControl)
    assert control.budget is not None
    return control.budget


def pacer_of(client: aiorunlist.Client) -> Pacer:
    """The pause and pacing state of a client with the default (local) traffic control."""
    control = client.control
    assert isinstance(control, aiorunlist.LocalTrafficControl)
    return control.pacer


#: The base URL of socket-free clients: nothing listens there, nothing is resolved.
SOCKETLESS_URL = "https://fake.test/v1"


@pytest.fixture
def socketless_server() -> FakeServer:
    """A fake server that is never started: clients reach it through a MockTransport."""
    return FakeServer(api_key=API_KEY)


@pytest.fixture
async def socketless_client(socketless_server: FakeServer) -> AsyncIterator[aiorunlist.Client]:
    """A client whose requests reach `socketless_server` without any socket."""
    transport = MockTransport(socketless_server.handle)
    async with fast_client(SOCKETLESS_URL, timeout=5, transport=transport) as c:
        yield c


@pytest.fixture
async def http_server() -> AsyncIterator[FakeServer]:
    """The fake server on 127.0.0.1, for modules whose `server` is socket-free."""
    async with FakeServer(api_key=API_KEY) as srv:
        yield srv


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL on a free loopback port, for the whole session."""
    bindir = find_binaries()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb/pg_ctl on PATH or under "
            "/usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def sink_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty sink: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@contextlib.contextmanager
def running_redis(*args: str, aof: bool = False) -> Iterator[RedisServer]:
    """A throwaway redis-server on a free loopback port, started with ``args`` (the test is
    skipped without one), stopped after the block."""
    try:
        server = RedisServer(aof=aof)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        server.start(*args)
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server on a free loopback port (the test is skipped without one)."""
    with running_redis() as server:
        yield server
