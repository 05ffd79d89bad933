"""``tuiaudit approve`` / ``tuiaudit reject`` as a user runs them: the real CLI in a
subprocess, on both back-ends (DESIGN §10)."""

from __future__ import annotations

from typing import Any

from cli_support import run_cli
from shipper_support import rows

from tuiaudit.storage.base import DROP_USER_REJECTED


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
