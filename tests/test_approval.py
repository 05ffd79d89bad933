"""Approval mode (DESIGN §10): nothing leaves until a person approves its exact bytes.

Both back-ends, the real shipper and a real loopback receiver: in manual mode
a run sends nothing unapproved; an approved body leaves byte for byte (the
receiver's SHA-256 is the approved one) and the next one waits; a rejected
body's rows are quarantined and counted; a body whose rows changed after its
approval is void and its rows wait under a new SHA-256; a revoke or a policy
change clears the queue.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from shipper_support import (
    INSTANCE,
    T0,
    FakeClock,
    ScriptedReceiver,
    consent,
    rows,
    settings_for,
    shipper_for,
)

from tuiaudit.approval import (
    KIND_EVENTS,
    KIND_REPORT,
    ApprovalError,
    approve,
    reject,
    sync_queue,
    waiting,
)
from tuiaudit.batch import next_batch
from tuiaudit.codec import decode_envelope, kw
from tuiaudit.consent import accept, revoke
from tuiaudit.forecast import forecast
from tuiaudit.outcomes import describe_run
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy
from tuiaudit.storage.base import DROP_USER_REJECTED

BATCH_ROWS = 10
VERSION = "9.9.9"  # shipper_for's version


def manual(url: str, **kw: Any) -> Any:
    return settings_for(url, batch_rows=BATCH_ROWS, approval="manual", **kw)


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


async def run(
    store: Any, settings: Any, clock: FakeClock | None = None, version: str = VERSION
) -> Any:
    """One shipper run against a fresh receiver: (receiver, run report)."""
    rx = ScriptedReceiver()
    async with rx.serve():
        s = replace(settings, telemetry_uri=rx.url)
        async with shipper_for(store, s, clock=clock) as sh:
            sh.version = version
            report = await sh.run_once(jitter=False)
    return rx, report


async def events_bodies(store: Any) -> list[Any]:
    return [b for b in await store.approval_list() if b.kind == KIND_EVENTS]


async def test_manual_mode_sends_nothing_unapproved(store: Any) -> None:
    await store.insert_rows(rows(25))
    await consent(store)
    rx, report = await run(store, manual("x"))
    assert rx.requests == []
    assert report.ok and report.batches_sent == 0 and report.report_ok is None
    queued = await store.approval_list()
    assert [b.kind for b in queued] == [KIND_EVENTS] * 3 + [KIND_REPORT]
    assert [b.events for b in queued[:3]] == [10, 10, 5]
    assert all(b.approved_at is None for b in queued)
    assert report.awaiting_approval == 4
    said = describe_run(report.to_dict())
    assert "4 bodies waiting for approval (`tuiaudit approve --list`)" in said
    assert "queue was empty" not in said
    assert (await store.queue_stats()).pending == 25
    # A second run queues nothing twice and still sends nothing.
    rx, _ = await run(store, manual("x"))
    assert rx.requests == [] and len(await store.approval_list()) == 4


async def test_an_approved_body_leaves_byte_for_byte_and_the_next_waits(store: Any) -> None:
    page = rows(25)
    await store.insert_rows(page)
    await consent(store)
    await run(store, manual("x"))
    first, second, _ = await events_bodies(store)
    report = next(b for b in await store.approval_list() if b.kind == KIND_REPORT)
    await approve(store, [first.sha256, report.sha256], now=T0)

    rx, result = await run(store, manual("x"))
    (sent,) = rx.events_requests()
    assert sha(sent.body) == first.sha256
    assert [e[kw("id")] for e in decode_envelope(sent.body)["events"]] == [
        r.id for r in page[:BATCH_ROWS]
    ]
    (sent_report,) = rx.report_requests()
    assert sent_report.body == report.body and sha(sent_report.body) == report.sha256
    ledger = {e.body_sha256 for e in await store.ledger_recent() if e.status == "ok"}
    assert {first.sha256, report.sha256} <= ledger
    assert result.batches_sent == 1 and result.report_ok is True
    # The next body waits; a new report waits too.
    assert (await events_bodies(store))[0].sha256 == second.sha256
    assert all(b.approved_at is None for b in await store.approval_list())
    assert (await store.queue_stats()).pending == 15
    rx, _ = await run(store, manual("x"))
    assert rx.requests == []


async def test_the_body_preview_showed_is_the_one_approved_and_sent(store: Any) -> None:
    await store.insert_rows(rows(25))
    await consent(store)
    settings = manual("x")
    shown = await next_batch(store, settings, instance_id=INSTANCE, version=VERSION)
    assert shown is not None
    queued = await sync_queue(
        store, settings, instance_id=INSTANCE, version=VERSION, now=T0, site=DEFAULT_SITE
    )
    assert shown.sha256 == queued[0].sha256
    await approve(store, [shown.sha256], now=T0)
    rx, _ = await run(store, settings)
    (sent,) = rx.events_requests()
    assert sent.body == shown.body


async def test_reject_quarantines_and_counts_the_rows(store: Any) -> None:
    await store.insert_rows(rows(15))
    await consent(store)
    await run(store, manual("x"))
    first, _ = await events_bodies(store)
    body, moved = await reject(store, first.sha256)
    assert body.sha256 == first.sha256 and moved == BATCH_ROWS
    quarantined = await store.list_quarantine()
    assert {q.row.id for q in quarantined} == set(first.ids)
    assert {q.reason for q in quarantined} == {"rejected-by-user"}
    assert (await store.drop_counts())[DROP_USER_REJECTED] == BATCH_ROWS
    assert first.sha256 not in {b.sha256 for b in await store.approval_list()}
    assert (await store.queue_stats()).pending == 5
    with pytest.raises(ApprovalError, match="no pending body"):
        await approve(store, [first.sha256], now=T0)


async def test_approving_an_unknown_sha_fails_and_approves_nothing(store: Any) -> None:
    await store.insert_rows(rows(5))
    await consent(store)
    await run(store, manual("x"))
    (body,) = await events_bodies(store)
    with pytest.raises(ApprovalError, match=r"no pending body has SHA-256 0{64}"):
        await approve(store, [body.sha256, "0" * 64], now=T0)
    with pytest.raises(ApprovalError, match="not a SHA-256"):
        await approve(store, ["abc"], now=T0)
    assert all(b.approved_at is None for b in await store.approval_list())


async def test_rows_dropped_after_approval_void_it_and_need_a_new_one(store: Any) -> None:
    """The cap drops 3 rows of the approved body: it is not sent, its 7 rows wait under
    a new SHA-256, and the old approval cannot be given again."""
    page = rows(20)
    await store.insert_rows(page)
    await consent(store)
    await run(store, manual("x"))
    first, _ = await events_bodies(store)
    await approve(store, [first.sha256], now=T0)

    rx, result = await run(store, manual("x", max_rows=17))
    assert result.gc is not None and result.gc.cap == 3
    assert rx.events_requests() == []
    rebuilt = (await events_bodies(store))[-1]
    assert rebuilt.ids == [r.id for r in page[3:BATCH_ROWS]]
    assert rebuilt.sha256 != first.sha256 and rebuilt.approved_at is None
    with pytest.raises(ApprovalError):
        await approve(store, [first.sha256], now=T0)

    await approve(store, [rebuilt.sha256], now=T0)
    rx, _ = await run(store, manual("x", max_rows=17))
    (sent,) = rx.events_requests()
    assert sha(sent.body) == rebuilt.sha256


async def test_a_rebuilt_body_with_other_bytes_is_refused(store: Any) -> None:
    """Approved under one version, rebuilt by another: the bytes differ, nothing is sent."""
    await store.insert_rows(rows(5))
    await consent(store)
    await run(store, manual("x"))
    (body,) = await events_bodies(store)
    await approve(store, [body.sha256], now=T0)
    rx, result = await run(store, manual("x"), version="9.9.10")
    assert rx.events_requests() == [] and result.refused == 1
    assert body.sha256 not in {b.sha256 for b in await store.approval_list()}
    assert (await store.queue_stats()).pending == 5


async def test_a_revoke_clears_the_approvals(store: Any) -> None:
    await store.insert_rows(rows(5))
    await consent(store)
    await run(store, manual("x"))
    (body,) = await events_bodies(store)
    await approve(store, [body.sha256], now=T0)
    await revoke(store)
    assert await store.approval_list() == []
    await accept(store, POLICY_VERSION)
    await store.insert_rows(rows(5, start=T0 + timedelta(hours=1)))
    rx, _ = await run(store, manual("x"))
    assert rx.requests == []
    assert all(b.approved_at is None for b in await store.approval_list())


async def test_a_policy_change_voids_the_queue(store: Any) -> None:
    await store.insert_rows(rows(5))
    await consent(store)
    settings = manual("x")
    queued = await sync_queue(
        store, settings, instance_id=INSTANCE, version=VERSION, now=T0, site=DEFAULT_SITE
    )
    await approve(store, [b.sha256 for b in queued], now=T0)
    stricter = SitePolicy(strict=True)
    requeued = await sync_queue(
        store, settings, instance_id=INSTANCE, version=VERSION, now=T0, site=stricter
    )
    assert requeued and all(b.approved_at is None for b in requeued)


async def test_the_wait_is_said_and_forecast(store: Any) -> None:
    """Bodies waiting hold the queue: the forecast says when the age GC drops rows."""
    await store.insert_rows(rows(15))
    await consent(store)
    await run(store, manual("x"))
    bodies = await store.approval_list()
    later = T0 + timedelta(days=2)
    assert waiting(bodies).text(later) == "waiting for approval (3 bodies, oldest 2 d)"
    fc = await forecast(store, manual("http://127.0.0.1:9/t"), later)
    assert fc.held == "waiting for approval (3 bodies, oldest 2 d)"
    oldest = (await store.queue_stats()).oldest_created_at
    assert oldest is not None and fc.age_drop_at == oldest + timedelta(days=7)
    assert "the oldest rows age out in ~5.0 days" in fc.text
    # Approved, they drain: no hold, no drop expected.
    await approve(store, [b.sha256 for b in bodies], now=later)
    fc = await forecast(store, manual("http://127.0.0.1:9/t"), later)
    assert fc.held is None and fc.age_drop_at is None
