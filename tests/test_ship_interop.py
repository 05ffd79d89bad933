"""The reference codec decodes what the shipper sent and the receiver captured.

A real shipper run posts to a loopback server that keeps the raw bodies and
passes them on to the local receiver; the reference (data.fressian + zstd-jni
on the JVM) must decode each captured blob to exactly the events the receiver
decoded and the rows held. Skips outside CI when Java or the jars are missing.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import reference_codec
from shipper_support import T0, ScriptedReceiver, consent, settings_for, shipper_for
from shipper_support import telemetry_row as row

from tuiaudit.batch import row_to_event
from tuiaudit.codec import to_tagged_json
from tuiaudit.daemon.receiver import STATE_KEY, make_receiver_app, serve

pytestmark = pytest.mark.interop
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_reference() -> None:
    reason = reference_codec.problem()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true: the reference codec must run here: {reason}")
        pytest.skip(reason)


def varied_rows() -> list[Any]:
    out = []
    for i in range(40):
        props: dict[str, Any] = {
            "n": i * 7919 - 100_000,
            "big": 2**40 + i,
            "ratio": i / 3,
            "ok": i % 2 == 0,
            "file-id": str(uuid.UUID(int=i + 99)),
        }
        if i % 5 == 0:
            props.update({"route": "dashboard/é✓日😀" * (i % 3 + 1), "flags": ["a", "b", i]})
        context = {"version": f"2.{i}", "screen-width": 1920} if i % 2 else {}
        out.append(
            row(
                i,
                created_at=T0 + timedelta(seconds=i),
                props=props,
                context=context,
                source="telemetry:frontend" if i % 3 else "telemetry:backend",
            )
        )
    return out


async def test_reference_decodes_batches_captured_by_the_receiver(
    store: Any, tmp_path: Path
) -> None:
    require_reference()
    page = varied_rows()
    await store.insert_rows(page)
    await consent(store)

    app = make_receiver_app(tmp_path / "received.jsonl")
    runner, port = await serve(app, "127.0.0.1", 0)
    forward = f"http://127.0.0.1:{port}/"
    proxy = ScriptedReceiver()  # answers 204 and keeps the raw bodies, forwarded below
    async with aiohttp.ClientSession() as client:
        try:
            async with (
                proxy.serve(),
                shipper_for(store, settings_for(proxy.url, batch_rows=15)) as sh,
            ):
                rr = await sh.run_once()
            assert rr.ok and rr.rows_sent == len(page)
            for req in proxy.events_requests():
                headers = {"Idempotency-Key": req.headers["Idempotency-Key"]}
                async with client.post(forward, data=req.body, headers=headers) as resp:
                    assert resp.status == 204
        finally:
            await runner.cleanup()
    assert app[STATE_KEY].events == len(page)

    bodies = [r.json for r in proxy.events_requests()]
    assert len(bodies) == 3
    cases = [{"name": f"batch-{i}", "blob": b["events"]} for i, b in enumerate(bodies)]
    decoded = reference_codec.decode_cases(cases)
    lines = [orjson.loads(x) for x in (tmp_path / "received.jsonl").read_bytes().splitlines()]
    receiver_events = [
        e for line in lines if line.get("type") == "telemetry-events" for e in line["events"]
    ]
    reference_events = []
    for case in decoded:
        assert "error" not in case, case.get("error")
        reference_events.extend(case["decoded"])
    expected = to_tagged_json([row_to_event(r) for r in page])
    assert reference_events == expected
    assert receiver_events == expected
