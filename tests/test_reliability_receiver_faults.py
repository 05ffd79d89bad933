"""One scenario through the shipper's run loop: a receiver cycling 500, 502, 429 (Retry-After
in seconds, then as an HTTP date), a timeout, a connection reset, 413 and 401.

``tests/test_shipper.py`` and ``tests/test_retry.py`` prove each answer on its
own; this runs them back to back through ``Shipper.run`` (the daemon's
component) on a fake clock, and checks the classification in the ledger, the
back-off envelope between attempts, the quarantine count, and that the queue
drains afterwards (no stall).
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

from aiohttp import web
from shipper_support import FakeClock, consent, rows, settings_for, shipper_for

from tuiaudit.codec import decode_envelope, kw
from tuiaudit.daemon.retry import RETRY_AFTER_CAP_S

INITIAL = 30.0
INTERVAL = 3600.0


class CyclingReceiver:
    """Answers the events POSTs from a script of fault names; reports always get 204."""

    def __init__(self, clock: FakeClock, script: list[str]) -> None:
        self.clock = clock
        self.script = list(script)
        self.answered: list[str] = []
        self.received: list[str] = []
        self.done = asyncio.Event()
        self.expect = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if b"telemetry-legacy-report" in body[:64]:
            return web.Response(status=204)
        fault = self.script.pop(0) if self.script else "ok"
        self.answered.append(fault)
        if fault == "timeout":
            await asyncio.sleep(2)  # longer than the shipper's 0.3 s limit
        if fault == "reset":
            assert request.transport is not None
            request.transport.abort()  # the peer vanishes mid-request
            return web.Response(status=204)  # never reaches the client
        if fault.startswith("429-date"):
            when = self.clock.now + timedelta(seconds=int(fault.split(":")[1]))
            return web.Response(status=429, headers={"Retry-After": format_datetime(when, True)})
        if fault.startswith("429"):
            return web.Response(status=429, headers={"Retry-After": fault.split(":")[1]})
        if fault in ("500", "502", "413", "401"):
            return web.Response(status=int(fault), text="scripted fault")
        ids = [str(e[kw("id")]) for e in decode_envelope(body)["events"]]
        self.received.extend(ids)
        if len(self.received) >= self.expect:
            self.done.set()
        return web.Response(status=204)


async def serve(rx: CyclingReceiver) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/{tail:.*}", rx.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rx.url = f"http://127.0.0.1:{port}/telemetry"
    return runner


SCRIPT = ["500", "502", "429:120", "429-date:300", "timeout", "reset", "ok", "413", "413", "ok"]
SCRIPT += ["401"]  # then "ok" for everything
RETRYABLE = {"500", "502", "429:120", "429-date:300", "timeout", "reset"}
# Retry-After as a minimum: exact in seconds; an HTTP date has one-second resolution.
MINIMUM = {"429:120": (120.0, 120.0), "429-date:300": (299.0, 300.0)}


async def test_the_fault_cycle_classifies_backs_off_quarantines_and_drains(store: Any) -> None:
    page = rows(6)  # three pages of two
    await store.insert_rows(page)
    await consent(store)
    clock = FakeClock()
    rx = CyclingReceiver(clock, SCRIPT)
    rx.expect = 5  # every row but the one the receiver keeps rejecting
    runner = await serve(rx)
    stop = asyncio.Event()
    settings = settings_for(
        rx.url, batch_rows=2, interval=INTERVAL, backoff_initial=INITIAL, request_timeout=0.3
    )
    try:
        async with shipper_for(store, settings, clock=clock) as sh:
            task = asyncio.create_task(sh.run(stop))
            await asyncio.wait_for(rx.done.wait(), 60)
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        await runner.cleanup()

    # No stall: every row but one arrived, the lone rejected row is in quarantine.
    assert sorted(rx.received) == sorted(str(r.id) for i, r in enumerate(page) if i != 2)
    stats = await store.queue_stats()
    assert (stats.pending, stats.quarantined) == (0, 1)
    [q] = await store.list_quarantine()
    assert q.row.id == page[2].id and "413" in q.reason
    assert rx.answered == [*SCRIPT, "ok"]  # 413 on the 2-row page, 413 on its first half

    attempts = sorted(
        (e for e in await store.ledger_recent(100) if e.kind == "events"), key=lambda e: e.id
    )
    assert [e.error_class for e in attempts] == [
        *["retryable"] * 6,  # 500, 502, 429, 429, timeout, reset
        None,  # page 1 sent
        "malformed",  # 413: the 2-row page 2 is split
        "malformed",  # 413 again on its first half: that row is quarantined
        None,  # the second half
        "config",  # 401 on page 3
        None,  # page 3 at the next scheduled run
    ]
    assert [e.http_status for e in attempts][:6] == [500, 502, 429, 429, None, None]
    assert [e.http_status for e in attempts][7:9] == [413, 413]
    assert attempts[10].http_status == 401
    assert all(e.status == "ok" and e.http_status == 204 for e in attempts if not e.error_class)
    assert "time limit" in (attempts[4].error or "")
    assert "cannot reach" in (attempts[5].error or "")

    # Back-off envelope: after the f-th consecutive retryable failure the next attempt
    # starts within [Retry-After or 0, max(Retry-After, 30 s × 2^(f-1))], capped at 1 h.
    for f, (failed, nxt) in enumerate(itertools.pairwise(attempts[:7]), 1):
        assert failed.ended_at is not None
        gap = (nxt.started_at - failed.ended_at).total_seconds()
        floor, asked = MINIMUM.get(SCRIPT[f - 1], (0.0, 0.0))
        assert floor <= gap <= min(max(asked, INITIAL * 2 ** (f - 1)), RETRY_AFTER_CAP_S), (f, gap)
    # A configuration error is not retried early: the next try is the next scheduled run.
    assert attempts[10].ended_at is not None
    gap = (attempts[11].started_at - attempts[10].ended_at).total_seconds()
    assert gap > 60.0
    assert attempts[11].started_at - attempts[0].started_at <= timedelta(seconds=2 * INTERVAL)
