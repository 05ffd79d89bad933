"""Cross-process coordination on both back-ends: lease, commands, properties,
daemon state, webhook queueing and change detection."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tuiaudit.storage import AuditRow, DaemonState, WebhookJob, open_store

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def arow(name: str = "n") -> AuditRow:
    now = datetime.now(UTC)
    return AuditRow(uuid.uuid4(), name, "action", "backend", uuid.uuid4(), "::1", {}, {}, now, now)


async def test_shipper_lease_is_exclusive(store_url: str) -> None:
    async with open_store(store_url) as a, open_store(store_url) as b:
        assert await a.try_acquire_shipper("daemon-a", ttl_s=60)
        assert not await b.try_acquire_shipper("daemon-b", ttl_s=60)
        assert await a.try_acquire_shipper("daemon-a", ttl_s=60)  # renew
        assert not await b.try_acquire_shipper("daemon-b", ttl_s=60)
        await b.release_shipper("daemon-b")  # not the holder: no effect
        assert not await b.try_acquire_shipper("daemon-b", ttl_s=60)
        await a.release_shipper("daemon-a")
        assert await b.try_acquire_shipper("daemon-b", ttl_s=60)
        assert not await a.try_acquire_shipper("daemon-a", ttl_s=60)
        await b.release_shipper("daemon-b")


async def test_sqlite_lease_expires(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with open_store(url) as a, open_store(url) as b:
        assert await a.try_acquire_shipper("a", ttl_s=0)  # expires at once
        assert await b.try_acquire_shipper("b", ttl_s=60)
        assert not await a.try_acquire_shipper("a", ttl_s=60)


async def test_lease_released_when_holder_store_closes(store_url: str) -> None:
    async with open_store(store_url) as b:
        async with open_store(store_url) as a:
            assert await a.try_acquire_shipper("a", ttl_s=60)
            await a.release_shipper("a")
        assert await b.try_acquire_shipper("b", ttl_s=60)
        await b.release_shipper("b")


async def test_claim_commands_exclusive(store_url: str) -> None:
    async with open_store(store_url) as a, open_store(store_url) as b:
        ids = [await a.enqueue_command("ship-now", {"n": i}) for i in range(6)]
        gc_id = await a.enqueue_command("gc")
        got_a, got_b = await asyncio.gather(
            a.claim_commands("da", kinds=["ship-now"]), b.claim_commands("db", kinds=["ship-now"])
        )
        claimed = [c.id for c in got_a] + [c.id for c in got_b]
        assert sorted(claimed) == ids  # each exactly once
        assert all(c.status == "running" for c in got_a + got_b)
        assert {c.claimed_by for c in got_a} <= {"da"}
        assert await a.claim_commands("da", kinds=["ship-now"]) == []
        (g,) = await b.claim_commands("db")
        assert (g.id, g.kind, g.args, g.claimed_by) == (gc_id, "gc", {}, "db")
        first = (got_a + got_b)[0]
        await a.finish_command(first.id, ok=True, result={"sent": 3})
        await a.finish_command(gc_id, ok=False, result={"error": "x"})
        done = await b.get_command(first.id)
        assert (done.status, done.result, done.args["n"]) == ("done", {"sent": 3}, done.args["n"])
        assert done.finished_at is not None and done.created_at.tzinfo is not None
        assert (await b.get_command(gc_id)).status == "failed"
        assert await b.get_command(99999) is None
        assert await a.claim_commands("da", kinds=[]) == []


async def test_properties(store: Any) -> None:
    assert await store.get_property("missing") is None
    await store.set_property("instance-id", "abc")
    assert await store.get_property("instance-id") == "abc"
    await store.set_property("instance-id", {"x": [1, "ü"]})
    assert await store.get_property("instance-id") == {"x": [1, "ü"]}
    assert await store.ensure_property("consent", {"v": 1}) == {"v": 1}
    assert await store.ensure_property("consent", {"v": 2}) == {"v": 1}
    await store.delete_property("consent")
    assert await store.get_property("consent") is None
    await store.set_property("n", 0)
    assert await store.get_property("n") == 0


async def test_ensure_property_race(store_url: str) -> None:
    async with open_store(store_url) as a, open_store(store_url) as b:
        values = await asyncio.gather(
            *(s.ensure_property("id", str(i)) for i, s in enumerate([a, b, a, b]))
        )
        assert len(set(values)) == 1


async def test_daemon_state(store: Any) -> None:
    s1 = DaemonState(
        daemon_id="d1", pid=10, host="h", listen="127.0.0.1:6061", started_at=T0,
        heartbeat_at=T0 + timedelta(seconds=5), flags=["audit-log", "telemetry"],
    )  # fmt: skip
    s2 = DaemonState(
        daemon_id="d2", pid=11, host="h2", listen="127.0.0.1:6062", started_at=T0,
        heartbeat_at=T0 + timedelta(seconds=9), flags=[], paused=True,
        next_run_at=T0 + timedelta(hours=3), stopped_at=T0 + timedelta(hours=1),
        info={"last-error": None, "forecast": {"cap-in-s": 12.5}},
    )  # fmt: skip
    await store.put_daemon_state(s1)
    await store.put_daemon_state(s2)
    assert await store.daemon_states() == [s2, s1]
    s1b = DaemonState(**{**{f: getattr(s1, f) for f in s1.__slots__},
                         "heartbeat_at": T0 + timedelta(seconds=20), "paused": True})  # fmt: skip
    await store.put_daemon_state(s1b)
    assert await store.daemon_states() == [s1b, s2]


async def test_webhook_queueing_and_batch_key_dedupe(store: Any) -> None:
    all_hook = await store.add_webhook("https://a/", secret="s", event_names=[])
    only = await store.add_webhook("https://b/", secret=None, event_names=["signup"], retries=2)
    off = await store.add_webhook("https://c/", secret=None, event_names=[])
    assert await store.set_webhook_enabled(off, False)
    hooks = await store.list_webhooks()
    assert [(h.id, h.url, h.secret, h.enabled, h.event_names, h.retries) for h in hooks] == [
        (all_hook, "https://a/", "s", True, [], 0),
        (only, "https://b/", None, True, ["signup"], 2),
        (off, "https://c/", None, False, [], 0),
    ]

    jobs = [
        WebhookJob({"name": "signup", "n": 1}, "signup"),
        WebhookJob({"name": "login", "n": 1}, "login", batch_key="u1", batch_timeout_ms=60_000),
    ]
    await store.insert_rows([arow()], jobs)
    await store.insert_rows(
        [arow()],
        [WebhookJob({"name": "login", "n": 2}, "login", batch_key="u1", batch_timeout_ms=60_000)],
    )
    recent = await store.recent_deliveries()
    by_hook: dict[int, list[Any]] = {}
    for d in recent:
        by_hook.setdefault(d.webhook_id, []).append(d)
    assert off not in by_hook
    assert sorted(d.event["name"] for d in by_hook[only]) == ["signup"]
    logins = [d for d in by_hook[all_hook] if d.event["name"] == "login"]
    assert len(logins) == 1 and logins[0].event["n"] == 2  # collapsed, the last event wins
    assert logins[0].batch_key == "u1"

    now = datetime.now(UTC)
    due = await store.due_deliveries(now + timedelta(seconds=1))
    assert sorted(d.event["name"] for d in due) == ["signup", "signup"]  # login still waits
    later = await store.due_deliveries(now + timedelta(minutes=2))
    assert len(later) == 3
    d0 = due[0]
    await store.record_delivery(
        d0.id, status="failed", http_status=500, error="boom", latency_ms=3.0,
        retry_at=now + timedelta(hours=1),
    )  # fmt: skip
    await store.record_delivery(
        due[1].id, status="delivered", http_status=200, error=None, latency_ms=1.5, retry_at=None
    )
    got = {d.id: d for d in await store.recent_deliveries()}
    assert (got[d0.id].status, got[d0.id].attempts, got[d0.id].http_status) == ("pending", 1, 500)
    assert got[d0.id].due_at > now + timedelta(minutes=59)
    assert got[due[1].id].status == "delivered" and got[due[1].id].delivered_at is not None
    assert got[due[1].id].latency_ms == 1.5
    assert len(await store.due_deliveries(now + timedelta(seconds=1))) == 0

    assert await store.remove_webhook(only)
    assert not await store.remove_webhook(only)
    assert [h.id for h in await store.list_webhooks()] == [all_hook, off]


async def test_webhook_jobs_roll_back_with_rows(store: Any) -> None:
    await store.add_webhook("https://a/", secret=None, event_names=[])
    r = arow()
    await store.insert_rows([r])
    try:
        await store.insert_rows([arow(), r], [WebhookJob({"name": "x"}, "x")])
    except Exception:
        pass
    assert await store.recent_deliveries() == []


async def test_change_token_moves_on_other_commits(store_url: str) -> None:
    async with open_store(store_url) as reader, open_store(store_url) as writer:
        t0 = await reader.change_token()
        assert await reader.change_token() == t0  # nothing happened
        await writer.insert_rows([arow()])
        t1 = await reader.change_token()
        assert t1 != t0
        await writer.enqueue_command("ship-now")
        t2 = await reader.change_token()
        assert t2 != t1
        await writer.put_daemon_state(DaemonState("d", 1, "h", "l", T0, T0, []))
        assert await reader.change_token() != t2
