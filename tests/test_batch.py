"""The one body builder: rows → events → blob v4 → envelope (DESIGN §5, §5.1)."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import replace
from datetime import datetime

import orjson
import pytest
from shipper_support import INSTANCE, T0, rows, settings_for, telemetry_row

from tuiaudit.batch import batch_key, build_batch, next_batch, plan_batches, row_to_event
from tuiaudit.codec import decode_envelope, kw


def test_event_shape_keyword_keys_no_ip_no_nulls() -> None:
    row = telemetry_row(
        3,
        props={
            "file-id": "0190c5a4-0000-7000-8000-000000000001",
            "n": 2,
            "gone": None,
            "nested": {"a": None, "b": 1},
        },
        context={"version": "2.1"},
    )
    ev = row_to_event(row)
    assert list(ev) == [
        kw(k)
        for k in ("name", "type", "source", "tracked-at", "profile-id", "props", "context", "id")
    ]
    assert ev[kw("id")] == row.id
    assert ev[kw("profile-id")] == row.profile_id
    assert ev[kw("tracked-at")] == row.tracked_at
    props = ev[kw("props")]
    assert props == {
        kw("file-id"): uuid.UUID("0190c5a4-0000-7000-8000-000000000001"),
        kw("n"): 2,
        kw("nested"): {kw("b"): 1},
    }
    assert ev[kw("context")] == {kw("version"): "2.1"}
    assert kw("ip-addr") not in ev and kw("created-at") not in ev


def test_props_and_context_are_always_maps() -> None:
    ev = row_to_event(telemetry_row(1, props={}, context={}))
    assert ev[kw("props")] == {} and ev[kw("context")] == {}


def test_envelope_fields_and_round_trip() -> None:
    page = rows(5)
    b = build_batch(page, instance_id=INSTANCE, version="1.2.3")
    env = orjson.loads(b.body)
    assert set(env) == {"type", "version", "instance-id", "events"}
    assert env["type"] == "telemetry-events"
    assert env["version"] == "1.2.3"
    assert env["instance-id"] == str(INSTANCE)
    decoded = decode_envelope(b.body)["events"]
    assert [e[kw("id")] for e in decoded] == [r.id for r in page]
    assert decoded[0][kw("tracked-at")] == page[0].tracked_at
    assert isinstance(decoded[0][kw("tracked-at")], datetime)
    assert b.sha256 == hashlib.sha256(b.body).hexdigest()
    assert b.encoded_bytes == len(b.body)
    assert b.raw_bytes > 0 and b.count == 5 and b.ids == [r.id for r in page]


def test_batch_key_depends_only_on_the_set_of_ids() -> None:
    page = rows(4)
    a = build_batch(page, instance_id=INSTANCE, version="1")
    again = build_batch(list(page), instance_id=INSTANCE, version="2")
    assert a.batch_key == again.batch_key == batch_key(list(reversed(a.ids)))
    assert len(a.batch_key) == 64
    assert build_batch(page[:3], instance_id=INSTANCE, version="1").batch_key != a.batch_key


def test_plan_splits_a_page_over_the_byte_cap() -> None:
    page = [telemetry_row(i, props={"n": i, "file-id": str(uuid.uuid4())}) for i in range(200)]
    whole = build_batch(page, instance_id=INSTANCE, version="1")
    cap = whole.encoded_bytes // 3
    batches = list(plan_batches(page, instance_id=INSTANCE, version="1", max_bytes=cap))
    assert len(batches) >= 3
    assert all(b.encoded_bytes <= cap and not b.oversize for b in batches)
    assert [i for b in batches for i in b.ids] == [r.id for r in page]  # in order, all of them


def test_a_single_row_over_the_cap_comes_out_oversize() -> None:
    big = telemetry_row(1, context={"version": os.urandom(20_000).hex()})  # incompressible
    page = [telemetry_row(0), big, telemetry_row(2)]
    out = list(plan_batches(page, instance_id=INSTANCE, version="1", max_bytes=2_000))
    assert [b.oversize for b in out] == [False, True, False]
    assert out[1].ids == [big.id]


@pytest.mark.postgres
async def test_next_batch_is_the_first_planned_batch(store: object) -> None:
    page = rows(30)
    await store.insert_rows(page)  # type: ignore[attr-defined]
    settings = settings_for(None, batch_rows=10)
    b = await next_batch(store, settings, instance_id=INSTANCE, version="1")  # type: ignore[arg-type]
    assert b is not None and b.ids == [r.id for r in page[:10]]
    expected = build_batch(page[:10], instance_id=INSTANCE, version="1")
    assert b.sha256 == expected.sha256 and b.batch_key == expected.batch_key
    small = replace(settings, batch_bytes=expected.encoded_bytes // 2)
    first = await next_batch(store, small, instance_id=INSTANCE, version="1")  # type: ignore[arg-type]
    assert first is not None and 0 < first.count < 10 and first.ids == b.ids[: first.count]


async def test_next_batch_on_an_empty_queue(tmp_path: object) -> None:
    from tuiaudit.storage import open_store

    async with open_store(f"sqlite:///{tmp_path}/s.db") as store:
        assert (
            await next_batch(store, settings_for(None), instance_id=INSTANCE, version="1") is None
        )


def test_telemetry_row_default() -> None:
    assert telemetry_row(0, created_at=T0).source == "telemetry:backend"
