"""A telemetry receiver for local use: the demo's endpoint and the tests' peer.

Accepts the two envelopes the shipper posts (``telemetry-events`` with a blob
v4, ``telemetry-legacy-report`` as is) on any path, de-duplicates by
``Idempotency-Key`` and by event id (events without an id are all kept: the
reference's wire format carries none), appends one JSON line per accepted
envelope (events decoded to tagged JSON, written in order just after the
answer) and answers ``204``. It can
misbehave on purpose: ``fail_rate`` answers a random share with ``503``,
``status`` answers every request with that status, ``delay`` waits before
answering.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tuiaudit.codec import (
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_OUTPUT_BYTES,
    DecodeError,
    Keyword,
    decode_blob,
    kw,
    to_tagged_json,
)
from tuiaudit.daemon import problems
from tuiaudit.daemon.guards import (
    GUARD_KEY,
    GuardedSite,
    Limits,
    connection_guard,
    install_guard,
    quiet_aiohttp_logs,
)
from tuiaudit.daemon.logs import log_event

log = logging.getLogger("tuiaudit.daemon.receiver")

EVENTS_TYPE = "telemetry-events"
REPORT_TYPE = "telemetry-legacy-report"
HEADERS_OF_INTEREST = ("idempotency-key", "content-type", "user-agent")
_K_ID = kw("id")


@dataclass
class ReceiverState:
    """What the receiver has seen (tests and the demo read it in process)."""

    keys: set[str] = field(default_factory=set)
    event_ids: dict[str, str] = field(default_factory=dict)
    """Event id (text) -> the Idempotency-Key it first arrived under."""
    envelopes: int = 0
    events: int = 0
    reports: int = 0
    duplicate_envelopes: int = 0
    duplicate_events: int = 0
    key_mismatches: int = 0
    """Duplicate event ids that came back under a different Idempotency-Key."""
    failures_injected: int = 0
    rejected: int = 0
    write_errors: int = 0
    """Accepted envelopes whose line could not be rendered or written (logged)."""
    dropped: int = 0
    """Requests whose sender dropped the connection before the body arrived."""
    requests: int = 0
    log: list[tuple[str | None, list[str]]] = field(default_factory=list)
    """Every events envelope received (including duplicates): (key, event ids)."""

    def remember(self, key: str | None, ids: Iterable[str | None]) -> list[str]:
        """Record ids; return those not seen before (``None``, no id: never a duplicate)."""
        fresh = []
        for i in ids:
            if i is None:
                continue
            first = self.event_ids.get(i)
            if first is None:
                self.event_ids[i] = key or ""
                fresh.append(i)
            else:
                self.duplicate_events += 1
                if first != (key or ""):
                    self.key_mismatches += 1
        return fresh


STATE_KEY: web.AppKey[ReceiverState] = web.AppKey("receiver_state", ReceiverState)
WRITER_KEY: web.AppKey[asyncio.Task[None]] = web.AppKey("receiver_writer", asyncio.Task)


class _Out:
    """The JSON-lines file, opened once, appended with one write per envelope."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fd: int | None = None

    def open(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # 0600 like the store: the lines hold what the instances sent.
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, line: bytes) -> None:
        if self.fd is not None:
            os.write(self.fd, line)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _problem(status: int, detail: str) -> web.Response:
    """An RFC 9457 problem: 400 for a bad envelope, any other status is injected on purpose."""
    code = "invalid-envelope" if status == 400 else "injected-failure"
    return problems.problem(status, problems.family_for(status), code, detail)


def make_receiver_app(
    out_path: str | os.PathLike[str] | None,
    *,
    fail_rate: float = 0.0,
    status: int | None = None,
    delay: float = 0.0,
    rng: random.Random | None = None,
    limits: Limits | None = None,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> web.Application:
    """The receiver as an aiohttp application (``tuiaudit receiver`` serves it).

    ``limits`` bounds slow clients (``serve`` applies it); ``max_bytes`` and
    ``max_elements`` bound what one blob may decode to (DESIGN §8.2).
    """
    if not 0.0 <= fail_rate <= 1.0:
        raise ValueError(f"fail_rate must be between 0 and 1, got {fail_rate}")
    rng = rng or random.Random()
    state = ReceiverState()
    out = _Out(Path(out_path) if out_path is not None else None)
    app = web.Application(client_max_size=64 * 2**20, middlewares=[connection_guard])
    app[STATE_KEY] = state
    install_guard(app, limits or Limits(), name="receiver")

    # Lines are rendered and written by one task, in arrival order, after the
    # answer: the sender waits for the decode and the de-duplication only.
    lines: asyncio.Queue[Callable[[], bytes]] = asyncio.Queue()

    async def write_lines() -> None:
        # Never dies on one envelope: a line that cannot be rendered or written
        # is logged and counted, and the next one is written (DESIGN §8.2).
        while True:
            render = await lines.get()
            try:
                line = await asyncio.to_thread(render)
                await asyncio.to_thread(out.write, line)
            except Exception as exc:
                state.write_errors += 1
                log_event(log, "receiver-write-failed", logging.ERROR, error=type(exc).__name__)
            finally:
                lines.task_done()

    async def on_startup(a: web.Application) -> None:
        out.open()
        a[WRITER_KEY] = asyncio.create_task(write_lines(), name="receiver-writer")

    async def on_cleanup(a: web.Application) -> None:
        if not a[WRITER_KEY].done():  # (it cannot die, but a stop must never hang on it)
            await lines.join()  # every accepted envelope is on disk before the file closes
        a[WRITER_KEY].cancel()
        await asyncio.gather(a[WRITER_KEY], return_exceptions=True)
        out.close()

    async def handle(request: web.Request) -> web.StreamResponse:
        state.requests += 1
        if delay > 0:
            await asyncio.sleep(delay)
        if status is not None:
            state.failures_injected += 1
            return _problem(status, f"this receiver answers {status} on purpose (--status)")
        if fail_rate and rng.random() < fail_rate:
            state.failures_injected += 1
            return _problem(503, "this receiver fails on purpose (--fail-rate)")
        try:
            body = await request.read()
        except ConnectionError:
            # The sender dropped the connection mid-body: nothing to answer, and
            # no aiohttp traceback on the terminal (it retries with the same key).
            state.dropped += 1
            return web.Response(status=400)
        sha256 = hashlib.sha256(body).hexdigest()
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            state.rejected += 1
            return _problem(400, "the body is not JSON")
        if not isinstance(envelope, dict):
            state.rejected += 1
            return _problem(400, "the body must be a JSON object")
        headers = {h: request.headers[h] for h in HEADERS_OF_INTEREST if h in request.headers}
        key = request.headers.get("Idempotency-Key")
        kind = envelope.get("type")
        if kind == REPORT_TYPE:
            state.reports += 1
            line = {
                "received-at": time.time(),
                "sha256": sha256,  # of the exact body: compare with `tuiaudit status`
                "headers": headers,
                "envelope": envelope,
            }
            lines.put_nowait(lambda: orjson.dumps(line) + b"\n")
            return web.Response(status=204)
        if kind != EVENTS_TYPE:
            state.rejected += 1
            return _problem(400, f"unknown envelope type {kind!r}")
        try:
            events = await asyncio.to_thread(
                functools.partial(decode_blob, max_bytes=max_bytes, max_elements=max_elements),
                envelope.get("events", ""),
            )
        except DecodeError as exc:
            state.rejected += 1
            return _problem(400, f"the events blob does not decode: {exc}")
        if not isinstance(events, list):
            state.rejected += 1
            return _problem(400, "the events blob must hold a vector of events")
        ids = [_event_id(e) for e in events]
        state.log.append((key, [i or "" for i in ids]))
        if key is not None and key in state.keys:
            state.duplicate_envelopes += 1
            state.remember(key, ids)
            return web.Response(status=204)
        if key is not None:
            state.keys.add(key)
        fresh = set(state.remember(key, ids))
        kept = [e for e, i in zip(events, ids, strict=True) if i is None or i in fresh]
        state.envelopes += 1
        state.events += len(kept)
        lines.put_nowait(lambda: _events_line(envelope, kept, headers, len(events), sha256))
        return web.Response(status=204)

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("POST", "/{tail:.*}", handle)
    return app


def _event_id(event: Any) -> str | None:
    """The event's id as text; None when it has none (such events are never duplicates)."""
    if not isinstance(event, dict):
        return None
    value = event.get(_K_ID)
    return None if value is None else str(value)


def _events_line(
    envelope: dict[str, Any],
    events: list[dict[Keyword, Any]],
    headers: dict[str, str],
    sent: int,
    sha256: str,
) -> bytes:
    line = {
        "received-at": time.time(),
        "sha256": sha256,  # of the exact body: compare with `tuiaudit status`
        "headers": headers,
        "type": envelope.get("type"),
        "version": envelope.get("version"),
        "instance-id": envelope.get("instance-id"),
        "count": len(events),
        "duplicates": sent - len(events),
        "events": to_tagged_json(events),
    }
    return orjson.dumps(line) + b"\n"


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port`` (0 = any free port); return the runner and the port."""
    guard = app[GUARD_KEY]
    quiet_aiohttp_logs()
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=guard.limits.keepalive_timeout)
    await runner.setup()
    site = GuardedSite(runner, host, port, guard)
    await site.start()
    return runner, site.port
