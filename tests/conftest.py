"""Shared fixtures: the anyio backend, a fake server on 127.0.0.1 and a client pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import aiorunlist
from aiorunlist.testing import FakeServer

API_KEY = "sk-test-key-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    async with FakeServer(api_key=API_KEY) as srv:
        yield srv


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[aiorunlist.Client]:
    async with aiorunlist.Client(
        API_KEY,
        base_url=server.base_url,
        initial_retry_delay=0.001,
        max_retry_delay=0.01,
        timeout=5,
    ) as c:
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
