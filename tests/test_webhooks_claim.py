"""Claiming webhook deliveries: several daemons on one store send each delivery once.

Real stores on both back-ends (two ``open_store`` handles on one URL stand in
for two daemons) and a real loopback receiver.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tuiaudit.daemon.webhooks import WebhookDispatcher
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditRow, WebhookJob
from tuiaudit.webhook_payload import webhook_event

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LATER = datetime.now(UTC) + timedelta(hours=1)  # past every queued delivery's due_at


def make_row(n: int) -> AuditRow:
    return AuditRow(
        id=uuid.uuid4(),
        name="team-created",
        type="action",
        source="backend",
        profile_id=uuid.UUID("11111111-2222-3333-4444-555555555555"),
        ip_addr="10.1.2.3",
        props={"n": n},
        context={},
        tracked_at=T0,
        created_at=T0,
    )


async def queue(store: Any, count: int) -> list[AuditRow]:
    rows = [make_row(i) for i in range(count)]
    jobs = [WebhookJob(event=webhook_event(r), event_name=r.name) for r in rows]
    await store.insert_rows(rows, jobs)
    return rows


@pytest.fixture
async def two_stores(store_url: str) -> AsyncIterator[tuple[Any, Any]]:
    async with open_store(store_url) as a, open_store(store_url) as b:
        yield a, b


async def test_concurrent_claims_on_one_url_are_disjoint(two_stores: tuple[Any, Any]) -> None:
    a, b = two_stores
    await a.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    await queue(a, 30)

    async def claim_all(store: Any, holder: str) -> list[int]:
        got: list[int] = []
        while batch := await store.claim_deliveries(LATER, holder=holder, limit=4):
            got += [d.id for d in batch]
        return got

    ids_a, ids_b = await asyncio.gather(claim_all(a, "a"), claim_all(b, "b"))
    assert not set(ids_a) & set(ids_b)
    assert len(ids_a) == len(set(ids_a)) and len(ids_b) == len(set(ids_b))
    assert len(ids_a) + len(ids_b) == 30
    # Nothing is left to claim while the claims are live, from either handle.
    assert await a.claim_deliveries(LATER, holder="c") == []
    assert await b.claim_deliveries(LATER + timedelta(seconds=59), holder="c") == []
    # A claim does not hide the delivery from the display query.
    assert len(await a.due_deliveries(LATER)) == 30


async def test_claim_takes_only_due_pending_deliveries_in_order(store: Any) -> None:
    hook = await store.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    await queue(store, 3)
    assert await store.claim_deliveries(datetime.now(UTC) - timedelta(hours=1), holder="x") == []
    first = await store.claim_deliveries(LATER, holder="x", limit=2)
    assert [d.event["props"]["n"] for d in first] == [0, 1]
    assert all(d.status == "pending" and d.attempts == 0 for d in first)
    [last] = await store.claim_deliveries(LATER, holder="x")
    assert last.event["props"]["n"] == 2
    await store.record_delivery(
        last.id, status="delivered", http_status=200, error=None, latency_ms=1.0, retry_at=None
    )
    # After the lease the first two are taken again; the delivered one never is.
    again = await store.claim_deliveries(LATER + timedelta(hours=1), holder="y")
    assert [d.id for d in again] == [d.id for d in first]
    assert await store.set_webhook_enabled(hook, False)
    assert await store.claim_deliveries(LATER + timedelta(hours=2), holder="z") == []


async def test_an_expired_claim_is_claimable_again(store: Any) -> None:
    await store.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    await queue(store, 1)
    [d] = await store.claim_deliveries(LATER, holder="dead", lease_s=60)
    assert await store.claim_deliveries(LATER + timedelta(seconds=30), holder="alive") == []
    [again] = await store.claim_deliveries(LATER + timedelta(seconds=60), holder="alive")
    assert again.id == d.id and again.attempts == 0


async def test_record_delivery_clears_the_claim(store: Any) -> None:
    await store.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    await queue(store, 1)
    [d] = await store.claim_deliveries(LATER, holder="a", lease_s=3600)
    # A failure re-queued for a retry is claimable at its retry time, not at the lease's end.
    retry_at = LATER + timedelta(seconds=10)
    await store.record_delivery(
        d.id, status="failed", http_status=500, error="HTTP 500", latency_ms=2.0, retry_at=retry_at
    )
    assert await store.claim_deliveries(LATER + timedelta(seconds=5), holder="b") == []
    [again] = await store.claim_deliveries(retry_at, holder="b", lease_s=3600)
    assert again.id == d.id and again.attempts == 1
    # Recorded as final: nothing to take, whatever the time.
    await store.record_delivery(
        d.id, status="failed", http_status=500, error="HTTP 500", latency_ms=2.0, retry_at=None
    )
    assert await store.claim_deliveries(LATER + timedelta(days=1), holder="c") == []
    [final] = await store.recent_deliveries()
    assert (final.status, final.attempts) == ("failed", 2)


async def test_two_dispatchers_deliver_each_event_exactly_once(
    two_stores: tuple[Any, Any],
) -> None:
    a, b = two_stores
    seen: list[int] = []
    gate = asyncio.Event()
    arrived = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal arrived
        event = orjson.loads(await request.read())
        seen.append(event["props"]["n"])
        arrived += 1
        if arrived >= 4:
            gate.set()
        # Hold the first POSTs until both dispatchers are mid-page, so the two
        # pages really overlap instead of one dispatcher draining everything.
        await gate.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        await a.add_webhook(url, secret=None, event_names=[])
        await queue(a, 40)
        async with aiohttp.ClientSession() as session:
            one = WebhookDispatcher(a, session, clock=lambda: LATER, batch_limit=2)
            two = WebhookDispatcher(b, session, clock=lambda: LATER, batch_limit=2)
            assert one.holder != two.holder

            async def drain(d: WebhookDispatcher) -> int:
                total = 0
                while n := await d.deliver_due():
                    total += n
                return total

            sent_one, sent_two = await asyncio.wait_for(
                asyncio.gather(drain(one), drain(two)), timeout=60
            )
        assert sorted(seen) == list(range(40))  # every event once, none twice
        assert sent_one + sent_two == 40 and sent_one > 0 and sent_two > 0
        assert one.delivered + two.delivered == 40
        recent = await b.recent_deliveries(100)
        assert len(recent) == 40 and {d.status for d in recent} == {"delivered"}
        assert {d.attempts for d in recent} == {1}
    finally:
        await runner.cleanup()


async def test_a_claim_holds_against_a_host_whose_clock_runs_ahead(
    pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet run (docs/RELIABILITY.md): a daemon whose clock was stepped 10 minutes
    ahead took deliveries another host had claimed and was sending (duplicates)."""
    from tuiaudit.storage import postgres_webhooks

    async with open_store(pg_schema_url) as a, open_store(pg_schema_url) as b:
        await a.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
        await queue(a, 3)
        claimed = await a.claim_deliveries(datetime.now(UTC), holder="a", lease_s=60)
        assert len(claimed) == 3
        ahead = timedelta(minutes=10)
        real = postgres_webhooks.now_utc
        monkeypatch.setattr(postgres_webhooks, "now_utc", lambda: real() + ahead)
        # b's whole process clock is 10 minutes ahead: a's lease is still live.
        assert await b.claim_deliveries(datetime.now(UTC) + ahead, holder="b") == []
        # Its own notion of "a minute later" still lets it take over a lapsed lease.
        later = datetime.now(UTC) + ahead + timedelta(seconds=61)
        again = await b.claim_deliveries(later, holder="b")
        assert sorted(d.id for d in again) == sorted(d.id for d in claimed)


async def test_a_killed_claimers_deliveries_are_taken_over_at_once(pg_schema_url: str) -> None:
    """The fleet run (docs/RELIABILITY.md): a daemon killed mid-page held its claimed
    deliveries for the whole lease (450 s); a claim now ends with its claimer's sessions."""
    async with open_store(pg_schema_url) as b:
        await b.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
        await queue(b, 3)
        async with open_store(pg_schema_url) as a:
            claimed = await a.claim_deliveries(datetime.now(UTC), holder="a", lease_s=3600)
            assert len(claimed) == 3
            # Alive, its claims hold against the others.
            assert await b.claim_deliveries(datetime.now(UTC), holder="b") == []
        # Its sessions are gone (a kill -9 closes them too): the claims with them, as
        # soon as the server has ended those sessions (polled, bounded: not a timing check).
        again: list[Any] = []
        for _ in range(200):
            if again := await b.claim_deliveries(datetime.now(UTC), holder="b"):
                break
            await asyncio.sleep(0.05)
        assert sorted(d.id for d in again) == sorted(d.id for d in claimed)


async def test_an_outcome_the_store_missed_is_recorded_at_the_next_poll(store: Any) -> None:
    """The fleet run (docs/RELIABILITY.md): PostgreSQL restarted between a POST and its
    record; the delivery, sent, stayed claimed (pending) for the whole 450 s lease."""
    from tuiaudit.storage.base import StoreUnavailable

    posts: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        posts.append(orjson.loads(await request.read())["props"]["n"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        await store.add_webhook(url, secret=None, event_names=[])
        await queue(store, 1)
        real_record = store.record_delivery
        down = True

        async def record(*args: Any, **kw: Any) -> None:
            if down:
                raise StoreUnavailable("store is restarting")
            await real_record(*args, **kw)

        store.record_delivery = record
        async with aiohttp.ClientSession() as session:
            dispatcher = WebhookDispatcher(store, session, clock=lambda: LATER)
            with pytest.raises(StoreUnavailable):
                await dispatcher.deliver_due()
            assert posts == [0]
            [pending] = await store.recent_deliveries()
            assert pending.status == "pending"  # sent, but the store did not hear of it
            down = False
            assert await dispatcher.deliver_due() == 0  # nothing new: the outcome is written
        [final] = await store.recent_deliveries()
        assert (final.status, final.http_status, final.attempts) == ("delivered", 204, 1)
        assert posts == [0]  # and it was not sent twice
    finally:
        await runner.cleanup()


async def test_a_store_failure_before_sending_leaves_nothing_claimed(store: Any) -> None:
    """The fleet run: PostgreSQL restarted right after a dispatcher claimed a page and
    before it sent it; the page stayed claimed, unsent, for the whole 450 s lease."""
    from tuiaudit.storage.base import StoreUnavailable

    posts: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        posts.append(orjson.loads(await request.read())["props"]["n"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        await store.add_webhook(url, secret=None, event_names=[])
        await queue(store, 2)
        real_list = store.list_webhooks
        down = True

        async def list_webhooks() -> Any:
            if down:
                raise StoreUnavailable("store is restarting")
            return await real_list()

        store.list_webhooks = list_webhooks
        async with aiohttp.ClientSession() as session:
            dispatcher = WebhookDispatcher(store, session, clock=lambda: LATER)
            with pytest.raises(StoreUnavailable):
                await dispatcher.deliver_due()
            down = False
            assert await dispatcher.deliver_due() == 2  # at the next poll, not after the lease
        assert sorted(posts) == [0, 1]
        assert {d.status for d in await store.recent_deliveries()} == {"delivered"}
    finally:
        await runner.cleanup()
