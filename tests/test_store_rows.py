"""Audit rows on both back-ends: round-trip, atomic batches, keyset paging, filters."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tuiaudit.storage import AuditFilter, AuditRow, StoreConflict, StoreError

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def row(i: int = 0, *, source: str = "backend", at: datetime | None = None, **kw: Any) -> AuditRow:
    created = at if at is not None else T0 + timedelta(seconds=i)
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": f"event-{i}",
        "type": "action",
        "source": source,
        "profile_id": uuid.uuid4(),
        "ip_addr": "192.0.2.1",
        "props": {"n": i},
        "context": {},
        "tracked_at": created,
        "created_at": created,
    }
    fields.update(kw)
    return AuditRow(**fields)


def key(r: AuditRow) -> tuple[datetime, uuid.UUID]:
    return (r.created_at, r.id)


async def test_round_trip_every_field(store: Any) -> None:
    r = AuditRow(
        id=uuid.uuid4(),
        name="läuft-✓",
        type="trigger",
        source="frontend",
        profile_id=uuid.uuid4(),
        ip_addr="2001:db8::1",
        props={"nested": {"list": [1, 2.5, None, True, "ünï"], "deep": {"x": {}}}, "e": "a@b.c"},
        context={"version": "1.2.3", "emoji": "🎉"},
        tracked_at=datetime(2023, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        created_at=datetime(2023, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
        archived_at=datetime(2024, 2, 29, 0, 0, 0, 1, tzinfo=UTC),
    )
    await store.insert_rows([r])
    got = await store.get_row(r.id)
    assert got == r
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert await store.get_row(uuid.uuid4()) is None
    assert await store.fetch_rows() == [r]


async def test_non_utc_input_is_stored_as_utc(store: Any) -> None:
    from datetime import timezone

    local = datetime(2024, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    r = row(created_at=local, tracked_at=local)
    await store.insert_rows([r])
    got = await store.get_row(r.id)
    assert got.created_at == local
    assert got.created_at.utcoffset() == timedelta(0)


async def test_insert_is_all_or_nothing(store: Any) -> None:
    first = row(1)
    await store.insert_rows([first])
    dup = row(2, id=first.id)
    with pytest.raises(StoreConflict):
        await store.insert_rows([row(3), row(4), dup])
    assert await store.total_rows() == 1
    a = row(5)
    with pytest.raises(StoreConflict):
        await store.insert_rows([a, row(6, id=a.id)])  # duplicate inside the batch
    assert await store.total_rows() == 1
    await store.insert_rows([])
    assert await store.total_rows() == 1


async def test_keyset_paging_with_ties_both_directions(store: Any) -> None:
    # Three rows share every created_at: the id breaks the tie.
    rows = [row(i, at=T0 + timedelta(seconds=i // 3)) for i in range(20)]
    await store.insert_rows(rows)
    newest_first = sorted(rows, key=key, reverse=True)
    pages, cursor = [], None
    while True:
        page = await store.fetch_rows(before=cursor, limit=7)
        pages.extend(page)
        if len(page) < 7:
            break
        cursor = key(page[-1])
    assert pages == newest_first
    pages, cursor = [], None
    while True:
        page = await store.fetch_rows_after(after=cursor, limit=6)
        pages.extend(page)
        if len(page) < 6:
            break
        cursor = key(page[-1])
    assert pages == newest_first[::-1]


async def test_filters(store: Any) -> None:
    pid = uuid.uuid4()
    rows = [
        row(0, name="login", type="action", props={"Email": "Alice@Example.org"}),
        row(1, name="logout", type="action", profile_id=pid),
        row(2, name="instance-start", type="trigger", source="telemetry:backend"),
        row(3, name="login", source="telemetry:frontend", context={"browser": "Fire_fox 100%"}),
        row(4, name="page", source="telemetryx"),
    ]
    await store.insert_rows(rows)

    async def ids(**kw: Any) -> set[uuid.UUID]:
        return {r.id for r in await store.fetch_rows(AuditFilter(**kw))}

    assert await ids(source="telemetry:*") == {rows[2].id, rows[3].id}
    assert await ids(source="telemetry*") == {rows[2].id, rows[3].id, rows[4].id}
    assert await ids(source="backend") == {rows[0].id, rows[1].id}
    assert await ids(name="login") == {rows[0].id, rows[3].id}
    assert await ids(type="trigger") == {rows[2].id}
    assert await ids(profile_id=pid) == {rows[1].id}
    assert await ids(text="alice@example") == {rows[0].id}  # props, case-insensitive
    assert await ids(text="FIRE_FOX 100%") == {rows[3].id}  # context; _ and % are literal
    assert await ids(text="fire%fox") == set()
    assert await ids(text="LOGOUT") == {rows[1].id}
    assert await ids(text=str(pid)[:13]) == {rows[1].id}
    assert await ids(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3)) == {
        rows[1].id,
        rows[2].id,
    }
    assert await ids(source="telemetry:*", name="login") == {rows[3].id}
    assert await store.count_rows(AuditFilter(source="telemetry:*")) == 2


async def test_count_limit_is_honest(store: Any) -> None:
    await store.insert_rows([row(i) for i in range(12)])
    assert await store.count_rows() == 12
    assert await store.count_rows(limit=5) == 6  # "5 of >5"
    assert await store.count_rows(limit=12) == 12
    assert await store.count_rows(limit=50) == 12
    assert await store.count_rows(AuditFilter(name="nope"), limit=5) == 0


async def test_iter_rows_streams_more_than_a_chunk(store: Any) -> None:
    rows = [row(i, at=T0 + timedelta(milliseconds=i // 2)) for i in range(257)]
    await store.insert_rows(rows)
    got = [r async for r in store.iter_rows(chunk=50)]
    assert got == sorted(rows, key=key)
    got = [r async for r in store.iter_rows(AuditFilter(name="event-3"), chunk=50)]
    assert [r.id for r in got] == [rows[3].id]


async def test_counts_and_buckets(store: Any) -> None:
    rows = [
        row(0, name="a", source="telemetry:backend"),
        row(1, name="a", source="telemetry:frontend"),
        row(2, name="b", source="telemetry:backend"),
        row(70, name="a", source="backend"),
    ]
    await store.insert_rows(rows)
    assert await store.counts_by_name(source_prefix="telemetry:", since=T0) == {"a": 2, "b": 1}
    assert await store.counts_by_name(source_prefix="telemetry:", since=T0 + timedelta(1)) == {}
    assert await store.total_rows() == 4
    minute = T0.replace(second=0, microsecond=0)
    assert await store.rows_per_minute(source_prefix=None, since=T0) == [
        (minute, 3),
        (minute + timedelta(minutes=1), 1),
    ]
    assert await store.rows_per_minute(source_prefix="telemetry:", since=T0) == [(minute, 3)]


async def test_unserialisable_props_store_nothing(store: Any) -> None:
    with pytest.raises(StoreError, match="nothing was stored"):
        await store.insert_rows([row(1), row(2, props={"bad": object()})])
    assert await store.total_rows() == 0


async def test_concurrent_inserts_from_two_stores(store_url: str) -> None:
    import asyncio

    from tuiaudit.storage import open_store

    async with open_store(store_url) as a, open_store(store_url) as b:
        batches = [[row(i * 10 + j) for j in range(10)] for i in range(8)]
        await asyncio.gather(
            *((a if i % 2 else b).insert_rows(batch) for i, batch in enumerate(batches))
        )
        assert await a.total_rows() == 80


# ------------------------------------------------------------ bounded search


def tie_rows(n: int, **kw: Any) -> list[AuditRow]:
    """``n`` rows, three per created_at (the id breaks ties); every fifth holds a needle."""
    out = []
    for i in range(n):
        props = {"n": i, "note": "a NeEdLe here"} if i % 5 == 0 else {"n": i}
        out.append(row(i, at=T0 + timedelta(seconds=i // 3), props=props, **kw))
    return out


async def scan_all(store: Any, flt: AuditFilter, *, limit: int, scan: int) -> tuple[list, list]:
    """Every step of a search: (matches in order, pages)."""
    found, pages, cursor = [], [], None
    while True:
        page = await store.scan_rows(flt, before=cursor, limit=limit, scan=scan)
        pages.append(page)
        found.extend(page.rows)
        assert len(page.rows) <= limit and page.scanned <= scan
        if page.complete:
            return found, pages
        assert page.next_cursor is not None
        cursor = page.next_cursor


async def test_scan_rows_examines_at_most_scan_rows(store: Any) -> None:
    rows = tie_rows(40)
    await store.insert_rows(rows)
    newest_first = sorted(rows, key=key, reverse=True)
    page = await store.scan_rows(AuditFilter(text="needle"), limit=100, scan=7)
    # Exactly the 7 newest rows were examined: the matches among them, and the
    # 7th row (mid-way through a created_at tie) is where the next step starts.
    assert page.scanned == 7
    assert page.next_cursor == key(newest_first[6])
    assert page.rows == [r for r in newest_first[:7] if r.props.get("note")]
    assert not page.complete
    # A text that matches nothing still costs one bounded step, not a full scan.
    page = await store.scan_rows(AuditFilter(text="absent"), limit=100, scan=10)
    assert (page.rows, page.scanned, page.next_cursor) == ([], 10, key(newest_first[9]))


async def test_scan_rows_continuation_finds_every_match_once(store: Any) -> None:
    rows = tie_rows(61)
    await store.insert_rows(rows)
    expected = [r for r in sorted(rows, key=key, reverse=True) if r.props.get("note")]
    for limit, scan in ((100, 7), (2, 7), (1, 1), (3, 100), (13, 13)):
        found, pages = await scan_all(store, AuditFilter(text="NEEDLE"), limit=limit, scan=scan)
        assert found == expected, (limit, scan)
        assert sum(p.scanned for p in pages) == len(rows), (limit, scan)
    # No text: the same walk over every row, in keyset order.
    found, pages = await scan_all(store, AuditFilter(), limit=5, scan=9)
    assert found == sorted(rows, key=key, reverse=True)


async def test_scan_rows_stops_at_the_limit(store: Any) -> None:
    rows = tie_rows(30)
    await store.insert_rows(rows)
    newest_first = sorted(rows, key=key, reverse=True)
    matches = [r for r in newest_first if r.props.get("note")]
    page = await store.scan_rows(AuditFilter(text="needle"), limit=2, scan=1000)
    # The step ends at its 2nd match: that row is the cursor, the rows above it were examined.
    assert page.rows == matches[:2]
    assert page.next_cursor == key(matches[1])
    assert page.scanned == newest_first.index(matches[1]) + 1
    # When the limit falls on the very last row, one more (empty) step says "complete".
    page = await store.scan_rows(
        AuditFilter(text="needle"), before=key(matches[-2]), limit=1, scan=1000
    )
    assert page.rows == [matches[-1]] and not page.complete
    end = await store.scan_rows(
        AuditFilter(text="needle"), before=page.next_cursor, limit=1, scan=1000
    )
    assert end.rows == [] and end.complete
    assert end.scanned == len(newest_first) - newest_first.index(matches[-1]) - 1
    with pytest.raises(ValueError, match="limit >= 1"):
        await store.scan_rows(AuditFilter(text="x"), limit=0, scan=10)


async def test_scan_rows_examines_only_rows_of_the_other_filters(store: Any) -> None:
    pid = uuid.uuid4()
    front = tie_rows(20, source="frontend")
    back = [row(100 + i, source="backend", props={"note": "needle"}) for i in range(10)]
    mine = row(200, source="frontend", profile_id=pid, at=T0 - timedelta(days=1))
    await store.insert_rows([*front, *back, mine])
    flt = AuditFilter(source="frontend", text="needle")
    found, pages = await scan_all(store, flt, limit=100, scan=6)
    assert found == [r for r in sorted(front, key=key, reverse=True) if r.props.get("note")]
    assert sum(p.scanned for p in pages) == 21  # frontend rows only, the backend ones skipped
    # The profile id is searched when the text could be part of a UUID, and only then.
    page = await store.scan_rows(AuditFilter(text=str(pid)[9:23].upper()), limit=10, scan=100)
    assert page.rows == [mine] and page.complete
    page = await store.scan_rows(AuditFilter(text=f"{str(pid)[:8]}x"), limit=10, scan=100)
    assert page.rows == []
