"""The fleet's receiver (run inside its own namespace): telemetry and webhooks.

``python receiver.py HOST PORT OUT_DIR``. Telemetry envelopes go to the
project's own receiver (``daemon.receiver.make_receiver_app``) under ``/t/``,
which de-duplicates events by id and writes each envelope's fresh events to
``OUT_DIR/telemetry.jsonl``. ``POST /hook`` takes webhook deliveries (every
arrival is kept: event id, delivery id, time). ``GET /state`` answers what
arrived, with the arrival time of every duplicate so the harness can tell
which fault caused it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tuiaudit.daemon.receiver import STATE_KEY, make_receiver_app


def build(out_dir: Path) -> web.Application:
    tele = make_receiver_app(out_dir / "telemetry.jsonl")
    state = tele[STATE_KEY]
    envelopes: list[tuple[float, int, int]] = []  # (time, ids, duplicate ids)
    hooks: list[tuple[float, str | None, str | None]] = []

    @web.middleware
    async def timed(request: web.Request, handler: Any) -> web.StreamResponse:
        before_len, before_dup = len(state.log), state.duplicate_events
        resp: web.StreamResponse = await handler(request)
        if len(state.log) > before_len:
            n = sum(len(ids) for _, ids in state.log[before_len:])
            envelopes.append((time.time(), n, state.duplicate_events - before_dup))
        return resp

    tele.middlewares.append(timed)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event_id = orjson.loads(body).get("id")
        except (orjson.JSONDecodeError, AttributeError):
            event_id = None
        hooks.append((time.time(), event_id, request.headers.get("X-Tuiaudit-Delivery")))
        return web.Response(status=204)

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "telemetry": {
                    "requests": state.requests,
                    "envelopes": state.envelopes,
                    "events": state.events,
                    "reports": state.reports,
                    "duplicate-envelopes": state.duplicate_envelopes,
                    "duplicate-events": state.duplicate_events,
                    "key-mismatches": state.key_mismatches,
                    "rejected": state.rejected,
                    "dropped": state.dropped,
                    "arrivals": envelopes,
                },
                "hooks": hooks,
            },
            dumps=lambda v: orjson.dumps(v).decode(),
        )

    root = web.Application()
    root.router.add_post("/hook", hook)
    root.router.add_get("/state", get_state)
    root.add_subapp("/t/", tele)
    return root


async def main(host: str, port: int, out_dir: Path) -> None:
    runner = web.AppRunner(build(out_dir), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("receiver-ready", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
