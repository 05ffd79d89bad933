"""The shipper against real stores and a real loopback receiver (DESIGN §5, §5.2, §7.1)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
from shipper_support import (
    INSTANCE,
    T0,
    FakeClock,
    Reply,
    ScriptedReceiver,
    consent,
    rows,
    settings_for,
    shipper_for,
    telemetry_row,
)

from tuiaudit.batch import next_batch
from tuiaudit.codec import decode_envelope, kw
from tuiaudit.consent import revoke
from tuiaudit.daemon.metrics import Metrics
from tuiaudit.storage.base import AuditRow


def ids_of(req: Any) -> list[uuid.UUID]:
    return [e[kw("id")] for e in decode_envelope(req.body)["events"]]


async def pending(store: Any) -> int:
    return (await store.queue_stats()).pending


async def test_no_uri_sends_nothing_but_still_gcs(store: Any) -> None:
    stale = telemetry_row(0, created_at=T0 - timedelta(days=8))
    await store.insert_rows([stale, *rows(3)])
    await consent(store)
    async with ScriptedReceiver().serve() as rx, shipper_for(store, settings_for(None)) as sh:
        rr = await sh.run_once()
    assert rr.held == "no telemetry URI: set --telemetry-uri"  # tuiaudit.holds
    assert rr.gc is not None and rr.gc.age == 1
    assert rx.requests == [] and await pending(store) == 3
    assert sh.state_info()["held"] == rr.held


async def test_consent_hold_and_revoke(store: Any) -> None:
    await store.insert_rows(rows(3))
    async with ScriptedReceiver().serve() as rx:
        async with shipper_for(store, settings_for(rx.url)) as sh:
            rr = await sh.run_once()
            assert rr.held is not None and rr.held.startswith("policy v")
            assert rr.held.endswith("not accepted: `tuiaudit consent --accept`")
            assert rx.requests == []
            await consent(store)
            await revoke(store)
            rr = await sh.run_once()
            assert rr.held is not None and "not accepted" in rr.held
            assert rx.requests == []
            assert await pending(store) == 0  # revoking purged the queue
            assert (await store.drop_counts())["consent-revoked"] == 3


async def test_telemetry_flag_off_and_paused_hold(store: Any) -> None:
    await store.insert_rows(rows(2))
    await consent(store)
    async with ScriptedReceiver().serve() as rx:
        off = settings_for(rx.url, flags=("audit-log",), do_not_track=True)
        async with shipper_for(store, off) as sh:
            assert (await sh.run_once()).held == "telemetry flag off (DO_NOT_TRACK is set)"
        await store.set_property("shipping-paused", True)
        async with shipper_for(store, settings_for(rx.url)) as sh:
            assert (await sh.run_once()).held == "paused: resume with h in the dashboard"
        assert rx.requests == [] and await pending(store) == 2


async def test_enabled_with_no_rows_sends_only_the_report(store: Any) -> None:
    await consent(store)
    async with ScriptedReceiver().serve() as rx, shipper_for(store, settings_for(rx.url)) as sh:
        rr = await sh.run_once()
    assert rr.report_ok is True and rr.batches_sent == 0
    assert len(rx.requests) == 1
    report = rx.requests[0].json
    assert report["type"] == "telemetry-legacy-report"
    assert report["instance-id"] == str(INSTANCE) and report["version"] == "9.9.9"
    stats = report["stats"]
    for key in (
        "event-counters",
        "total-events",
        "os",
        "arch",
        "cpus",
        "python-version",
        "timezone",
        "store-total-rows",
    ):
        assert key in stats
    ledger = await store.ledger_recent()
    assert [(e.kind, e.status) for e in ledger] == [("report", "ok")]


async def test_report_counts_todays_rows_by_name(store: Any) -> None:
    await consent(store)
    now_rows = [telemetry_row(i, name="a" if i < 2 else "b", created_at=T0) for i in range(3)]
    await store.insert_rows(now_rows)
    async with ScriptedReceiver().serve() as rx, shipper_for(store, settings_for(rx.url)) as sh:
        await sh.run_once()
    stats = rx.report_requests()[0].json["stats"]
    assert stats["event-counters"] == {"a": 2, "b": 1} and stats["total-events"] == 3


async def test_happy_path_ships_and_deletes_everything(store: Any) -> None:
    page = rows(5)
    await store.insert_rows(page)
    await consent(store)
    metrics = Metrics()
    async with ScriptedReceiver().serve() as rx:
        async with shipper_for(store, settings_for(rx.url), metrics=metrics) as sh:
            rr = await sh.run_once()
    assert rr.ok and rr.batches_sent == 1 and rr.rows_sent == 5
    assert await pending(store) == 0
    (req,) = rx.events_requests()
    assert req.headers["Content-Type"] == "application/json"
    env = req.json
    assert set(env) == {"type", "version", "instance-id", "events"}
    assert env["type"] == "telemetry-events" and env["instance-id"] == str(INSTANCE)
    assert ids_of(req) == [r.id for r in page]
    batch_entries = [e for e in await store.ledger_recent() if e.kind == "events"]
    (entry,) = batch_entries
    assert entry.status == "ok" and entry.http_status == 204 and entry.events == 5
    assert req.headers["Idempotency-Key"] == entry.batch_key
    assert metrics.batches_ok == 1 and metrics.events_sent == 5
    assert metrics.bytes_sent == len(req.body) == entry.encoded_bytes


async def test_payload_fields_no_ip_context_always_a_map(store: Any) -> None:
    await consent(store)
    await store.insert_rows([telemetry_row(0, context={}), telemetry_row(1, context={"os": "x"})])
    async with ScriptedReceiver().serve() as rx, shipper_for(store, settings_for(rx.url)) as sh:
        await sh.run_once()
    events = decode_envelope(rx.events_requests()[0].body)["events"]
    keys = {
        kw(k)
        for k in ("name", "type", "source", "tracked-at", "profile-id", "props", "context", "id")
    }
    for ev in events:
        assert set(ev) == keys
        assert isinstance(ev[kw("context")], dict) and isinstance(ev[kw("props")], dict)
        assert None not in ev.values()
    assert b"0.0.0.0" not in rx.events_requests()[0].body
    assert events[1][kw("context")] == {kw("os"): "x"}


async def test_failure_keeps_rows_and_schedules_a_retry(store: Any) -> None:
    await store.insert_rows(rows(4))
    await consent(store)
    metrics = Metrics()
    rx = ScriptedReceiver(default=Reply(500))
    async with rx.serve(), shipper_for(store, settings_for(rx.url), metrics=metrics) as sh:
        rr = await sh.run_once()
    assert not rr.ok and rr.error_class == "retryable" and rr.batches_failed == 1
    assert rr.report_ok is False  # the report failed too, and did not block the batch
    assert await pending(store) == 4
    assert rr.retry_at is not None and T0 <= rr.retry_at <= T0 + timedelta(seconds=30)
    entry = next(e for e in await store.ledger_recent() if e.kind == "events")
    assert (entry.status, entry.http_status, entry.error_class) == ("failed", 500, "retryable")
    assert metrics.batches_failed == 1


async def test_pages_of_one_send_n_requests(store: Any) -> None:
    await store.insert_rows(rows(4))
    await consent(store)
    rx = ScriptedReceiver()
    async with rx.serve(), shipper_for(store, settings_for(rx.url, batch_rows=1)) as sh:
        rr = await sh.run_once()
    assert len(rx.events_requests()) == 4 and rr.rows_sent == 4
    assert await pending(store) == 0


async def test_second_of_three_failing_stops_the_loop(store: Any) -> None:
    page = rows(3)
    await store.insert_rows(page)
    await consent(store)
    rx = ScriptedReceiver([Reply(204), Reply(204), Reply(503)])  # report, batch 1, batch 2
    async with rx.serve(), shipper_for(store, settings_for(rx.url, batch_rows=1)) as sh:
        rr = await sh.run_once()
    assert len(rx.events_requests()) == 2 and rr.batches_sent == 1
    left = await store.telemetry_page(10)
    assert [r.id for r in left] == [r.id for r in page[1:]]


async def test_second_run_after_success_sends_no_batch(store: Any) -> None:
    await store.insert_rows(rows(3))
    await consent(store)
    rx = ScriptedReceiver()
    async with rx.serve(), shipper_for(store, settings_for(rx.url)) as sh:
        await sh.run_once()
        rr = await sh.run_once()
    assert rr.batches_sent == 0 and len(rx.events_requests()) == 1


async def test_age_gc_runs_even_when_the_send_fails(store: Any) -> None:
    stale = [telemetry_row(i, created_at=T0 - timedelta(days=7, minutes=i + 1)) for i in range(2)]
    fresh = [telemetry_row(9, created_at=T0 - timedelta(days=6))]
    await store.insert_rows([*stale, *fresh])
    await consent(store)
    rx = ScriptedReceiver(default=Reply(503))
    async with rx.serve(), shipper_for(store, settings_for(rx.url)) as sh:
        rr = await sh.run_once()
    assert rr.gc is not None and (rr.gc.age, rr.gc.cap) == (2, 0)
    assert [r.id for r in await store.telemetry_page(10)] == [fresh[0].id]
    assert (await store.drop_counts())["age"] == 2


async def test_cap_drops_exactly_the_oldest(store: Any) -> None:
    page = rows(10)
    await store.insert_rows(page)
    async with shipper_for(store, settings_for(None, max_rows=6)) as sh:
        rr = await sh.run_once()
    assert rr.gc is not None and rr.gc.cap == 4
    assert [r.id for r in await store.telemetry_page(20)] == [r.id for r in page[4:]]


async def test_preview_sha_equals_ledger_sha(store: Any) -> None:
    await store.insert_rows(rows(7))
    await consent(store)
    settings = settings_for(None)
    preview = await next_batch(store, settings, instance_id=INSTANCE, version="9.9.9")
    assert preview is not None
    rx = ScriptedReceiver()
    async with rx.serve(), shipper_for(store, settings_for(rx.url)) as sh:
        await sh.run_once()
    entry = next(e for e in await store.ledger_recent() if e.kind == "events")
    assert entry.body_sha256 == preview.sha256
    assert entry.batch_key == preview.batch_key
    assert rx.events_requests()[0].body == preview.body


async def test_file_sink_appends_envelopes(store: Any, tmp_path: Any) -> None:
    await store.insert_rows(rows(3))
    await consent(store)
    out = tmp_path / "out.jsonl"
    async with shipper_for(store, settings_for(out.as_uri())) as sh:
        rr = await sh.run_once()
    assert rr.ok and rr.rows_sent == 3 and await pending(store) == 0
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(x)["type"] for x in lines] == [
        "telemetry-legacy-report",
        "telemetry-events",
    ]
    assert len(decode_envelope(lines[1])["events"]) == 3


async def test_keep_sent_bodies(store: Any, tmp_path: Any) -> None:
    await store.insert_rows(rows(2))
    await consent(store)
    keep = tmp_path / "sent"
    rx = ScriptedReceiver()
    async with (
        rx.serve(),
        shipper_for(store, settings_for(rx.url, keep_sent_bodies=str(keep))) as sh,
    ):
        await sh.run_once()
    entry = next(e for e in await store.ledger_recent() if e.kind == "events")
    assert (keep / f"{entry.body_sha256}.json").read_bytes() == rx.events_requests()[0].body


async def test_oversize_event_is_quarantined_and_the_rest_ships(store: Any) -> None:
    import os

    big = telemetry_row(
        1, created_at=T0 + timedelta(seconds=1), context={"version": os.urandom(30_000).hex()}
    )
    small = [
        telemetry_row(0, created_at=T0),
        telemetry_row(2, created_at=T0 + timedelta(seconds=2)),
    ]
    await store.insert_rows([small[0], big, small[1]])
    await consent(store)
    rx = ScriptedReceiver()
    async with rx.serve(), shipper_for(store, settings_for(rx.url, batch_bytes=20_000)) as sh:
        rr = await sh.run_once()
    assert rr.quarantined == 1 and rr.rows_sent == 2
    sent = [i for r in rx.events_requests() for i in ids_of(r)]
    assert sent == [small[0].id, small[1].id]
    (q,) = await store.list_quarantine()
    assert q.row.id == big.id and "too large" in q.reason


def _decoded_ids(rx: ScriptedReceiver) -> list[uuid.UUID]:
    return [i for r in rx.events_requests() for i in ids_of(r)]


async def test_poison_row_is_quarantined_and_the_others_ship(store: Any) -> None:
    page = rows(8)
    poison = page[5].id
    await store.insert_rows(page)
    await consent(store)
    rx = ScriptedReceiver()
    delivered: list[uuid.UUID] = []

    def judge(req: Any) -> Reply | None:
        if req.json.get("type") != "telemetry-events":
            return Reply(204)
        got = ids_of(req)
        if poison in got:
            return Reply(422 if len(got) % 2 else 400)
        delivered.extend(got)
        return Reply(204)

    rx.on_request = judge
    async with rx.serve(), shipper_for(store, settings_for(rx.url)) as sh:
        rr = await sh.run_once()
    assert rr.quarantined == 1 and rr.ok
    assert sorted(delivered) == sorted(r.id for r in page if r.id != poison)
    assert await pending(store) == 0
    (q,) = await store.list_quarantine()
    assert q.row.id == poison and "rejected" in q.reason


async def _insert_and_accept(store: Any, page: list[AuditRow]) -> None:
    await store.insert_rows(page)
    await consent(store)


async def test_413_splits_the_batch(store: Any) -> None:
    page = rows(4)
    await _insert_and_accept(store, page)
    rx = ScriptedReceiver([Reply(204), Reply(413)])  # report ok, whole batch too large
    async with rx.serve(), shipper_for(store, settings_for(rx.url)) as sh:
        rr = await sh.run_once()
    sizes = [len(ids_of(r)) for r in rx.events_requests()]
    assert sizes == [4, 2, 2] and rr.ok and await pending(store) == 0


async def test_401_is_a_configuration_error_until_settings_change(store: Any) -> None:
    await _insert_and_accept(store, rows(3))
    rx = ScriptedReceiver(default=Reply(401))
    async with rx.serve():
        settings = settings_for(rx.url)
        async with shipper_for(store, settings) as sh:
            rr = await sh.run_once()
            assert rr.error_class == "config" and rr.retry_at is None and sh.retry_at is None
            assert await pending(store) == 3
            info = sh.state_info()
            assert info["config-error"] and "401" in info["config-error"]
            sh.update_settings(settings)  # same settings: the error stays
            assert sh.state_info()["config-error"]
            sh.update_settings(settings_for(rx.url + "?v=2"))
            assert sh.state_info()["config-error"] is None
            rx.default = Reply(401)
            await sh.run_once()
            assert sh.state_info()["config-error"]
            rx.default = Reply(204)
            rr = await sh.run_once()  # a successful send clears it too
            assert rr.ok and sh.state_info()["config-error"] is None


async def test_retry_after_seconds_and_http_date(store: Any) -> None:
    await _insert_and_accept(store, rows(2))
    clock = FakeClock()
    date = "Sat, 01 Mar 2025 12:20:00 GMT"  # T0 + 20 min
    rx = ScriptedReceiver(
        [
            Reply(204),
            Reply(429, {"Retry-After": "600"}),
            Reply(204),
            Reply(429, {"Retry-After": date}),
            Reply(204),
            Reply(503, {"Retry-After": "tomorrow-ish"}),
        ]
    )
    async with rx.serve(), shipper_for(store, settings_for(rx.url), clock=clock) as sh:
        sh.next_run_at = T0 + timedelta(hours=3)
        rr = await sh.run_once()
        assert rr.error_class == "retryable"
        assert rr.retry_at == T0 + timedelta(seconds=600)  # back-off ≤ 30 s, Retry-After wins
        rr = await sh.run_once()
        assert rr.retry_at == T0 + timedelta(minutes=20)
        rr = await sh.run_once()  # garbage: the back-off (3rd failure: ≤ 120 s)
        assert rr.retry_at is not None and T0 <= rr.retry_at <= T0 + timedelta(seconds=120)
    assert await pending(store) == 2


async def test_timeout_and_refused_connection_are_retryable(store: Any) -> None:
    await _insert_and_accept(store, rows(1))
    rx = ScriptedReceiver(default=Reply(204, delay=5))
    async with rx.serve():
        settings = settings_for(rx.url, request_timeout=0.2, connect_timeout=0.2)
        async with shipper_for(store, settings) as sh:
            rr = await sh.run_once(report=False)
    assert rr.error_class == "retryable" and "time limit" in (rr.error or "")
    # the server is gone now: connection refused
    async with shipper_for(store, settings_for(rx.url)) as sh:
        rr = await sh.run_once(report=False)
    assert rr.error_class == "retryable" and "cannot reach" in (rr.error or "")
    assert await pending(store) == 1


async def test_two_shippers_never_send_the_same_row(store: Any, store_url: str) -> None:
    import asyncio

    from tuiaudit.storage import open_store

    page = rows(40)
    await _insert_and_accept(store, page)
    rx = ScriptedReceiver()
    async with rx.serve(), open_store(store_url) as other:
        settings = settings_for(rx.url, batch_rows=3)
        async with (
            shipper_for(store, settings, holder="a") as a,
            shipper_for(other, settings, holder="b") as b,
        ):
            first = await asyncio.gather(a.run_once(), b.run_once())
            held = [r for r in first if r.held == "another shipper holds the lease"]
            assert len(held) == 1  # the other one shipped everything meanwhile
            for _ in range(3):
                await asyncio.gather(a.run_once(), b.run_once())
    sent = _decoded_ids(rx)
    assert sorted(sent) == sorted(r.id for r in page)  # everything, exactly once
    assert len(sent) == len(set(sent))


async def test_run_loop_schedules_retries_and_runs(store: Any) -> None:
    import asyncio

    await _insert_and_accept(store, rows(2))
    clock = FakeClock()
    rx = ScriptedReceiver([Reply(204), Reply(503)])  # first run: report ok, batch fails
    stop = asyncio.Event()
    async with (
        rx.serve(),
        shipper_for(store, settings_for(rx.url, interval=3600), clock=clock) as sh,
    ):
        states: list[dict[str, Any]] = []
        sh.on_state = lambda s: states.append(s.state_info())

        def observe(req: Any) -> Reply | None:
            if len(rx.events_requests()) >= 2:
                stop.set()
            return None

        rx.on_request = observe
        await asyncio.wait_for(sh.run(stop), 10)
    # run 1 at start failed, the retry (no report) succeeded before the next interval
    kinds = [r.json["type"] for r in rx.requests]
    assert kinds == ["telemetry-legacy-report", "telemetry-events", "telemetry-events"]
    assert await pending(store) == 0
    assert clock.now < T0 + timedelta(seconds=3600)
    assert any(s["retry-at"] for s in states)
