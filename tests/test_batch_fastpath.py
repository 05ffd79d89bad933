"""The shipper's fast paths give exactly what the plain code gives.

``encode_events`` (events encoded straight from rows) against the generic
encoder over ``row_to_event``; ``uuid_from_text`` against ``uuid.UUID``;
``rows_from_sqlite`` against ``row_from_sqlite``; the batch pipeline's error
path.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shipper_support import T0, ScriptedReceiver, consent, settings_for, shipper_for, telemetry_row

from tuiaudit.batch import build_batch, row_to_event
from tuiaudit.codec import EncodeError, decode_envelope
from tuiaudit.codec.row_events import _encode_rows, encode_events
from tuiaudit.codec.writer import encode
from tuiaudit.storage import open_store
from tuiaudit.storage.columns import (
    AUDIT_COLUMNS,
    row_from_sqlite,
    rows_from_sqlite,
    uuid_from_text,
)

HEX = "0123456789abcdefABCDEF"
uuid_texts = st.uuids().map(str) | st.uuids().map(lambda u: str(u).upper())
# Strings that look like UUIDs but are not canonical: a space, "_", "0x", a
# non-ASCII digit or a misplaced dash somewhere in a real one.
near_uuids = st.tuples(
    uuid_texts, st.integers(0, 35), st.sampled_from([" ", "_", "x", "-", "g", "٣", "\t", "+"])
).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :])
strings = (
    st.text(max_size=12) | uuid_texts | near_uuids | st.text(HEX + "-", min_size=36, max_size=36)
)
keys = st.text(max_size=6) | st.sampled_from(["a/b", "/x", "team-id", "file-id", ""])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-5000, 5000),
    st.floats(allow_nan=True),
    strings,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
maps = st.dictionaries(keys, json_values, max_size=5)


@st.composite
def pages(draw: Any) -> list[Any]:
    n = draw(st.integers(0, 12))
    names = st.sampled_from(["navigate", "login", str(uuid.UUID(int=7)), "é😀"])
    days = st.sampled_from([T0, T0 + timedelta(days=1), datetime(1969, 12, 31, 23, tzinfo=UTC)])
    return [
        replace(
            telemetry_row(i, name=draw(names)),
            props=draw(maps),
            context=draw(maps),
            tracked_at=draw(days),
        )
        for i in range(n)
    ]


def generic(rows: list[Any]) -> bytes | type[Exception]:
    try:
        return bytes(encode([row_to_event(r) for r in rows]))
    except EncodeError:
        return EncodeError


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_encode_events_is_the_generic_encoding(rows: list[Any]) -> None:
    expected = generic(rows)
    if expected is EncodeError:
        with pytest.raises(EncodeError):
            encode_events(rows)
    else:
        assert bytes(encode_events(rows)) == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_json_rows_take_the_fast_path(rows: list[Any]) -> None:
    if generic(rows) is not EncodeError:  # ints past 64 bits are an error either way
        assert bytes(_encode_rows(rows)) == generic(rows)


def test_rows_json_cannot_hold_take_the_generic_way() -> None:
    odd = [
        telemetry_row(0, props={"t": (1, "x")}),
        telemetry_row(1, props={"when": T0}),
        telemetry_row(2, props={3: "int key"}),
        replace(telemetry_row(3), name=None),  # type: ignore[arg-type]
    ]
    for row in odd:
        page = [telemetry_row(9), row]
        assert bytes(encode_events(page)) == generic(page)
    naive = [replace(telemetry_row(0), tracked_at=datetime(2025, 1, 1))]
    with pytest.raises(EncodeError, match="naive"):
        encode_events(naive)


def test_a_batch_body_decodes_to_its_events() -> None:
    page = [
        telemetry_row(i, props={"file-id": str(uuid.uuid4()), "n": i * 1000, "x": [None, 1.5]})
        for i in range(50)
    ]
    b = build_batch(page, instance_id=uuid.UUID(int=1), version="1")
    assert decode_envelope(b.body)["events"] == b.events == [row_to_event(r) for r in page]


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40) | uuid_texts | near_uuids | st.text(HEX + "-{}", max_size=40))
def test_uuid_from_text_is_uuid_UUID(text: str) -> None:
    try:
        expected: Any = uuid.UUID(text)
    except ValueError:
        with pytest.raises(ValueError):
            uuid_from_text(text)
        return
    got = uuid_from_text(text)
    assert type(got) is uuid.UUID and got == expected and got.is_safe == expected.is_safe
    assert str(got) == str(expected) and hash(got) == hash(expected)


async def test_rows_from_sqlite_matches_row_from_sqlite(tmp_path: Any) -> None:
    import sqlite3

    rows = [
        telemetry_row(i, created_at=T0 + timedelta(seconds=i), props={"n": i}) for i in range(1500)
    ]
    rows[3] = replace(rows[3], archived_at=T0, context={"a": [1, {"b": None}]})
    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        await store.insert_rows(rows)
        page = await store.telemetry_page(2000)  # past the threshold: parsed in a thread
        assert page == sorted(rows, key=lambda r: (r.created_at, r.id))
    with sqlite3.connect(tmp_path / "s.db") as conn:
        raw = conn.execute(f"SELECT {AUDIT_COLUMNS} FROM audit_log ORDER BY id").fetchall()
    assert rows_from_sqlite(raw) == [row_from_sqlite(t) for t in raw]


async def test_a_store_error_while_building_ahead_stops_the_run_and_keeps_rows(
    tmp_path: Any,
) -> None:
    from tuiaudit.storage.base import StoreUnavailable

    async with ScriptedReceiver().serve() as rx, open_store(f"sqlite:///{tmp_path}/s.db") as store:
        await consent(store)
        page = [telemetry_row(i, created_at=T0 + timedelta(seconds=i)) for i in range(30)]
        await store.insert_rows(page)
        calls = 0
        real_page = store.telemetry_page

        async def flaky_page(limit: int, *, after: Any = None) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise StoreUnavailable("store is busy; retry")
            return await real_page(limit, after=after)

        store.telemetry_page = flaky_page  # type: ignore[method-assign]
        async with shipper_for(store, settings_for(rx.url, batch_rows=10)) as sh:
            with pytest.raises(StoreUnavailable):
                await sh.run_once(jitter=False, report=False)
        store.telemetry_page = real_page  # type: ignore[method-assign]
        left = await store.telemetry_page(100)
        # The first batch was sent and deleted; nothing after the failure was lost.
        assert [r.id for r in left] == [r.id for r in page[10:]]
        assert len(rx.events_requests()) == 1
