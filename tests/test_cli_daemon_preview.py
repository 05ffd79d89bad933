"""preview and consent take the live daemon's settings; one wording for a hold; the run log.

Issue 14, through the real CLI and a real daemon subprocess: a daemon runs
with a telemetry URI and small batches; ``preview`` (given neither) builds
the daemon's batch and says sending is configured; a hold reads the same in
``preview``, ``status``, ``consent`` and the daemon's own run log; each run
logs one line whose SHA-256s are those of the bodies the receiver got.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
from cli_support import daemon, run_cli
from shipper_support import Received, ScriptedReceiver

from tuiaudit.codec import decode_envelope
from tuiaudit.policy import POLICY_VERSION

EVENT = {"name": "file-created", "type": "action", "props": {"n": 1}}
NOT_ACCEPTED = f"policy v{POLICY_VERSION} not accepted: `tuiaudit consent --accept`"


async def _submit(url: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.post(f"{url}/api/audit/submit", json=EVENT) as resp:
                assert resp.status == 204, await resp.text()


async def test_preview_takes_the_daemons_settings_and_holds_read_alike(tmp_path: Path) -> None:
    store = str(tmp_path / "audit.db")
    receiver = ScriptedReceiver()
    events_arrived = asyncio.Event()

    def on_request(rec: Received) -> None:
        if rec.json.get("type") == "telemetry-events":
            events_arrived.set()

    receiver.on_request = on_request
    async with receiver.serve() as rx:
        daemon_args = ("--telemetry-uri", rx.url, "--jitter", "0", "--interval", "86400")
        async with daemon(store, *daemon_args, "--batch-rows", "2") as d:
            await _submit(d.url, 3)

            # Not accepted yet: every reader says so in the same words.
            preview = await run_cli("preview", "--json", "--store", store)
            assert preview.code == 0, preview.err
            assert preview.json["held"] == NOT_ACCEPTED
            assert preview.json["telemetry-uri"] == rx.url  # the daemon's
            assert preview.json["count"] == 2  # the daemon's --batch-rows, not 10000
            status = await run_cli("status", "--json", "--store", store)
            assert status.json["held"] == NOT_ACCEPTED
            text = await run_cli("preview", "--store", store)
            assert f"nothing is sent yet: {NOT_ACCEPTED}\n" in text.out
            assert "sending is configured" not in text.out

            accepted = await run_cli("consent", "--accept", "--store", store)
            assert accepted.code == 0, accepted.err
            assert f"sends to {rx.url}; it ships within seconds" in accepted.out
            await asyncio.wait_for(events_arrived.wait(), 30)  # consent woke the daemon
            # Runs never overlap: this one starts after the woken run has ended.
            assert (await run_cli("ship", "--store", store)).code == 0

            await _submit(d.url, 1)
            text = await run_cli("preview", "--store", store)  # no --telemetry-uri given
            assert text.code == 0, text.err
            assert f"sending is configured: the daemon (pid {d.proc.pid} " in text.out
            assert f"sends to {rx.url}" in text.out
            assert "nothing is sent yet" not in text.out
            pinned = (await run_cli("preview", "--json", "--store", store)).json
            assert pinned["held"] is None and pinned["count"] == 1

            shipped = await run_cli("ship", "--store", store)
            assert shipped.code == 0, shipped.err
            bodies = [hashlib.sha256(r.body).hexdigest() for r in rx.requests]
            rows = sum(len(decode_envelope(r.body)["events"]) for r in rx.events_requests())
            assert bodies[-1] == pinned["sha256"]  # the batch preview showed is the one sent

    # One line per run (the daemon has stopped: its log is read to the end).
    runs = [line for line in d.log if line.get("event") == "telemetry-run"]
    assert len(runs) >= 4  # start-up (held), consent's wake, two ships
    assert runs[0]["outcome"] == "held" and runs[0]["held"] == NOT_ACCEPTED
    assert runs[0]["sha256"] == []
    logged = [sha for run in runs for sha in run["sha256"]]
    assert logged == bodies  # every body the receiver got, in order, and nothing else
    sent = [run for run in runs if run["outcome"] == "sent"]
    assert sum(run["rows"] for run in sent) == rows >= 4  # ours and the instance-start
    assert sum(run["bytes"] for run in runs) == sum(len(r.body) for r in rx.requests)
    assert all(run["failed_sha256"] == [] for run in runs)
    assert all("body" not in run and "events" not in run for run in runs)  # no payloads
