"""The CLI and a running daemon agree (issue 14, items 1 and 2), through the real CLI.

A daemon runs with a telemetry URI; the commands run without one and take
the daemon's: ``status`` shows its URI and holds only for the consent,
``consent --accept`` wakes it (the loopback receiver gets the batch without
a scheduled run), ``tuiaudit ship`` asks it to ship now and prints the
outcome, and ``status --json`` lists the SHA-256 of every body the receiver
got, newest first.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
from cli_support import daemon, run_cli
from shipper_support import Received, ScriptedReceiver

EVENT = {"name": "file-created", "type": "action", "props": {"n": 1}}


async def _submit(url: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.post(f"{url}/api/audit/submit", json=EVENT) as resp:
                assert resp.status == 204, await resp.text()


async def test_commands_take_the_live_daemons_settings_and_ask_it_to_ship(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "audit.db")
    receiver = ScriptedReceiver()
    events_arrived = asyncio.Event()

    def on_request(rec: Received) -> None:
        if rec.json.get("type") == "telemetry-events":
            events_arrived.set()

    receiver.on_request = on_request
    async with receiver.serve() as rx:
        # A long interval: only the start-up run is scheduled, every later send
        # is the consent waking the daemon or `tuiaudit ship` asking it.
        async with daemon(
            store, "--telemetry-uri", rx.url, "--jitter", "0", "--interval", "86400"
        ) as d:
            await _submit(d.url, 3)

            status = await run_cli("status", "--json", "--store", store)
            assert status.code == 0, status.err
            data = status.json
            assert data["telemetry-uri"] == rx.url  # the daemon's, not "no telemetry uri"
            assert "not accepted" in data["held"]
            assert "no telemetry uri" not in data["forecast"]["text"].lower()
            assert rx.events_requests() == []

            accepted = await run_cli("consent", "--accept", "--store", store)
            assert accepted.code == 0, accepted.err
            assert f"sends to {rx.url}" in accepted.out
            assert "no telemetry URI" not in accepted.out
            # The daemon re-evaluates at once: no scheduled run is due for a day.
            await asyncio.wait_for(events_arrived.wait(), 30)
            status = await run_cli("status", "--json", "--store", store)
            assert status.json["held"] is None and status.json["shipping"] == "active"

            first = len(rx.events_requests())
            await _submit(d.url, 2)
            shipped = await run_cli("ship", "--store", store)  # no --telemetry-uri given
            assert shipped.code == 0, shipped.err
            assert "asked the daemon" in shipped.err
            assert shipped.out.startswith("tuiaudit ship: sent ")
            assert "{" not in shipped.out and "True" not in shipped.out
            assert len(rx.events_requests()) == first + 1
            last = rx.events_requests()[-1].json
            assert last["instance-id"]  # a real batch from the daemon

            status = await run_cli("status", "--json", "--attempts", "50", "--store", store)
            attempts = status.json["attempts"]
            got = [hashlib.sha256(r.body).hexdigest() for r in rx.requests]
            assert [a["sha256"] for a in attempts] == got[::-1]
            text = await run_cli("status", "--attempts", "50", "--store", store)
            for sha in got:
                assert f"sha256 {sha}" in text.out


async def test_ship_without_a_daemon_runs_here_and_local_forces_it(tmp_path: Path) -> None:
    store = str(tmp_path / "audit.db")
    assert (await run_cli("migrate", "--store", store)).code == 0
    held = await run_cli("ship", "--store", store)
    assert held.code == 3, held.err
    # The shipper's words for the hold are status's and the dashboard's (tuiaudit.holds).
    assert (
        held.out == "tuiaudit ship: nothing sent: held (no telemetry URI: set --telemetry-uri).\n"
    )
    assert "asked the daemon" not in held.err
