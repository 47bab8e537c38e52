"""Test helpers shipped with aiorunlist: a fake Assistants API server and run factories.

`FakeServer` is a real HTTP server (aiohttp) on localhost that implements
``GET /v1/threads/{thread_id}/runs`` like the OpenAI Assistants API v2, with switches for lax
compatible servers and on-demand faults (`Fault`, `FakeServer.chaos`); `make_run` and
`make_runs` build realistic run objects. `MockTransport` answers a client's requests from a
function of yours, without sockets. `RateLimit` makes the fake server rate-limited.

Example::

    async with FakeServer() as server:
        (thread_id,) = server.seed(1, runs_per_thread=45)
        # point a client at server.base_url with api_key=server.api_key
"""

from ._data import BASE_CREATED_AT, make_id, make_run, make_runs
from ._mock import MockResponse, MockTransport
from ._server import CHAOS_KINDS, FakeServer, Fault, Quirks, RateLimit, RecordedRequest

__all__ = [
    "BASE_CREATED_AT",
    "CHAOS_KINDS",
    "FakeServer",
    "Fault",
    "MockResponse",
    "MockTransport",
    "Quirks",
    "RateLimit",
    "RecordedRequest",
    "make_id",
    "make_run",
    "make_runs",
]
