"""Fuzz the ingest API with near-valid events and check the store, not just the status.

``test_ingest_fuzz.py`` proves random JSON and bytes never get a 5xx; this adds
what a 204 or a 4xx promises: a 204 stored exactly the request's events (mode
A: one row each), anything else stored nothing, and after the run the SQLite
file passes ``PRAGMA integrity_check`` and the daemon still answers.
``TUIAUDIT_FUZZ_EXAMPLES`` sets the number of requests per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fuzz_support import FUZZ, bounded_memory, watchdog
from hypothesis import given
from hypothesis import strategies as st
from tuiaudit.daemon.service import running_daemon

from tuiaudit.config import Settings


class Server:
    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "fuzz.db"
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.settings = Settings(
            store=f"sqlite:///{self.path}", listen="127.0.0.1:0", max_body=64 * 1024,
            flags=("audit-log",),
        )  # fmt: skip

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def start(self) -> None:
        self.daemon = await self.stack.enter_async_context(
            running_daemon(self.settings, components=[])
        )
        self.client = await self.stack.enter_async_context(aiohttp.ClientSession())
        self.base = f"http://127.0.0.1:{self.daemon.port}"

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        async with self.client.post(self.base + path, data=body, headers=headers) as resp:
            text = await resp.read()
            return resp.status, (json.loads(text) if text else {})

    async def rows(self) -> int:
        return int(await self.daemon.store.total_rows())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("ingest-fuzz"))
    srv.run(srv.start())
    try:
        yield srv
    finally:
        srv.run(srv.stack.aclose())
        srv.loop.close()


nasty_text = st.text(max_size=30) | st.sampled_from(
    ["\u0000", "\ud800", "0.0.0.0", "::1", "2001:db8::1", "1.2.3.4\u0000", "a/b", "é" * 300]
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(), nasty_text,
    st.uuids().map(str),
)  # fmt: skip
nested = st.recursive(
    scalars,
    lambda i: st.lists(i, max_size=3) | st.dictionaries(nasty_text, i, max_size=3),
    max_leaves=10,
)
props = st.dictionaries(nasty_text, nested, max_size=5)
timestamps = st.one_of(
    st.integers(-(2**63), 2**63), st.sampled_from(["2024-05-01T12:00:00Z", "2024-13-01T00:00:00Z",
    "2024-05-01T12:00:00+25:00", "", "now"]), st.floats(), nasty_text,
)  # fmt: skip
backend_event = st.fixed_dictionaries(
    {"name": nasty_text, "type": nasty_text},
    optional={
        "props": props, "context": props, "profile-id": st.uuids().map(str) | nasty_text,
        "ip-addr": nasty_text, "tracked-at": timestamps, "webhook": st.booleans() | props,
    },
)  # fmt: skip
frontend_event = st.fixed_dictionaries(
    {"name": st.from_regex(r"[A-Za-z0-9_-]{1,50}", fullmatch=True) | nasty_text,
     "type": st.sampled_from(["action", "identify", "trigger", "other"]),
     "props": props, "timestamp": timestamps},
    optional={"context": props},
)  # fmt: skip
requests = st.one_of(
    st.tuples(st.just("/api/audit/submit"), backend_event),
    st.tuples(st.just("/api/audit/submit"), st.builds(lambda e: {"events": e},
              st.lists(backend_event, max_size=5))),
    st.tuples(st.just("/api/audit/events"), st.builds(lambda e, p: {"events": e, "profile-id": p},
              st.lists(frontend_event, max_size=5), st.uuids().map(str))),
)  # fmt: skip


def _count(body: Any) -> int:
    return len(body["events"]) if "events" in body else 1


@FUZZ
@given(req=requests)
def _fuzz(server: Server, req: tuple[str, Any]) -> None:
    path, body = req
    raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    before = server.run(server.rows())
    with watchdog(30):
        status, problem = server.run(server.post(path, raw))
    after = server.run(server.rows())
    assert status in (204, 400, 409, 413), (status, problem)  # 409: an id already stored
    if status == 204:
        assert after - before == _count(body)  # mode A: exactly one row per event
    else:
        assert after == before, "a refused request stored rows"
        if status == 400:
            assert problem["errors"] and all(e["path"] and e["reason"] for e in problem["errors"])


def test_near_valid_requests_store_all_or_nothing(server: Server) -> None:
    _fuzz(server)


def test_the_daemon_retains_no_memory_per_request(server: Server) -> None:
    """300 fuzz requests sent twice: the second pass leaves (next to) nothing behind.

    (The process's peak RSS over a long hypothesis run measures hypothesis's own
    bookkeeping, so memory is checked here, on a fixed corpus.)"""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # .example() outside @given is meant for consoles
        corpus = [requests.example() for _ in range(300)]
    bodies = [
        (p, json.dumps(b, allow_nan=True).encode("utf-8", "surrogatepass")) for p, b in corpus
    ]

    def run() -> None:
        for path, raw in bodies:
            server.run(server.post(path, raw))

    run()  # warm-up: connection pool, caches, statement cache
    with bounded_memory(1.0):
        run()


def test_store_sound_and_daemon_healthy_after_the_fuzz(server: Server) -> None:
    async def health() -> int:
        async with server.client.get(server.base + "/healthz") as r:
            return r.status

    assert server.run(health()) == 200
    conn = sqlite3.connect(f"file:{server.path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
