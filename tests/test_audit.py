"""AuditLog on a real store (SQLite and PostgreSQL): modes A/B/C, atomicity, logger,
webhook jobs, and instance identity (DESIGN §1, §2, §4)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from tuiaudit.audit import AuditLog
from tuiaudit.events import ValidationError
from tuiaudit.instance import get_instance_id, instance_start_event
from tuiaudit.storage.base import AuditFilter, AuditRow, StoreError, WebhookJob

NOW = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
DAY = datetime(2024, 5, 1, tzinfo=UTC)
PROFILE = uuid.UUID("0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b")
FILE = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
A = ["audit-log"]
B = ["audit-log", "telemetry"]
C = ["telemetry"]

TELEMETRY = AuditFilter(source="telemetry:*")


def clock() -> datetime:
    return NOW


def event(**kw: Any) -> dict[str, Any]:
    e = {
        "name": "update-file",
        "type": "action",
        "profile-id": str(PROFILE),
        "ip-addr": "203.0.113.9",
        "tracked-at": "2024-05-01T12:00:00.500Z",
        "props": {"file-id": FILE, "title": "Plans", "revn": 7, "password": "hunter2"},
        "context": {"initiator": "api", "client-user-agent": "curl", "session": "s1"},
    }
    e.update(kw)
    return e


class SpyStore:
    """The real store, recording each insert_rows call (to check one call per batch)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[tuple[list[AuditRow], list[WebhookJob]]] = []

    async def insert_rows(self, rows: Sequence[AuditRow], jobs: Sequence[WebhookJob] = ()) -> None:
        self.calls.append((list(rows), list(jobs)))
        await self._store.insert_rows(rows, jobs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def all_rows(store: Any) -> list[AuditRow]:
    return await store.fetch_rows_after(None, limit=1000)


async def test_mode_c_stores_the_full_shape_of_a_telemetry_row(store: Any) -> None:
    audit = AuditLog(store, C, clock=clock)
    assert await audit.submit(event()) == 1
    (row,) = await all_rows(store)
    assert row == AuditRow(
        id=row.id,
        name="update-file",
        type="action",
        source="telemetry:backend",
        profile_id=PROFILE,
        ip_addr="0.0.0.0",
        props={"file-id": FILE, "revn": 7},
        context={"initiator": "api", "client-user-agent": "curl"},
        tracked_at=DAY,
        created_at=DAY,
        archived_at=None,
    )
    assert row.id.version == 7


async def test_telemetry_rows_carry_no_pii(store: Any) -> None:
    audit = AuditLog(store, B, clock=clock)
    await audit.submit_many(
        [
            event(props={"email": "a@b.org", "fullname": "Ann", "size": 3}),
            event(name="login-with-password", props={"email": "Ann@Example.org", "lang": "en"}),
        ],
        request_id=uuid.uuid4(),
    )
    telemetry = await store.fetch_rows_after(TELEMETRY)
    assert len(telemetry) == 2
    for row in telemetry:
        assert row.ip_addr == "0.0.0.0"
        assert row.tracked_at == DAY and row.created_at == DAY
        assert row.source == "telemetry:backend"
        assert "request-id" not in row.context and "session" not in row.context
        text = orjson.dumps([row.props, row.context]).decode()
        for secret in ("a@b.org", "Ann", "hunter2", "203.0.113.9"):
            assert secret not in text
    by_name = {r.name: r.props for r in telemetry}
    assert by_name == {
        "update-file": {"size": 3},
        "login-with-password": {"email-domain": "example.org", "lang": "en"},
    }


async def test_mode_b_stores_full_and_telemetry_rows_in_one_call(store: Any) -> None:
    spy = SpyStore(store)
    audit = AuditLog(spy, B, clock=clock)  # type: ignore[arg-type]
    assert await audit.submit_many([event(), event(name="other")]) == 4
    assert len(spy.calls) == 1
    rows = await all_rows(store)
    assert sorted(r.source for r in rows) == ["backend"] * 2 + ["telemetry:backend"] * 2
    full = [r for r in rows if r.source == "backend"]
    for r in full:
        assert r.ip_addr == "203.0.113.9"
        assert r.tracked_at == datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)
        assert r.created_at == NOW
        assert "password" not in r.props  # secrets never reach any row
        assert r.props["title"] == "Plans"


async def test_mode_b_is_atomic(store: Any) -> None:
    audit = AuditLog(store, B, clock=clock)
    taken = uuid.uuid4()
    await audit.submit(event(id=str(taken)))
    assert await store.count_rows() == 2
    # The second event's full row collides with a stored id: neither row of
    # either event may be stored.
    with pytest.raises(StoreError):
        await audit.submit_many([event(name="fresh"), event(id=str(taken))])
    assert await store.count_rows() == 2
    assert await store.count_rows(AuditFilter(name="fresh")) == 0


async def test_a_bad_batch_stores_nothing(store: Any) -> None:
    audit = AuditLog(store, B, clock=clock)
    with pytest.raises(ValidationError) as exc:
        await audit.submit_many([event(), event(name=""), event(props={"x": float("nan")})])
    assert [e.path for e in exc.value.errors] == ["events[1].name", "events[2].props.x"]
    assert await store.count_rows() == 0


async def test_no_flags_stores_nothing(store: Any) -> None:
    spy = SpyStore(store)
    audit = AuditLog(spy, [], clock=clock)  # type: ignore[arg-type]
    assert not audit.stores_anything
    assert await audit.submit_many([event(), event()]) == 0
    assert (
        await audit.ingest_frontend(
            [{"name": "navigate", "type": "action", "props": {}, "timestamp": NOW}],
            profile_id=PROFILE,
            ip_addr="192.0.2.1",
        )
        == 0
    )
    assert spy.calls == []
    assert await store.count_rows() == 0
    # Validation still applies: a client learns its events are bad.
    with pytest.raises(ValidationError):
        await audit.submit({"name": "x"})


async def test_mode_a_stores_only_the_full_row(store: Any) -> None:
    audit = AuditLog(store, A, clock=clock)
    assert await audit.submit(event()) == 1
    (row,) = await all_rows(store)
    assert row.source == "backend"
    assert row.props == {"file-id": FILE, "title": "Plans", "revn": 7}
    assert row.context == {"initiator": "api", "client-user-agent": "curl", "session": "s1"}
    assert await store.count_rows(TELEMETRY) == 0


async def test_insert_writes_the_full_row_only_with_audit_log(store: Any) -> None:
    assert await AuditLog(store, C, clock=clock).insert(event()) == 0
    assert await store.count_rows() == 0
    assert await AuditLog(store, B, clock=clock).insert(event()) == 1
    (row,) = await all_rows(store)
    assert row.source == "backend"


async def test_frontend_ingest_in_mode_b(store: Any) -> None:
    audit = AuditLog(store, B, clock=clock)
    rid = uuid.uuid4()
    n = await audit.ingest_frontend(
        [
            {
                "name": "navigate",
                "type": "action",
                "props": {"route": "workspace", "file-id": FILE, "title": "x"},
                "timestamp": "2024-05-01T14:00:00Z",  # in the future: adjusted
                "context": {"browser": "firefox", "session": "s", "token": "t"},
            }
        ],
        profile_id=PROFILE,
        ip_addr="192.0.2.1",
        request_id=rid,
    )
    assert n == 2
    (full,) = await store.fetch_rows_after(AuditFilter(source="frontend"))
    (tele,) = await store.fetch_rows_after(TELEMETRY)
    assert full.tracked_at == NOW
    assert full.context["original-tracked-at"] == "2024-05-01T14:00:00.000Z"
    assert full.context["request-id"] == str(rid)
    assert tele.props == {"route": "workspace", "file-id": FILE}
    assert tele.context == {"browser": "firefox"}
    assert tele.source == "telemetry:frontend" and tele.ip_addr == "0.0.0.0"


async def test_audit_log_logger_writes_one_line_without_values(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    audit = AuditLog(store, ["audit-log-logger"], clock=clock)
    with caplog.at_level(logging.INFO, logger="tuiaudit.audit"):
        await audit.submit_many([event(), event(name="second")])
    lines = [r.getMessage() for r in caplog.records if r.name == "tuiaudit.audit"]
    assert len(lines) == 2
    first = orjson.loads(lines[0])
    assert first["name"] == "update-file" and first["type"] == "action"
    assert first["source"] == "backend" and first["profile-id"] == str(PROFILE)
    for line in lines:
        for value in ("Plans", FILE, "203.0.113.9", "curl", "s1"):
            assert value not in line
    assert await store.count_rows() == 0  # the logger alone stores nothing


async def test_webhook_events_are_queued_with_their_rows(store: Any) -> None:
    await store.add_webhook("http://127.0.0.1:9/hook", secret=None, event_names=[])
    audit = AuditLog(store, [*A, "webhooks"], clock=clock)
    await audit.submit_many([event(webhook=True), event(name="quiet")])
    due = await store.due_deliveries(datetime.now(UTC) + timedelta(days=1))
    assert len(due) == 1
    body = due[0].event
    assert body["name"] == "update-file"
    assert set(body) == {"id", "name", "profile-id", "props", "tracked-at", "created-at"}
    # Without the webhooks flag nothing is queued.
    await AuditLog(store, A, clock=clock).submit(event(webhook=True))
    assert len(await store.due_deliveries(datetime.now(UTC) + timedelta(days=1))) == 1


async def test_rows_for_each_mode() -> None:
    from tuiaudit.events import prepare_backend_event

    row = prepare_backend_event(event(), now=NOW).row
    store: Any = None
    assert AuditLog(store, A).rows_for(row) == [row]
    full, tele = AuditLog(store, B).rows_for(row)
    assert full == row and tele.source == "telemetry:backend"
    (only,) = AuditLog(store, C).rows_for(row)
    assert only.source == "telemetry:backend"
    assert AuditLog(store, ["audit-log-logger", "webhooks"]).rows_for(row) == []


# ------------------------------------------------------------- instance (§4)


async def test_instance_id_is_created_once(store: Any) -> None:
    first = await get_instance_id(store)
    assert isinstance(first, uuid.UUID)
    assert await get_instance_id(store) == first
    assert await store.get_property("instance-id") == str(first)


async def test_instance_start_passes_through(store: Any) -> None:
    e = instance_start_event(
        version="1.2.3", flags=("audit-log", "telemetry"), public_uri="https://x.example"
    )
    assert e == {
        "name": "instance-start",
        "type": "trigger",
        "props": {
            "version": "1.2.3",
            "flags": ["audit-log", "telemetry"],
            "public-uri": "https://x.example",
        },
    }
    # Issue 11 (DESIGN §3.1): only the daemon's own submit path passes it through...
    await AuditLog(store, C, clock=clock).submit_own(e)
    (row,) = await all_rows(store)
    assert row.props == e["props"]
    assert replace(row, props={}).source == "telemetry:backend"
    # ... the same event from a client is any other event: its texts and lists go.
    await AuditLog(store, C, clock=clock).submit(e)
    rows = await all_rows(store)
    assert sorted(len(r.props) for r in rows) == [0, 3]


def test_instance_start_public_uri_is_reduced_to_its_origin() -> None:
    e = instance_start_event(
        version="1", flags=(), public_uri="https://admin:pw@host.example:8443/x?k=secret#f"
    )
    assert e["props"]["public-uri"] == "https://host.example:8443"
