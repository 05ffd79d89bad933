"""Test parts for the shipper: telemetry rows, a scripted receiver, a fake clock.

The scripted receiver is a real aiohttp server on 127.0.0.1 port 0 that
answers from a script (status, headers, a delay) and records every request.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tuiaudit.config import Settings
from tuiaudit.consent import accept
from tuiaudit.daemon.shipper import Shipper
from tuiaudit.ids import uuid7
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage.base import AuditRow

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
INSTANCE = uuid.UUID("11111111-2222-4333-8444-555555555555")


def telemetry_row(
    i: int,
    *,
    created_at: datetime = T0,
    name: str | None = None,
    props: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    source: str = "telemetry:backend",
) -> AuditRow:
    day = created_at.replace(hour=0, minute=0, second=0, microsecond=0)
    return AuditRow(
        id=uuid7(created_at),
        name=name or f"event-{i}",
        type="action",
        source=source,
        profile_id=uuid.UUID(int=i + 1),
        ip_addr="0.0.0.0",
        props={"n": i, "ok": True} if props is None else props,
        context={} if context is None else context,
        tracked_at=day,
        created_at=created_at,
    )


def rows(n: int, *, start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> list[AuditRow]:
    return [telemetry_row(i, created_at=start + i * step) for i in range(n)]


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: str = ""


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


class ScriptedReceiver:
    """Answers requests from ``script`` (then ``default``); records them all."""

    def __init__(self, script: list[Reply] | None = None, default: Reply | None = None) -> None:
        self.script = list(script or [])
        self.default = default or Reply()
        self.requests: list[Received] = []
        self.on_request: Callable[[Received], Reply | None] | None = None
        self.url = ""

    def events_requests(self) -> list[Received]:
        return [r for r in self.requests if r.json.get("type") == "telemetry-events"]

    def report_requests(self) -> list[Received]:
        return [r for r in self.requests if r.json.get("type") == "telemetry-legacy-report"]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Received(request.path, dict(request.headers), await request.read())
        self.requests.append(rec)
        reply = self.on_request(rec) if self.on_request else None
        if reply is None:
            reply = self.script.pop(0) if self.script else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[ScriptedReceiver]:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/telemetry"
        try:
            yield self
        finally:
            await runner.cleanup()


def settings_for(url: str | None, **overrides: Any) -> Settings:
    base = Settings(telemetry_uri=url, jitter=0.0, flags=("audit-log", "telemetry"))
    return replace(base, **overrides)


async def consent(store: Any) -> None:
    await accept(store, POLICY_VERSION)


@asynccontextmanager
async def shipper_for(
    store: Any, settings: Settings, *, clock: FakeClock | None = None, seed: int = 1, **kw: Any
) -> AsyncIterator[Shipper]:
    clock = clock or FakeClock()
    async with aiohttp.ClientSession() as session:
        yield Shipper(
            store,
            settings,
            session=session,
            instance_id=INSTANCE,
            version="9.9.9",
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(seed),
            **kw,
        )
