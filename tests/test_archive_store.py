"""The store's audit archive methods on both back-ends (DESIGN §9).

``archive_chunk`` selects the oldest full rows not archived, hands them to a
sender while it holds them, and marks exactly them on success; the archive GC
and retention delete exactly what they say and count it by reason.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tuiaudit.storage import open_store
from tuiaudit.storage.base import (
    DELETE_ARCHIVED,
    DELETE_RETENTION,
    ArchiveAttempt,
    AuditFilter,
    AuditRow,
    Store,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def full_row(i: int, *, created_at: datetime | None = None, source: str = "backend") -> AuditRow:
    return AuditRow(
        id=uuid.UUID(int=i + 1),
        name=f"event-{i}",
        type="action",
        source=source,
        profile_id=uuid.UUID(int=1000 + i),
        ip_addr="10.0.0.1",
        props={"n": i},
        context={"k": "v"},
        tracked_at=T0,
        created_at=created_at or T0 + timedelta(seconds=i),
    )


def attempt(rows: list[AuditRow], *, ok: bool, at: datetime = T0) -> ArchiveAttempt:
    return ArchiveAttempt(
        started_at=at,
        ended_at=at + timedelta(milliseconds=5),
        status="ok" if ok else "failed",
        events=len(rows),
        bytes=10 * len(rows),
        body_sha256="0" * 64,
        http_status=204 if ok else 503,
        error_class=None if ok else "retryable",
        error=None if ok else "HTTP 503",
        sink="http://127.0.0.1/archive",
        holder="test",
    )


class Recorder:
    """A sender that records every chunk and answers from a script of booleans."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.sent: list[list[uuid.UUID]] = []

    async def __call__(self, rows: list[AuditRow]) -> ArchiveAttempt:
        self.sent.append([r.id for r in rows])
        ok = self.answers.pop(0) if self.answers else True
        return attempt(rows, ok=ok)


async def chunk(store: Store, send: Any, limit: int = 128, holder: str = "a") -> Any:
    return await store.archive_chunk(send, limit=limit, holder=holder, lease_s=120.0)


async def test_chunks_oldest_first_marks_exactly_the_sent_rows(store: Store) -> None:
    rows = [full_row(i) for i in range(5)]
    telemetry = [full_row(100 + i, source="telemetry:backend") for i in range(3)]
    await store.insert_rows(list(reversed(rows)) + telemetry)
    send = Recorder()

    first = await chunk(store, send, limit=2)
    assert (first.rows, first.archived) == (2, 2)
    assert first.attempt is not None and first.attempt.id > 0
    assert send.sent == [[rows[0].id, rows[1].id]]
    archived = await store.fetch_rows(AuditFilter(archived=True))
    assert {r.id for r in archived} == {rows[0].id, rows[1].id}
    assert all(r.archived_at == T0 + timedelta(milliseconds=5) for r in archived)

    rest = await chunk(store, send)
    assert (rest.rows, rest.archived) == (3, 3)
    assert send.sent[1] == [r.id for r in rows[2:]]
    empty = await chunk(store, send)
    assert (empty.rows, empty.archived, empty.attempt) == (0, 0, None)
    # Telemetry copies are never selected.
    assert all(i.int < 100 for ids in send.sent for i in ids)
    pending = await store.fetch_rows(AuditFilter(archived=False))
    assert {r.id for r in pending} == {r.id for r in telemetry}


async def test_a_failed_send_marks_nothing_and_the_same_rows_come_again(store: Store) -> None:
    rows = [full_row(i) for i in range(3)]
    await store.insert_rows(rows)
    send = Recorder(False, True)
    failed = await chunk(store, send)
    assert (failed.rows, failed.archived) == (3, 0)
    assert not failed.attempt.ok
    assert await store.count_rows(AuditFilter(archived=True)) == 0
    again = await chunk(store, send)
    assert again.archived == 3
    assert send.sent[0] == send.sent[1]
    log = await store.archive_log_recent()
    assert [a.status for a in log] == ["ok", "failed"]
    assert log[1].http_status == 503 and log[1].error == "HTTP 503"
    stats = await store.archive_stats()
    assert (stats.pending, stats.archived) == (0, 3)


async def test_a_sender_that_raises_leaves_the_rows_unarchived(store: Store) -> None:
    await store.insert_rows([full_row(i) for i in range(2)])

    async def crash(rows: list[AuditRow]) -> ArchiveAttempt:
        raise RuntimeError("killed between send and mark")

    with pytest.raises(RuntimeError):
        await chunk(store, crash)
    assert await store.count_rows(AuditFilter(archived=False)) == 2
    assert await store.archive_log_recent() == []
    send = Recorder()
    assert (await chunk(store, send)).archived == 2


async def test_gc_and_retention_delete_exactly_what_they_say_and_count_it(store: Store) -> None:
    old = [full_row(i, created_at=T0 - timedelta(days=40, seconds=i)) for i in range(4)]
    recent = [full_row(10 + i, created_at=T0 - timedelta(days=1, seconds=i)) for i in range(3)]
    telemetry = [
        full_row(20 + i, created_at=T0 - timedelta(days=40), source="telemetry:frontend")
        for i in range(2)
    ]
    await store.insert_rows(old + recent + telemetry)
    # Archive two old rows and one recent one.
    chosen = {old[0].id, old[1].id, recent[0].id}

    async def send(rows: list[AuditRow]) -> ArchiveAttempt:
        return attempt(rows, ok=True)

    while (await chunk(store, send, limit=1)).rows:
        pass  # archives all 7 full rows one by one
    # Un-archive the ones not chosen, to have a mix (rows inserted archived_at=None).
    await store.delete_rows([r.id for r in old + recent if r.id not in chosen])
    await store.insert_rows([r for r in old + recent if r.id not in chosen])

    # Archive GC: archived rows created before the limit only.
    n = await store.gc_archived(older_than=T0 - timedelta(days=30), batch=1)
    assert n == 2
    left = {r.id for r in await store.fetch_rows()}
    assert old[0].id not in left and old[1].id not in left and recent[0].id in left

    # Retention: every full row before the limit, archived or not; telemetry untouched.
    n = await store.delete_expired(older_than=T0 - timedelta(days=30), batch=1)
    assert n == 2
    left = {r.id for r in await store.fetch_rows()}
    assert left == {r.id for r in recent} | {r.id for r in telemetry}

    stats = await store.archive_stats()
    assert stats.deletions == {DELETE_ARCHIVED: 2, DELETE_RETENTION: 2}
    assert (stats.pending, stats.archived) == (2, 1)
    assert await store.gc_archived(older_than=T0) == 1
    assert (await store.archive_stats()).deletions[DELETE_ARCHIVED] == 3


async def test_prune_archive_log_keeps_the_newest(store: Store) -> None:
    await store.insert_rows([full_row(i) for i in range(5)])
    send = Recorder()
    while (await chunk(store, send, limit=1)).rows:
        pass
    assert await store.prune_archive_log(2) == 3
    log = await store.archive_log_recent()
    assert len(log) == 2 and log[0].id > log[1].id


async def test_two_stores_never_send_a_row_twice(store_url: str) -> None:
    """Two archivers on one store (two connections, as two daemons have), sending
    concurrently with a slow archive: every row once, none by both."""
    rows = [full_row(i) for i in range(40)]
    async with open_store(store_url) as a, open_store(store_url) as b:
        await a.insert_rows(rows)
        sent: dict[str, list[uuid.UUID]] = {"a": [], "b": []}
        in_flight = asyncio.Event()

        def sender(name: str) -> Any:
            async def send(chunk_rows: list[AuditRow]) -> ArchiveAttempt:
                sent[name].extend(r.id for r in chunk_rows)
                in_flight.set()
                await asyncio.sleep(0.01)  # the POST on the wire: the other one runs now
                return attempt(chunk_rows, ok=True)

            return send

        async def drain(store: Store, name: str) -> None:
            while True:
                done = await store.archive_chunk(sender(name), limit=4, holder=name, lease_s=120.0)
                if done.held:
                    await asyncio.sleep(0.005)
                    if await store.count_rows(AuditFilter(archived=False)) == 0:
                        return
                    continue
                if done.rows == 0:
                    return

        await asyncio.gather(drain(a, "a"), drain(b, "b"))
        everything = sent["a"] + sent["b"]
        assert sorted(everything) == sorted(r.id for r in rows)  # once each
        assert not set(sent["a"]) & set(sent["b"])
        if a.backend == "postgresql":
            assert sent["a"] and sent["b"]  # SKIP LOCKED: both really worked at once
        await a.release_archive_lease("a")
        await b.release_archive_lease("b")
