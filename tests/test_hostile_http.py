"""Issue 13, hostile clients of the daemon's ingest API, reproduced on loopback.

Each test runs the attack against the real daemon and then checks that the
daemon still answers (``/healthz``) and still stores honest requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tuiaudit.config import Settings
from tuiaudit.daemon.service import Daemon, _supervise, running_daemon
from tuiaudit.storage.base import AuditFilter

SUBMIT = "/api/audit/submit"
EVENTS = "/api/audit/events"
JSON = {"Content-Type": "application/json"}


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base = Settings(store=str(tmp_path / "s.db"), listen="127.0.0.1:0", flags=("audit-log",))
    return replace(base, **kw)


@asynccontextmanager
async def daemon_and_client(
    s: Settings,
) -> AsyncIterator[tuple[Daemon, aiohttp.ClientSession, str]]:
    async with running_daemon(s, components=[]) as d, aiohttp.ClientSession() as c:
        yield d, c, f"http://127.0.0.1:{d.port}"


async def healthy(c: aiohttp.ClientSession, base: str) -> None:
    async with c.get(base + "/healthz") as r:
        assert r.status == 200


async def stored_names(d: Daemon) -> list[str]:
    rows = await d.store.fetch_rows(AuditFilter(), limit=1000)
    return sorted(r.name for r in rows if r.name != "instance-start")


# ------------------------------------------------------------ 1. cross-site


async def test_cross_site_writes_are_refused_server_to_server_is_not(tmp_path: Path) -> None:
    s = settings(tmp_path, allowed_origins=("https://app.example",))
    async with daemon_and_client(s) as (d, c, base):
        event = {"name": "forged", "type": "action"}
        # A page's "simple" request: text/plain needs no CORS preflight.
        async with c.post(base + SUBMIT, data=b'{"name":"forged","type":"action"}',
                          headers={"Content-Type": "text/plain"}) as r:  # fmt: skip
            assert r.status == 415
            assert (await r.json())["code"] == "content-type-not-json"
        for headers in (
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "cross-site"},
        ):
            async with c.post(base + SUBMIT, json=event, headers=headers) as r:
                assert r.status == 403, headers
        # +json and other charsets are refused too (decided: only application/json).
        for ctype in ("application/vnd.api+json", "application/json; charset=latin-1"):
            async with c.post(base + SUBMIT, data=b"{}", headers={"Content-Type": ctype}) as r:
                assert r.status == 415, ctype
        assert await stored_names(d) == []
        # Allowed: server-to-server (no Origin), the allowed origin, same-site fetches.
        for i, headers in enumerate(
            (
                {},
                {"Origin": "https://app.example"},
                {"Sec-Fetch-Site": "same-origin"},
                {"Content-Type": "application/json; charset=utf-8"},
            )
        ):
            body = {"name": f"ok-{i}", "type": "action"}
            async with c.post(base + SUBMIT, json=body, headers=headers) as r:
                assert r.status == 204, headers
        assert await stored_names(d) == ["ok-0", "ok-1", "ok-2", "ok-3"]
        await healthy(c, base)


# ------------------------------------------------------- 2. control characters


async def test_control_characters_in_names_types_and_keys_are_400(tmp_path: Path) -> None:
    async with daemon_and_client(settings(tmp_path)) as (d, c, base):
        bad = [
            ({"name": "login\r\nX-Evil: 1", "type": "action"}, "name"),
            ({"name": "ok", "type": "act\x1bion"}, "type"),
            ({"name": "ok", "type": "action", "props": {"a\x85b": 1}}, 'props["a\\x85b"]'),
            ({"name": "ok", "type": "action", "props": {"x": {"deep\x7f": 1}}}, "props.x"),
            ({"name": "ok", "type": "action", "context": {"\x00": 1}}, "context"),
        ]
        for event, field in bad:
            async with c.post(base + SUBMIT, json=event) as r:
                assert r.status == 400, event
                [error] = (await r.json())["errors"]
                assert error["path"].startswith(field) and "control characters" in error["reason"]
        # Values may hold newlines (a multi-line comment is data, shown escaped).
        ok = {"name": "ok", "type": "action", "props": {"text": "line 1\nline 2"}}
        async with c.post(base + SUBMIT, json=ok) as r:
            assert r.status == 204
        assert await stored_names(d) == ["ok"]
        await healthy(c, base)


async def test_restart_back_off_resets_after_a_healthy_period() -> None:
    now = [0.0]
    waits: list[float] = []
    stop = asyncio.Event()

    class Crashy:
        runs = 0

        async def run(self, stop: asyncio.Event) -> None:
            self.runs += 1
            if self.runs == 5:
                now[0] += 120.0  # this time it ran healthy for two minutes first
            raise RuntimeError("boom")

    async def wait(_stop: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 6:
            stop.set()

    await _supervise("crashy", Crashy(), stop, clock=lambda: now[0], wait=wait)
    # It grew while the crashes came at once, and started over after the healthy run.
    assert waits == [1.0, 2.0, 4.0, 8.0, 1.0, 2.0]


# ------------------------------------------------------------ 6. slow clients


async def _slow_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /api/audit/submit HTTP/1.1\r\nHost: x\r\n")  # never finished
    await writer.drain()
    return reader, writer


async def test_slow_clients_are_cut_off_and_healthz_still_answers(tmp_path: Path) -> None:
    s = settings(tmp_path, max_connections=8, header_timeout=2.0, body_timeout=1.0)
    async with daemon_and_client(s) as (d, c, base):
        slow = [await _slow_connection(d.port) for _ in range(30)]  # far past the cap
        await healthy(c, base)  # the newest connection gets in: the oldest idle ones go
        # Every slow connection is closed (evicted, or past the head deadline).
        for reader, writer in slow:
            assert await asyncio.wait_for(reader.read(), 30) == b""
            writer.close()
        # A body that never completes: 408, and the daemon goes on.
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        writer.write(
            b"POST /api/audit/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"name":'
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 30)
        assert b" 408 " in head
        writer.close()
        async with c.post(base + SUBMIT, json={"name": "after", "type": "action"}) as r:
            assert r.status == 204
        assert await stored_names(d) == ["after"]


# ----------------------------------------------------------- 7. forwarded-for


async def test_forwarded_for_client_cannot_choose_its_ip(tmp_path: Path) -> None:
    s = settings(tmp_path, trusted_proxies=("127.0.0.1", "10.0.0.0/8"))
    async with daemon_and_client(s) as (d, c, base):
        event = {"name": "a", "type": "action", "timestamp": "2024-05-01T12:00:00Z"}
        # The client wrote 6.6.6.6; the proxy at 10.1.1.1 saw 203.0.113.9.
        forged = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.1.1"}
        async with c.post(base + EVENTS, json={"events": [event]}, headers=forged) as r:
            assert r.status == 204
        [row] = [r for r in await d.store.fetch_rows(AuditFilter(), limit=10) if r.name == "a"]
        assert row.ip_addr == "203.0.113.9"


# ------------------------------------------------------- 8. secrets in logs


async def test_aiohttp_log_lines_carry_no_header_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with daemon_and_client(settings(tmp_path, token="t0ken")) as (d, c, base):
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        # An invalid header line (space before the colon): aiohttp logs the raw line.
        writer.write(b"GET /healthz HTTP/1.1\r\nAuthorization : Bearer SECRET-42\r\n\r\n")
        await writer.drain()
        assert b" 400 " in await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        await healthy(c, base)
    assert "Error handling request" in caplog.text  # logged, as a line without details
    assert "SECRET-42" not in caplog.text
