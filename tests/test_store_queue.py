"""The telemetry queue on both back-ends: pages, GC, drops, quarantine, ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tuiaudit.storage import DROP_AGE, DROP_CAP, DROP_CONSENT, DROP_REJECTED, AuditFilter, AuditRow

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def trow(i: int, *, source: str = "telemetry:backend", at: datetime | None = None) -> AuditRow:
    created = at if at is not None else T0 + timedelta(seconds=i)
    return AuditRow(
        uuid.uuid4(), f"e{i}", "action", source, uuid.uuid4(), "0.0.0.0", {"i": i}, {},
        created, created,
    )  # fmt: skip


def key(r: AuditRow) -> tuple[datetime, uuid.UUID]:
    return (r.created_at, r.id)


async def test_telemetry_page_order_and_cursor(store: Any) -> None:
    tele = [trow(i, at=T0 + timedelta(seconds=i // 2)) for i in range(9)]
    tele += [trow(i, source="telemetry:frontend", at=T0 + timedelta(seconds=i)) for i in range(3)]
    plain = [trow(i, source="backend") for i in range(5)]
    await store.insert_rows(tele + plain)
    expected = sorted(tele, key=key)
    first = await store.telemetry_page(5)
    assert first == expected[:5]
    rest = await store.telemetry_page(100, after=key(first[-1]))
    assert rest == expected[5:]
    stats = await store.queue_stats()
    assert (stats.pending, stats.oldest_created_at, stats.quarantined) == (12, T0, 0)


async def test_delete_rows_exactly_and_in_bulk(store: Any) -> None:
    rows = [trow(i) for i in range(2500)]
    await store.insert_rows(rows)
    gone = [r.id for r in rows[:2100]] + [uuid.uuid4()]  # above SQLite's old variable limit
    assert await store.delete_rows(gone) == 2100
    assert await store.telemetry_page(1000) == rows[2100:]
    assert await store.delete_rows([]) == 0


async def test_telemetry_rows_by_id_in_the_given_order(store: Any) -> None:
    rows = [trow(i) for i in range(2500)]
    plain = trow(9, source="backend")
    await store.insert_rows([*rows, plain])
    await store.quarantine([rows[5].id], reason="x")
    await store.delete_rows([rows[6].id])
    # Above SQLite's old variable limit, out of queue order, with a repeat, an id
    # never stored, a quarantined, a deleted and a non-telemetry row.
    ids = [r.id for r in reversed(rows[:2100])] + [rows[7].id, uuid.uuid4(), plain.id]
    got = await store.telemetry_rows(ids)
    expected = [r for r in reversed(rows[:2100]) if r.id not in (rows[5].id, rows[6].id)]
    assert got == expected
    assert await store.telemetry_rows([rows[3].id, rows[1].id]) == [rows[3], rows[1]]
    assert await store.telemetry_rows([]) == []
    assert await store.telemetry_rows([plain.id, rows[6].id]) == []


async def test_gc_by_age_then_cap_drops_exactly_the_oldest(store: Any) -> None:
    rows = [trow(i) for i in range(10)]
    backend = [trow(i, source="backend") for i in range(3)]  # never collected
    await store.insert_rows(rows + backend)
    result = await store.gc_telemetry(older_than=T0 + timedelta(seconds=2), cap=5)
    assert (result.age, result.cap, result.total) == (2, 3, 5)
    assert await store.telemetry_page(100) == rows[5:]
    assert await store.total_rows() == 8
    drops = await store.drop_counts()
    assert drops[DROP_AGE] == 2 and drops[DROP_CAP] == 3
    again = await store.gc_telemetry(older_than=T0, cap=5)
    assert again.total == 0
    assert (await store.drop_counts())[DROP_CAP] == 3


async def test_gc_cap_tie_break_by_id(store: Any) -> None:
    rows = [trow(i, at=T0) for i in range(6)]
    await store.insert_rows(rows)
    await store.gc_telemetry(older_than=T0 - timedelta(days=1), cap=2)
    assert await store.telemetry_page(10) == sorted(rows, key=key)[4:]


async def test_purge_telemetry_counts_reason(store: Any) -> None:
    rows = [trow(i) for i in range(4)] + [trow(9, source="backend")]
    await store.insert_rows(rows)
    assert await store.purge_telemetry(AuditFilter(name="e1"), reason=DROP_CONSENT) == 1
    assert await store.purge_telemetry(None, reason=DROP_CONSENT) == 3
    assert await store.total_rows() == 1  # the backend row stays
    drops = await store.drop_counts()
    assert drops[DROP_CONSENT] == 4
    assert set(drops) >= {"age", "cap", "rejected", "consent-revoked", "user-purge"}


async def test_add_drops_accumulates(store: Any) -> None:
    await store.add_drops("user-purge", 3)
    await store.add_drops("user-purge", 4)
    await store.add_drops("user-purge", 0)
    assert (await store.drop_counts())["user-purge"] == 7


async def test_quarantine_release_purge(store: Any) -> None:
    rows = [trow(i) for i in range(4)]
    plain = trow(7, source="backend")
    await store.insert_rows([*rows, plain])
    assert await store.quarantine([rows[0].id, rows[1].id, plain.id], reason="400 malformed") == 2
    assert await store.telemetry_page(10) == rows[2:]
    listed = await store.list_quarantine()
    assert sorted((q.row for q in listed), key=key) == rows[:2]
    assert {q.reason for q in listed} == {"400 malformed"}
    assert all(q.quarantined_at.tzinfo is not None for q in listed)
    assert (await store.queue_stats()).quarantined == 2
    assert await store.release_quarantine([rows[0].id]) == 1
    assert await store.telemetry_page(10) == [rows[0], rows[2], rows[3]]
    assert await store.purge_quarantine() == 1
    assert await store.list_quarantine() == []
    assert (await store.drop_counts())[DROP_REJECTED] == 1
    await store.quarantine([rows[2].id], reason="x")
    assert await store.release_quarantine() == 1
    assert len(await store.telemetry_page(10)) == 3


async def test_ledger(store: Any) -> None:
    def begin(**kw: Any) -> dict[str, Any]:
        base = dict(kind="events", events=10, raw_bytes=1000, encoded_bytes=300,
                    body_sha256="ab" * 32, batch_key="k1", attempt=1, sink="https://x/",
                    started_at=T0)  # fmt: skip
        return {**base, **kw}

    a = await store.ledger_begin(**begin())
    b = await store.ledger_begin(**begin(kind="report", batch_key="k2", sink=None))
    c = await store.ledger_begin(**begin(batch_key="k3"))
    await store.ledger_finish(
        a, status="ok", ended_at=T0 + timedelta(seconds=1), http_status=200, latency_ms=12.5
    )
    await store.ledger_finish(
        b, status="failed", ended_at=T0, http_status=503, error_class="retryable", error="boom"
    )
    recent = await store.ledger_recent()
    assert [e.id for e in recent] == [c, b, a]
    ea = recent[2]
    assert (ea.status, ea.http_status, ea.latency_ms, ea.ended_at) == (
        "ok", 200, 12.5, T0 + timedelta(seconds=1))  # fmt: skip
    assert (ea.events, ea.raw_bytes, ea.encoded_bytes, ea.body_sha256, ea.batch_key) == (
        10, 1000, 300, "ab" * 32, "k1")  # fmt: skip
    assert (ea.attempt, ea.sink, ea.kind, ea.started_at) == (1, "https://x/", "events", T0)
    eb = recent[1]
    assert (eb.error_class, eb.error, eb.sink, eb.kind) == ("retryable", "boom", None, "report")
    assert await store.ledger_mark_interrupted(ended_at=T0) == 1
    ec = (await store.ledger_recent(1))[0]
    assert (ec.id, ec.status, ec.ended_at) == (c, "interrupted", T0)
