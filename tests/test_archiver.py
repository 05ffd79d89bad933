"""The audit archiver on both back-ends, against a real loopback archive (DESIGN §9).

Every full row reaches the archive exactly once across failures, a crash
between the send and the mark (the same ids re-sent), and two archivers on one
store; telemetry copies never do; GC and retention delete what they say.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import stat
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from shipper_support import FakeClock, Received, Reply, ScriptedReceiver
from transit.reader import Reader

from tuiaudit.audit import AuditLog
from tuiaudit.config import Settings
from tuiaudit.daemon.archiver import HOLD_ANOTHER_ARCHIVER, Archiver
from tuiaudit.storage import open_store
from tuiaudit.storage.base import (
    DELETE_ARCHIVED,
    DELETE_RETENTION,
    AuditFilter,
    AuditRow,
    Store,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEEP = 3650.0  # archive_keep_days that keeps archived rows, to look at them


def full_row(i: int, *, created_at: datetime | None = None, source: str = "backend") -> AuditRow:
    return AuditRow(
        id=uuid.UUID(int=i + 1),
        name=f"event-{i}",
        type="action",
        source=source,
        profile_id=uuid.UUID(int=1000 + i),
        ip_addr="10.0.0.1",
        props={"n": i, "nested": {"ok": True}},
        context={"request-id": str(uuid.UUID(int=i + 7))},
        tracked_at=T0,
        created_at=created_at or T0 + timedelta(seconds=i),
    )


def settings(uri: str | None, **over: Any) -> Settings:
    base = Settings(
        flags=("audit-log", "audit-log-archive"),
        archive_uri=uri,
        archive_keep_days=KEEP,
        backoff_initial=30.0,
    )
    return replace(base, **over)


@asynccontextmanager
async def archiver_for(
    store: Store, s: Settings, *, clock: FakeClock | None = None, holder: str = "test"
) -> AsyncIterator[Archiver]:
    clock = clock or FakeClock(T0 + timedelta(days=1))
    async with aiohttp.ClientSession() as session:
        yield Archiver(
            store,
            s,
            session=session,
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(1),
            holder=holder,
        )


def sent_ids(requests: list[Received]) -> list[uuid.UUID]:
    return [uuid.UUID(e["id"]) for r in requests for e in r.json["events"]]


async def test_every_full_row_is_archived_once_in_chunks_and_telemetry_never(
    store: Store,
) -> None:
    rows = [full_row(i) for i in range(300)]
    telemetry = [full_row(1000 + i, source="telemetry:backend") for i in range(20)]
    await store.insert_rows(rows + telemetry)
    async with ScriptedReceiver().serve() as rx, archiver_for(store, settings(rx.url)) as arch:
        run = await arch.run_once()
    assert run.ok and (run.rows_archived, run.chunks) == (300, 3)
    assert [len(r.json["events"]) for r in rx.requests] == [128, 128, 44]
    assert sent_ids(rx.requests) == [r.id for r in rows]  # oldest first, each once
    first = rx.requests[0]
    assert first.headers["Content-Type"] == "application/json"
    event = first.json["events"][0]
    assert set(event) == {
        "id", "type", "name", "source", "created-at", "tracked-at", "profile-id", "ip-addr",
        "props", "context",
    }  # fmt: skip
    assert event["created-at"] == "2025-03-01T12:00:00Z"
    assert event["props"] == {"n": 0, "nested": {"ok": True}}
    assert event["profile-id"] == str(rows[0].profile_id) and event["ip-addr"] == "10.0.0.1"
    assert await store.count_rows(AuditFilter(archived=True)) == 300
    left = await store.fetch_rows(AuditFilter(archived=False))
    assert {r.id for r in left} == {r.id for r in telemetry}
    log = await store.archive_log_recent()
    assert [a.status for a in log] == ["ok"] * 3 and log[0].http_status == 204


async def test_a_failing_archive_keeps_rows_unmarked_and_the_retry_sends_them_once(
    store: Store,
) -> None:
    rows = [full_row(i) for i in range(200)]
    await store.insert_rows(rows)
    clock = FakeClock(T0 + timedelta(days=1))
    script = [Reply(204), Reply(503, headers={"Retry-After": "120"}), Reply(500)]
    async with (
        ScriptedReceiver(script).serve() as rx,
        archiver_for(store, settings(rx.url), clock=clock) as arch,
    ):
        arch.next_run_at = clock() + timedelta(hours=1)
        first = await arch.run_once()
        arch._after(first)
        assert first.error_class == "retryable" and first.rows_archived == 128
        assert "HTTP 503" in (first.error or "")
        assert arch.retry_at is not None and arch.retry_at >= clock() + timedelta(seconds=120)
        assert await store.count_rows(AuditFilter(archived=False)) == 72
        second = await arch.run_once()
        arch._after(second)
        assert second.error_class == "retryable" and arch.failures == 2
        third = await arch.run_once()
        arch._after(third)
        assert third.ok and third.rows_archived == 72 and arch.failures == 0
    statuses = [204, 503, 500, 204]
    assert len(rx.requests) == len(statuses)
    accepted = [r for r, s in zip(rx.requests, statuses, strict=True) if s == 204]
    assert sorted(sent_ids(accepted)) == sorted(r.id for r in rows)  # once each
    # The failed chunk went out again with the same rows and the same key.
    retried = rx.requests[1:]
    assert len({tuple(sent_ids([r])) for r in retried}) == 1
    assert len({r.headers["Idempotency-Key"] for r in retried}) == 1
    assert await store.count_rows(AuditFilter(archived=True)) == 200
    log = await store.archive_log_recent()
    assert [a.status for a in log] == ["ok", "failed", "failed", "ok"]


async def test_a_refusing_archive_waits_for_the_next_run_not_a_back_off(store: Store) -> None:
    await store.insert_rows([full_row(i) for i in range(3)])
    clock = FakeClock(T0 + timedelta(days=1))
    async with (
        ScriptedReceiver(default=Reply(401)).serve() as rx,
        archiver_for(store, settings(rx.url), clock=clock) as arch,
    ):
        arch.next_run_at = clock() + timedelta(minutes=5)
        run = await arch.run_once()
        arch._after(run)
    assert run.error_class == "config" and "--archive-uri" in (run.error or "")
    assert arch.retry_at is None and arch.failures == 0
    assert await store.count_rows(AuditFilter(archived=True)) == 0


async def test_a_crash_between_send_and_mark_resends_the_same_ids(store_url: str) -> None:
    rows = [full_row(i) for i in range(150)]
    received = asyncio.Event()
    rx = ScriptedReceiver(default=Reply(204))

    def first_hangs(rec: Received) -> Reply | None:
        if len(rx.requests) == 1:
            received.set()  # the archive has the chunk; the answer never comes back
            return Reply(204, delay=30)
        return None

    rx.on_request = first_hangs
    async with rx.serve():
        async with open_store(store_url) as store:
            await store.insert_rows(rows)
            async with archiver_for(store, settings(rx.url)) as arch:
                task = asyncio.create_task(arch.run_once())
                await received.wait()
                task.cancel()  # the daemon dies with the POST on the wire
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert await store.count_rows(AuditFilter(archived=True)) == 0
        # A new daemon on the same store (SQLite: after the dead one's lease lapsed).
        async with open_store(store_url) as store:
            if store.backend == "sqlite":
                await store.release_archive_lease("test")
            async with archiver_for(store, settings(rx.url), holder="restarted") as arch:
                run = await arch.run_once()
            assert run.ok and run.rows_archived == 150
            assert await store.count_rows(AuditFilter(archived=True)) == 150
    crashed, *after = rx.requests
    assert sent_ids([after[0]]) == sent_ids([crashed])  # re-sent: the same ids
    assert after[0].headers["Idempotency-Key"] == crashed.headers["Idempotency-Key"]
    assert sorted(sent_ids(after)) == sorted(r.id for r in rows)


async def test_two_archivers_on_one_store_never_send_a_row_twice(store_url: str) -> None:
    rows = [full_row(i) for i in range(1000)]
    rx = ScriptedReceiver(default=Reply(204, delay=0.005))
    async with rx.serve(), open_store(store_url) as a, open_store(store_url) as b:
        await a.insert_rows(rows)
        async with (
            archiver_for(a, settings(rx.url), holder="daemon-a") as one,
            archiver_for(b, settings(rx.url), holder="daemon-b") as two,
        ):
            runs = await asyncio.gather(one.run_once(), two.run_once())
            # SQLite: one holds the store's archive lease, the other stands back.
            for run in runs:
                assert run.ok and run.held in (None, HOLD_ANOTHER_ARCHIVER)
            if a.backend == "postgresql":
                assert all(run.rows_archived for run in runs)  # both really archived
            leftover = await one.run_once()
            assert leftover.ok
        counts = Counter(sent_ids(rx.requests))
        assert set(counts) == {r.id for r in rows}
        assert max(counts.values()) == 1  # no row sent by both, none twice
        assert await a.count_rows(AuditFilter(archived=True)) == 1000


async def test_file_sink_appends_one_private_json_line_per_chunk(
    store: Store, tmp_path: Path
) -> None:
    rows = [full_row(i) for i in range(130)]
    await store.insert_rows(rows)
    path = tmp_path / "archive.jsonl"
    async with archiver_for(store, settings(path.as_uri())) as arch:
        run = await arch.run_once()
    assert run.ok and run.rows_archived == 130
    lines = path.read_bytes().splitlines()
    assert [len(orjson.loads(line)["events"]) for line in lines] == [128, 2]
    ids = [uuid.UUID(e["id"]) for line in lines for e in orjson.loads(line)["events"]]
    assert ids == [r.id for r in rows]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_transit_format_is_what_a_transit_reader_reads(store: Store) -> None:
    rows = [full_row(i) for i in range(3)]
    await store.insert_rows(rows)
    async with (
        ScriptedReceiver().serve() as rx,
        archiver_for(store, settings(rx.url, archive_format="transit")) as arch,
    ):
        assert (await arch.run_once()).ok
    (req,) = rx.requests
    assert req.headers["Content-Type"] == "application/transit+json"
    data = Reader("json").read(io.StringIO(req.body.decode()))
    events = [{k.name: v for k, v in ev.items()} for ev in data[_kw(data, "events")]]
    assert [ev["id"] for ev in events] == [r.id for r in rows]
    assert events[0]["created-at"] == T0
    assert {k.name: v for k, v in events[1]["props"].items()}["n"] == 1


def _kw(data: Any, name: str) -> Any:
    return next(k for k in data if k.name == name)


async def test_mode_c_archives_nothing(store: Store) -> None:
    audit = AuditLog(store, ("telemetry", "audit-log-archive"), clock=lambda: T0)
    for i in range(5):
        await audit.submit({"name": "file-created", "type": "action", "props": {"n": i}})
    assert await store.count_rows() == 5  # telemetry copies only
    async with (
        ScriptedReceiver().serve() as rx,
        archiver_for(store, settings(rx.url, flags=("telemetry", "audit-log-archive"))) as arch,
    ):
        run = await arch.run_once()
    assert run.ok and run.rows_archived == 0 and rx.requests == []
    assert await store.count_rows(AuditFilter(archived=True)) == 0
    assert (await store.archive_stats()).pending == 0


async def test_gc_after_the_run_and_retention_delete_and_count(store: Store) -> None:
    now = T0 + timedelta(days=100)
    old = [full_row(i, created_at=now - timedelta(days=50, seconds=i)) for i in range(5)]
    new = [full_row(10 + i, created_at=now - timedelta(days=2 + 3 * (i // 2))) for i in range(4)]
    tele = [
        full_row(20 + i, created_at=now - timedelta(days=60), source="telemetry:frontend")
        for i in range(2)
    ]
    await store.insert_rows(old + new + tele)
    clock = FakeClock(now)
    async with (
        ScriptedReceiver(default=Reply(500)).serve() as rx,
        archiver_for(
            store, settings(rx.url, archive_keep_days=7, audit_retention_days=30), clock=clock
        ) as arch,
    ):
        run = await arch.run_once()  # archive fails: only retention deletes (old ones)
        assert run.error_class == "retryable"
        assert (run.deleted_archived, run.deleted_retention) == (0, 5)
        rx.default = Reply(204)
        run = await arch.run_once()  # archives the 4 new ones, kept 7 days
        assert run.rows_archived == 4 and run.deleted_archived == 0
        clock.now += timedelta(days=3)
        assert (await arch.run_once()).deleted_archived == 2  # created 8 days ago now
    left = {r.id for r in await store.fetch_rows()}
    assert left == {r.id for r in new[:2]} | {r.id for r in tele}
    stats = await store.archive_stats()
    assert stats.deletions == {DELETE_ARCHIVED: 2, DELETE_RETENTION: 5}
    assert (stats.pending, stats.archived) == (0, 2)


async def test_retention_alone_needs_no_archive(store: Store) -> None:
    now = T0 + timedelta(days=100)
    rows = [full_row(i, created_at=now - timedelta(days=40 - 20 * i)) for i in range(2)]
    await store.insert_rows(rows)
    s = settings(None, flags=("audit-log",), audit_retention_days=30)
    async with archiver_for(store, s, clock=FakeClock(now)) as arch:
        run = await arch.run_once()
    assert run.ok and run.held is None and run.deleted_retention == 1
    assert [r.id for r in await store.fetch_rows()] == [rows[1].id]
