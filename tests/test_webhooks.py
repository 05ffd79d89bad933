"""Webhook delivery end to end: real stores (SQLite and PostgreSQL), real loopback receivers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tuiaudit.daemon.webhooks import WebhookDispatcher, backoff_delay
from tuiaudit.ids import ZERO_UUID
from tuiaudit.storage.base import AuditRow, StoreUnavailable, WebhookJob
from tuiaudit.webhook_payload import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    encode_body,
    sign,
    verify_signature,
    webhook_event,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def make_row(name: str = "login-with-password", **props: Any) -> AuditRow:
    return AuditRow(
        id=uuid.uuid4(),
        name=name,
        type="action",
        source="backend",
        profile_id=uuid.UUID("11111111-2222-3333-4444-555555555555"),
        ip_addr="10.1.2.3",
        props=dict(props) or {"n": 1},
        context={"request-id": "r-1", "session": "secret-session"},
        tracked_at=T0,
        created_at=T0,
    )


def job(row: AuditRow, batch_key: str | None = None, timeout_ms: int = 0) -> WebhookJob:
    return WebhookJob(
        event=webhook_event(row),
        event_name=row.name,
        batch_key=batch_key,
        batch_timeout_ms=timeout_ms,
    )


@dataclass
class Receiver:
    """A loopback webhook receiver that answers from a script (default 200)."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in self.requests]


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def make(statuses: list[int] | None = None) -> Receiver:
        app = web.Application()
        rec = Receiver(url="")
        rec.statuses = list(statuses or [])

        async def handle(request: web.Request) -> web.Response:
            rec.requests.append((dict(request.headers), await request.read()))
            status = rec.statuses.pop(0) if rec.statuses else 200
            return web.Response(status=status, text="ok")

        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        rec.url = f"http://127.0.0.1:{port}/hook"
        return rec

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def later(seconds: float = 3600) -> Clock:
    """A clock past every batch window the tests open (they are at most minutes long)."""
    return Clock(datetime.now(UTC) + timedelta(seconds=seconds))


# ---------------------------------------------------------------- payload


def test_payload_shape_drops_private_fields() -> None:
    row = make_row(email="a@b.c")
    event = webhook_event(row)
    assert event == {
        "id": str(row.id),
        "name": "login-with-password",
        "profile-id": "11111111-2222-3333-4444-555555555555",
        "props": {"email": "a@b.c"},
        "tracked-at": "2024-05-01T12:00:00.123Z",
        "created-at": "2024-05-01T12:00:00.123Z",
    }
    assert webhook_event(event) == event  # idempotent on an already-shaped event
    snake = {
        "id": "x",
        "name": "n",
        "type": "t",
        "source": "backend",
        "ip_addr": "1.2.3.4",
        "context": {},
        "profile_id": str(ZERO_UUID),
        "tracked_at": T0,
        "props": {},
    }
    assert webhook_event(snake) == {
        "id": "x",
        "name": "n",
        "profile-id": str(ZERO_UUID),
        "tracked-at": "2024-05-01T12:00:00.123Z",
        "props": {},
    }


def test_signature_round_trip() -> None:
    # Issue 13 changed the format: Stripe-style t=<unix>,v1=<hmac of "t.body">.
    body = encode_body(webhook_event(make_row()))
    now = 1_714_564_800
    header = sign(body, "s3cret", now)
    assert header.startswith(f"t={now},v1=") and len(header) == len(f"t={now},v1=") + 64
    assert verify_signature(body, "s3cret", header, now=now + 10)
    assert not verify_signature(body, "other", header, now=now)
    assert not verify_signature(body + b" ", "s3cret", header, now=now)
    assert not verify_signature(body, "s3cret", None, now=now)
    # A replay: the same request, too late (or from a clock far ahead).
    assert not verify_signature(body, "s3cret", header, now=now + 301)
    assert not verify_signature(body, "s3cret", header, now=now - 301)
    # The timestamp is signed: moving it invalidates the signature.
    moved = header.replace(f"t={now}", f"t={now + 100}")
    assert not verify_signature(body, "s3cret", moved, now=now + 100)


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(n) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]
    assert backoff_delay(30) == 3600.0


# ---------------------------------------------------------------- delivery


async def test_delivery_shape_and_signature(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    rec = await receiver_factory()
    hook_id = await store.add_webhook(rec.url, secret="s3cret", event_names=[])
    row = make_row(n=7)
    await store.insert_rows([row], [job(row)])

    dispatcher = WebhookDispatcher(store, session, clock=later(), poll_interval=0)
    assert await dispatcher.deliver_due() == 1
    assert await dispatcher.deliver_due() == 0  # delivered once, not again

    assert len(rec.requests) == 1
    headers, body = rec.requests[0]
    event = orjson.loads(body)
    assert event == {
        "id": str(row.id),
        "name": row.name,
        "profile-id": str(row.profile_id),
        "props": {"n": 7},
        "tracked-at": "2024-05-01T12:00:00.123Z",
        "created-at": "2024-05-01T12:00:00.123Z",
    }
    for private in ("source", "context", "ip_addr", "ip-addr", "type"):
        assert private not in event
    assert headers["Content-Type"] == "application/json"
    assert verify_signature(body, "s3cret", headers[SIGNATURE_HEADER])

    [delivery] = await store.recent_deliveries()
    assert headers[DELIVERY_HEADER] == str(delivery.id)
    assert delivery.webhook_id == hook_id
    assert delivery.status == "delivered"
    assert delivery.http_status == 200
    assert delivery.error is None
    assert delivery.latency_ms is not None and delivery.latency_ms >= 0


async def test_unsigned_without_secret(store: Any, receiver_factory: Any, session: Any) -> None:
    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret=None, event_names=[])
    row = make_row()
    await store.insert_rows([row], [job(row)])
    await WebhookDispatcher(store, session, clock=later()).deliver_due()
    [(headers, _)] = rec.requests
    assert SIGNATURE_HEADER not in headers
    assert DELIVERY_HEADER in headers


async def test_event_name_filter(store: Any, receiver_factory: Any, session: Any) -> None:
    wants_login = await receiver_factory()
    wants_all = await receiver_factory()
    await store.add_webhook(wants_login.url, secret=None, event_names=["login-with-password"])
    await store.add_webhook(wants_all.url, secret=None, event_names=[])
    login, other = make_row("login-with-password"), make_row("update-profile")
    await store.insert_rows([login, other], [job(login), job(other)])
    await WebhookDispatcher(store, session, clock=later()).deliver_due()
    assert [e["id"] for e in wants_login.events] == [str(login.id)]
    assert sorted(e["id"] for e in wants_all.events) == sorted([str(login.id), str(other.id)])


async def test_same_batch_key_within_timeout_is_one_delivery(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret=None, event_names=[])
    first, second, third = make_row(n=1), make_row(n=2), make_row(n=3)
    for row in (first, second, third):
        await store.insert_rows([row], [job(row, "profile-1", 60_000)])
    other = make_row(n=9)
    await store.insert_rows([other], [job(other, "profile-2", 60_000)])

    pending = await store.recent_deliveries()
    assert len(pending) == 2  # updated in place, not duplicated
    assert {d.batch_key for d in pending} == {"profile-1", "profile-2"}

    # Inside the window nothing is due yet.
    assert await WebhookDispatcher(store, session).deliver_due() == 0
    assert rec.requests == []

    assert await WebhookDispatcher(store, session, clock=later()).deliver_due() == 2
    by_id = {e["id"]: e for e in rec.events}
    assert set(by_id) == {str(third.id), str(other.id)}  # the last event wins
    assert by_id[str(third.id)]["props"] == {"n": 3}


async def test_same_batch_key_after_delivery_is_a_new_delivery(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret=None, event_names=[])
    first, second = make_row(n=1), make_row(n=2)
    await store.insert_rows([first], [job(first, "k", 60_000)])
    await WebhookDispatcher(store, session, clock=later()).deliver_due()
    await store.insert_rows([second], [job(second, "k", 60_000)])
    await WebhookDispatcher(store, session, clock=later()).deliver_due()
    assert [e["id"] for e in rec.events] == [str(first.id), str(second.id)]
    assert len(await store.recent_deliveries()) == 2


async def test_same_batch_key_after_timeout_is_a_new_delivery(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    """A window that has closed (but not yet been drained) takes no more events."""
    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret=None, event_names=[])
    first, second = make_row(n=1), make_row(n=2)
    # A 1 ms window: closed by the time the second insert runs (the store's own clock).
    await store.insert_rows([first], [job(first, "k", 1)])
    await asyncio.sleep(0.01)
    await store.insert_rows([second], [job(second, "k", 1)])
    assert len(await store.recent_deliveries()) == 2
    await WebhookDispatcher(store, session, clock=later()).deliver_due()
    assert sorted(e["id"] for e in rec.events) == sorted([str(first.id), str(second.id)])


async def test_failure_is_recorded_and_not_retried(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    rec = await receiver_factory(statuses=[500])
    await store.add_webhook(rec.url, secret=None, event_names=[])
    row = make_row()
    await store.insert_rows([row], [job(row)])
    clock = later()
    dispatcher = WebhookDispatcher(store, session, clock=clock)
    assert await dispatcher.deliver_due() == 1
    [d] = await store.recent_deliveries()
    assert d.status == "failed"
    assert d.http_status == 500
    assert d.error == "HTTP 500"
    assert d.latency_ms is not None
    clock.now += timedelta(days=1)
    assert await dispatcher.deliver_due() == 0
    assert len(rec.requests) == 1


async def test_connection_error_is_recorded(store: Any, session: Any) -> None:
    # A port nothing listens on: bind one, note it, close it.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    await store.add_webhook(f"http://127.0.0.1:{port}/hook", secret=None, event_names=[])
    row = make_row()
    await store.insert_rows([row], [job(row)])
    await WebhookDispatcher(store, session, clock=later()).deliver_due()
    [d] = await store.recent_deliveries()
    assert d.status == "failed"
    assert d.http_status is None
    assert d.error and "ClientConnectorError" in d.error


async def test_retries_with_backoff(store: Any, receiver_factory: Any, session: Any) -> None:
    rec = await receiver_factory(statuses=[503, 502, 200])
    await store.add_webhook(rec.url, secret=None, event_names=[], retries=2)
    row = make_row()
    await store.insert_rows([row], [job(row)])
    clock = later()
    dispatcher = WebhookDispatcher(store, session, clock=clock)

    assert await dispatcher.deliver_due() == 1
    [d] = await store.recent_deliveries()
    assert (d.status, d.http_status, d.attempts) == ("pending", 503, 1)
    assert d.due_at == clock.now + timedelta(seconds=10)

    clock.now += timedelta(seconds=9)
    assert await dispatcher.deliver_due() == 0  # still backing off
    clock.now += timedelta(seconds=1)
    assert await dispatcher.deliver_due() == 1
    [d] = await store.recent_deliveries()
    assert (d.status, d.http_status, d.attempts) == ("pending", 502, 2)
    assert d.due_at == clock.now + timedelta(seconds=20)

    clock.now += timedelta(seconds=20)
    assert await dispatcher.deliver_due() == 1
    [d] = await store.recent_deliveries()
    assert (d.status, d.http_status, d.attempts) == ("delivered", 200, 3)
    assert len(rec.requests) == 3
    # Every attempt carries the same delivery id, so a receiver can de-duplicate.
    assert len({h[DELIVERY_HEADER] for h, _ in rec.requests}) == 1


async def test_retries_exhausted_is_failed(store: Any, receiver_factory: Any, session: Any) -> None:
    rec = await receiver_factory(statuses=[500, 500, 500])
    await store.add_webhook(rec.url, secret=None, event_names=[], retries=1)
    row = make_row()
    await store.insert_rows([row], [job(row)])
    clock = later()
    dispatcher = WebhookDispatcher(store, session, clock=clock)
    await dispatcher.deliver_due()
    clock.now += timedelta(hours=1)
    await dispatcher.deliver_due()
    clock.now += timedelta(hours=1)
    assert await dispatcher.deliver_due() == 0
    [d] = await store.recent_deliveries()
    assert (d.status, d.attempts, d.error) == ("failed", 2, "HTTP 500")
    assert len(rec.requests) == 2


async def test_disabled_webhook_receives_nothing(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    off, on = await receiver_factory(), await receiver_factory()
    off_id = await store.add_webhook(off.url, secret=None, event_names=[])
    await store.add_webhook(on.url, secret=None, event_names=[])
    assert await store.set_webhook_enabled(off_id, False)
    row = make_row()
    await store.insert_rows([row], [job(row)])
    dispatcher = WebhookDispatcher(store, session, clock=later())
    await dispatcher.deliver_due()
    assert off.requests == []
    assert len(on.requests) == 1

    # Disabled after an event was queued for it: still nothing.
    assert await store.set_webhook_enabled(off_id, True)
    row2 = make_row()
    await store.insert_rows([row2], [job(row2)])
    assert await store.set_webhook_enabled(off_id, False)
    await dispatcher.deliver_due()
    assert off.requests == []
    assert len(on.requests) == 2


async def test_removed_webhook_receives_nothing(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    rec = await receiver_factory()
    hook_id = await store.add_webhook(rec.url, secret=None, event_names=[])
    row = make_row()
    await store.insert_rows([row], [job(row)])
    assert await store.remove_webhook(hook_id)
    await WebhookDispatcher(store, session, clock=later()).deliver_due()
    assert rec.requests == []


async def test_run_delivers_until_stopped(store: Any, receiver_factory: Any, session: Any) -> None:
    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret=None, event_names=[])
    row = make_row()
    await store.insert_rows([row], [job(row)])
    stop = asyncio.Event()
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        stop.set()  # one poll, then stop

    dispatcher = WebhookDispatcher(store, session, clock=later(), sleep=fake_sleep, poll_interval=2)
    await asyncio.wait_for(dispatcher.run(stop), timeout=30)
    assert sleeps == [2]
    assert len(rec.requests) == 1
    assert dispatcher.delivered == 1


# ------------------------------------------------------- through the domain


async def test_submit_many_queues_marked_events(
    store: Any, receiver_factory: Any, session: Any
) -> None:
    from tuiaudit.audit import AuditLog

    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret="k", event_names=[])
    audit = AuditLog(store, ["audit-log", "telemetry", "webhooks"])
    stored = await audit.submit_many(
        [
            {"name": "plain", "type": "action", "props": {"n": 0}},
            {"name": "marked", "type": "action", "props": {"n": 1}, "webhook": True},
            {"name": "grouped", "type": "action", "props": {"n": 2},
             "webhook": {"batch-key": "g", "batch-timeout-ms": 60_000}},
            {"name": "grouped", "type": "action", "props": {"n": 3},
             "webhook": {"batch-key": "g", "batch-timeout-ms": 60_000}},
        ],
        ip_addr="192.0.2.7",
    )  # fmt: skip
    assert stored == 8  # full row + telemetry copy each
    assert await WebhookDispatcher(store, session, clock=later()).deliver_due() == 2
    events = sorted(rec.events, key=lambda e: e["name"])
    assert [(e["name"], e["props"]) for e in events] == [
        ("grouped", {"n": 3}),
        ("marked", {"n": 1}),
    ]
    for e in events:
        assert set(e) == {"id", "name", "profile-id", "props", "tracked-at", "created-at"}
    for headers, body in rec.requests:
        assert verify_signature(body, "k", headers[SIGNATURE_HEADER])


async def test_webhooks_flag_off_queues_nothing(store: Any, receiver_factory: Any) -> None:
    from tuiaudit.audit import AuditLog

    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret=None, event_names=[])
    audit = AuditLog(store, ["audit-log"])
    assert await audit.submit({"name": "marked", "type": "action", "webhook": True}) == 1
    assert await store.recent_deliveries() == []


async def test_timeout_is_recorded(store: Any, session: Any) -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", stall)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        await store.add_webhook(url, secret=None, event_names=[])
        row = make_row()
        await store.insert_rows([row], [job(row)])
        dispatcher = WebhookDispatcher(store, session, clock=later(), total_timeout=0.2)
        assert await dispatcher.deliver_due() == 1
        [d] = await store.recent_deliveries()
        assert d.status == "failed" and d.http_status is None
        assert d.error and d.error.startswith("timed out")
    finally:
        release.set()
        await runner.cleanup()


class FlakyStore:
    """Delegates to a real store; ``due_deliveries`` fails the first time."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def due_deliveries(self, now: datetime, limit: int = 100) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise StoreUnavailable("database is locked: retry")
        return await self._store.due_deliveries(now, limit)


async def test_run_survives_a_store_outage(store: Any, receiver_factory: Any, session: Any) -> None:
    rec = await receiver_factory()
    await store.add_webhook(rec.url, secret=None, event_names=[])
    row = make_row()
    await store.insert_rows([row], [job(row)])
    stop = asyncio.Event()
    polls = 0

    async def fake_sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 2:
            stop.set()

    flaky = FlakyStore(store)
    dispatcher = WebhookDispatcher(flaky, session, clock=later(), sleep=fake_sleep)
    await asyncio.wait_for(dispatcher.run(stop), timeout=30)
    assert flaky.calls == 2
    assert len(rec.requests) == 1


async def test_concurrent_inserts_with_one_batch_key_are_one_delivery(store: Any) -> None:
    """Concurrent ingest requests sharing a batch key must not race into duplicates."""
    await store.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    rows = [make_row(n=i) for i in range(20)]
    await asyncio.gather(*(store.insert_rows([r], [job(r, "k", 60_000)]) for r in rows))
    [delivery] = await store.recent_deliveries()
    assert delivery.event["id"] in {str(r.id) for r in rows}
