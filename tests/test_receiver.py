"""The local receiver: decode, de-duplicate, append; misbehave on purpose."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from shipper_support import INSTANCE, consent, rows, settings_for, shipper_for

from tuiaudit.batch import build_batch
from tuiaudit.daemon.receiver import STATE_KEY, ReceiverState, make_receiver_app, serve


@asynccontextmanager
async def running(out: Path | None, **kw: Any):  # type: ignore[no-untyped-def]
    app = make_receiver_app(out, **kw)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/", app[STATE_KEY]
    finally:
        await runner.cleanup()


async def post(url: str, body: bytes, key: str | None = None) -> int:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status


async def test_accepts_decodes_and_deduplicates(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    page = rows(4)
    whole = build_batch(page, instance_id=INSTANCE, version="1")
    overlap = build_batch(page[2:], instance_id=INSTANCE, version="1")
    async with running(out) as (url, state):
        assert await post(url, whole.body, whole.batch_key) == 204
        assert await post(url, whole.body, whole.batch_key) == 204  # same key: not again
        assert await post(url, overlap.body, overlap.batch_key) == 204  # ids seen: dropped
        report = orjson.dumps({"type": "telemetry-legacy-report", "version": "1", "stats": {}})
        assert await post(url + "any/path", report) == 204
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [x.get("type") or x["envelope"]["type"] for x in lines] == [
        "telemetry-events",
        "telemetry-events",
        "telemetry-legacy-report",
    ]
    first = lines[0]
    assert first["count"] == 4 and first["instance-id"] == str(INSTANCE)
    assert first["headers"]["idempotency-key"] == whole.batch_key
    assert [e["id"] for e in first["events"]] == [{"$uuid": str(r.id)} for r in page]
    assert lines[1]["count"] == 0 and lines[1]["duplicates"] == 2
    assert state.duplicate_envelopes == 1 and state.duplicate_events == 6
    assert state.key_mismatches == 2  # ids 3 and 4 came back under another key
    assert state.events == 4 and state.reports == 1


async def test_rejects_garbage_with_400(tmp_path: Path) -> None:
    async with running(tmp_path / "r.jsonl") as (url, state):
        assert await post(url, b"not json") == 400
        assert await post(url, b"[1]") == 400
        bad = orjson.dumps({"type": "telemetry-events", "events": "AAQ!!"})
        assert await post(url, bad) == 400
        assert await post(url, orjson.dumps({"type": "other"})) == 400
    assert state.rejected == 4 and not (tmp_path / "r.jsonl").read_bytes()


async def test_status_and_fail_rate_misbehave(tmp_path: Path) -> None:
    body = build_batch(rows(1), instance_id=INSTANCE, version="1").body
    async with running(None, status=401) as (url, _):
        assert await post(url, body) == 401
    async with running(None, fail_rate=0.5, rng=random.Random(3)) as (url, state):
        statuses = [await post(url, body, key=str(i)) for i in range(20)]
    assert set(statuses) == {204, 503}
    assert state.failures_injected == statuses.count(503)


async def test_shipper_to_receiver_end_to_end(store: Any, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    page = rows(25)
    await store.insert_rows(page)
    await consent(store)
    async with running(out) as (url, state):
        assert isinstance(state, ReceiverState)
        async with shipper_for(store, settings_for(url, batch_rows=10)) as sh:
            rr = await sh.run_once()
    assert rr.ok and rr.rows_sent == 25 and state.events == 25 and state.reports == 1
    assert sorted(state.event_ids) == sorted(str(r.id) for r in page)
    assert state.duplicate_events == 0
