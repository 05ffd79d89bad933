"""Fuzz the ingest API: random JSON and random bytes never get a 5xx, and it stays healthy.

A real daemon on 127.0.0.1 port 0 (SQLite in tmp_path) runs on a private
event loop for the whole test; each hypothesis example drives that loop to
post one body. ``TUIAUDIT_FUZZ_EXAMPLES`` sets the example count (default 200).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tuiaudit.daemon.service import running_daemon

from tuiaudit.config import Settings

EXAMPLES = int(os.environ.get("TUIAUDIT_FUZZ_EXAMPLES", "200"))
PATHS = ("/api/audit/events", "/api/audit/submit")


class Server:
    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.settings = Settings(
            store=f"sqlite:///{tmp}/fuzz.db", listen="127.0.0.1:0", max_body=64 * 1024
        )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def start(self) -> None:
        self.daemon = await self.stack.enter_async_context(
            running_daemon(self.settings, components=[])
        )
        self.client = await self.stack.enter_async_context(aiohttp.ClientSession())
        self.base = f"http://127.0.0.1:{self.daemon.port}"

    async def post(self, path: str, body: bytes) -> int:
        headers = {"Content-Type": "application/json"}
        async with self.client.post(self.base + path, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def health(self) -> int:
        async with self.client.get(self.base + "/healthz") as resp:
            return resp.status


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("fuzz"))
    srv.run(srv.start())
    try:
        yield srv
    finally:
        srv.run(srv.stack.aclose())
        srv.loop.close()


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.uuids().map(str),
    st.sampled_from(["2024-05-01T12:00:00Z", "not a time", "action", "identify", "trigger", ""]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
keys = st.sampled_from(
    [
        "name",
        "type",
        "props",
        "context",
        "timestamp",
        "profile-id",
        "profile_id",
        "id",
        "tracked-at",
        "ip-addr",
        "webhook",
        "events",
        "source",
    ]
)
event_like = st.dictionaries(keys, json_values, max_size=8)
bodies = st.one_of(
    json_values,
    event_like,
    st.fixed_dictionaries({"events": st.lists(event_like, max_size=5)}),
    st.fixed_dictionaries(
        {"events": st.lists(event_like, max_size=3)}, optional={"profile-id": json_values}
    ),
)


def _encode(value: Any) -> bytes:
    # allow_nan: NaN/Infinity literals must be refused by the server, not by us.
    return json.dumps(value, allow_nan=True).encode()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(PATHS), body=bodies)
def test_random_json_gets_2xx_or_4xx(server: Server, path: str, body: Any) -> None:
    status = server.run(server.post(path, _encode(body)))
    assert status in (204, 400), (status, body)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=300))
def test_random_bytes_get_4xx(server: Server, path: str, raw: bytes) -> None:
    status = server.run(server.post(path, raw))
    assert status in (204, 400, 413), (status, raw)


def test_still_healthy_after_the_fuzz(server: Server) -> None:
    assert server.run(server.health()) == 200
    ok = _encode({"name": "after-fuzz", "type": "action"})
    assert server.run(server.post("/api/audit/submit", ok)) == 204
