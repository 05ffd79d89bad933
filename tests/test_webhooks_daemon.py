"""The whole path in a running daemon: ingest API → store queue → dispatcher → receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tuiaudit.config import Settings
from tuiaudit.daemon.service import running_daemon
from tuiaudit.storage import open_store
from tuiaudit.webhook_payload import SIGNATURE_HEADER, verify_signature


async def test_daemon_delivers_a_submitted_webhook_event(store_url: str) -> None:
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        async with open_store(store_url) as store:
            await store.add_webhook(hook_url, secret="k", event_names=["team-created"])

        settings = Settings(
            store=store_url, listen="127.0.0.1:0", flags=("audit-log", "webhooks"), jitter=0
        )
        async with running_daemon(settings) as daemon, aiohttp.ClientSession() as client:
            submit = f"http://127.0.0.1:{daemon.port}/api/audit/submit"
            events: list[dict[str, Any]] = [
                {"name": "team-created", "type": "action", "props": {"n": 1}, "webhook": True},
                {"name": "not-wanted", "type": "action", "webhook": True},
                {"name": "team-created", "type": "action", "props": {"n": 2}},  # not marked
            ]
            async with client.post(submit, json={"events": events}) as resp:
                assert resp.status == 204, await resp.text()
            # The dispatcher polls every second; the wait bounds a hang, it is not a timing check.
            headers, body = await asyncio.wait_for(received.get(), timeout=30)

        event = orjson.loads(body)
        assert event["name"] == "team-created" and event["props"] == {"n": 1}
        assert set(event) == {"id", "name", "profile-id", "props", "tracked-at", "created-at"}
        assert verify_signature(body, "k", headers[SIGNATURE_HEADER])
        assert received.empty()

        async with open_store(store_url) as store:
            [delivery] = await store.recent_deliveries()
            assert delivery.status == "delivered"
    finally:
        await runner.cleanup()
