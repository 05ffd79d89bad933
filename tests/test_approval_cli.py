"""``tuiaudit approve`` / ``tuiaudit reject`` as a user runs them: the real CLI in a
subprocess, on both back-ends (DESIGN §10)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
from cli_support import daemon, run_cli
from shipper_support import ScriptedReceiver, rows

from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage.base import DROP_USER_REJECTED

EVENT = {"name": "file-created", "type": "action", "props": {"n": 1}}


async def _submit(url: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            async with session.post(f"{url}/api/audit/submit", json=EVENT) as resp:
                assert resp.status == 204, await resp.text()


async def test_approve_reject_and_an_unknown_sha(store: Any, store_url: str) -> None:
    await store.insert_rows(rows(15))
    opts = ("--store", store_url, "--batch-rows", "10")

    listed = await run_cli("approve", "--list", "--json", *opts)
    assert listed.code == 0, listed.err
    first, second, report = listed.json
    assert (first["events"], second["events"], report["kind"]) == (10, 5, "report")

    unknown = await run_cli("approve", "0" * 64, *opts)
    assert unknown.code == 1
    assert unknown.err.strip() == (
        f"tuiaudit approve: no pending body has SHA-256 {'0' * 64}: `tuiaudit approve "
        "--list` shows the queue (a body whose rows changed was rebuilt under a new SHA-256)"
    )
    malformed = await run_cli("approve", "not-a-hash", *opts)
    assert malformed.code == 1 and "is not a SHA-256" in malformed.err
    assert "Traceback" not in unknown.err + malformed.err

    approved = await run_cli("approve", first["sha256"], *opts)
    assert approved.code == 0, approved.err
    assert f"approved {first['sha256']}" in approved.out
    queued = {b.sha256: b for b in await store.approval_list()}
    assert queued[first["sha256"]].approved_at is not None
    assert queued[second["sha256"]].approved_at is None

    rejected = await run_cli("reject", second["sha256"], *opts)
    assert rejected.code == 0, rejected.err
    assert "5 row(s) quarantined" in rejected.out
    assert (await store.drop_counts())[DROP_USER_REJECTED] == 5
    assert {q.reason for q in await store.list_quarantine()} == {"rejected-by-user"}

    # --all-pending asks first: with no terminal to answer, nothing is approved.
    unconfirmed = await run_cli("approve", "--all-pending", *opts)
    assert unconfirmed.code == 2 and "nothing approved" in unconfirmed.err
    assert (await store.approval_list())[-1].approved_at is None
    confirmed = await run_cli("approve", "--all-pending", "--yes", *opts)
    assert confirmed.code == 0, confirmed.err
    assert all(b.approved_at is not None for b in await store.approval_list())


async def test_a_daemon_in_manual_mode_sends_only_what_was_approved(tmp_path: Path) -> None:
    """A real daemon with --approval manual and a loopback receiver: `tuiaudit ship` sends
    nothing until `tuiaudit approve`, then exactly the approved bodies leave."""
    store = str(tmp_path / "audit.db")
    async with ScriptedReceiver().serve() as rx:
        async with daemon(
            store,
            *("--telemetry-uri", rx.url, "--jitter", "0", "--interval", "86400"),
            *("--accept-policy", str(POLICY_VERSION), "--approval", "manual"),
        ) as d:
            await _submit(d.url, 3)
            held = await run_cli("ship", "--store", store)
            assert held.code == 0, held.err
            assert "waiting for approval" in held.out
            assert rx.requests == []

            # The body preview shows (with the daemon's settings) is one that waits.
            preview = await run_cli("preview", "--json", "--store", store)
            shown = preview.json["sha256"]
            said = await run_cli("preview", "--store", store)
            assert f"`tuiaudit approve {shown}`" in said.out

            listed = await run_cli("approve", "--list", "--json", "--store", store)
            queued = {b["sha256"] for b in listed.json}
            assert shown in queued
            assert queued and {b["kind"] for b in listed.json} == {"events", "report"}
            approved = await run_cli("approve", "--all-pending", "--yes", "--store", store)
            assert approved.code == 0, approved.err

            sent = await run_cli("ship", "--store", store)
            assert sent.code == 0, sent.err
            got = {hashlib.sha256(r.body).hexdigest() for r in rx.requests}
            assert got == queued
            # Nothing else waited: the queue holds only the next report now.
            after = await run_cli("approve", "--list", "--json", "--store", store)
            assert [b["kind"] for b in after.json] == ["report"]
