"""Event validation and preparation (DESIGN §1.1, §1.2): pure functions, no store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tuiaudit.events import (
    FieldError,
    ValidationError,
    WebhookMark,
    prepare_backend_event,
    prepare_backend_events,
    prepare_frontend_events,
)
from tuiaudit.ids import ZERO_UUID
from tuiaudit.timeutil import to_epoch_ms

NOW = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
NOW_MS = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
PROFILE = uuid.UUID("0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b")


def paths(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {e.path: e.reason for e in exc.value.errors}


# ------------------------------------------------------------------ backend


def test_backend_defaults() -> None:
    (p,) = prepare_backend_events([{"name": "create-file", "type": "action"}], now=NOW)
    row = p.row
    assert row.id.version == 7
    assert row.source == "backend"
    assert row.profile_id == ZERO_UUID
    assert row.ip_addr == "0.0.0.0"
    assert row.props == {} and row.context == {}
    assert row.created_at == NOW_MS and row.tracked_at == NOW_MS
    assert row.archived_at is None
    assert p.webhook is None


def test_backend_kebab_and_snake_spellings() -> None:
    row_id = uuid.uuid4()
    kebab = {
        "id": str(row_id),
        "name": "update-file",
        "type": "action",
        "profile-id": str(PROFILE),
        "ip-addr": "2001:0db8:0000::0001",
        "tracked-at": "2024-05-01T10:00:00Z",
        "props": {"file-id": str(row_id)},
        "context": {"version": "2.0"},
    }
    snake = {
        "id": row_id,
        "name": "update-file",
        "type": "action",
        "profile_id": PROFILE,
        "ip_addr": "2001:db8::1",
        "tracked_at": to_epoch_ms(datetime(2024, 5, 1, 10, tzinfo=UTC)),
        "props": {"file-id": str(row_id)},
        "context": {"version": "2.0"},
    }
    a = prepare_backend_event(kebab, now=NOW).row
    b = prepare_backend_event(snake, now=NOW).row
    assert a == b
    assert a.id == row_id and a.profile_id == PROFILE
    assert a.ip_addr == "2001:db8::1"  # normalised
    assert a.tracked_at == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_backend_both_spellings_is_an_error() -> None:
    with pytest.raises(ValidationError) as exc:
        prepare_backend_event(
            {"name": "x", "type": "y", "profile-id": str(PROFILE), "profile_id": str(PROFILE)},
            now=NOW,
        )
    assert "profile_id" in paths(exc)
    assert "given twice" in paths(exc)["profile_id"]


def test_backend_nulls_dropped_and_secrets_never_reach_the_row() -> None:
    (p,) = prepare_backend_events(
        [
            {
                "name": "login",
                "type": "action",
                "profile-id": None,
                "context": None,
                "props": {
                    "a": None,
                    "session-id": "s",
                    "password": "p",
                    "old-password": "o",
                    "token": "t",
                    "kept": 1,
                },
            }
        ],
        now=NOW,
    )
    assert p.row.props == {"kept": 1}
    assert p.row.profile_id == ZERO_UUID
    assert p.row.context == {}


def test_backend_request_id_and_client_ip() -> None:
    rid = uuid.uuid4()
    (p,) = prepare_backend_events(
        [{"name": "n", "type": "t", "context": {"initiator": "app"}}],
        now=NOW,
        request_id=rid,
        ip_addr="10.1.2.3",
    )
    assert p.row.context == {"initiator": "app", "request-id": str(rid)}
    assert p.row.ip_addr == "10.1.2.3"


def test_backend_uuid_objects_in_props_become_strings() -> None:
    u = uuid.uuid4()
    (p,) = prepare_backend_events(
        [{"name": "n", "type": "t", "props": {"id": u, "deep": {"ids": (u,)}}}], now=NOW
    )
    assert p.row.props == {"id": str(u), "deep": {"ids": [str(u)]}}


def test_webhook_mark() -> None:
    raws = [
        {"name": "a", "type": "t", "webhook": True},
        {"name": "b", "type": "t", "webhook": {"batch-key": "k", "batch-timeout-ms": 500}},
        {"name": "c", "type": "t", "webhook": False},
    ]
    a, b, c = prepare_backend_events(raws, now=NOW)
    assert a.webhook == WebhookMark()
    assert b.webhook == WebhookMark("k", 500)
    assert c.webhook is None


def test_every_bad_field_of_a_batch_is_listed_with_its_path() -> None:
    raws: list[Any] = [
        {"name": "fine", "type": "action"},
        {
            "name": "",
            "type": "",
            "profile-id": "not-a-uuid",
            "ip-addr": "300.1.1.1",
            "tracked-at": True,
            "props": [],
            "context": "x",
            "id": 5,
            "source": "backend",
            "colour": "red",
        },
        {"name": "x" * 251, "type": 3, "props": {"n": float("nan"), "i": float("inf")}},
        "not an object",
        {"type": "t", "webhook": "yes"},
        {"name": "n", "type": "t", "props": {"big": 2**64, "deep": {"l": [1.5, float("-inf")]}}},
    ]
    with pytest.raises(ValidationError) as exc:
        prepare_backend_events(raws, now=NOW)
    got = paths(exc)
    assert set(got) == {
        "events[1].name",
        "events[1].type",
        "events[1].profile-id",
        "events[1].ip-addr",
        "events[1].tracked-at",
        "events[1].props",
        "events[1].context",
        "events[1].id",
        "events[1].source",
        "events[1].colour",
        "events[2].name",
        "events[2].type",
        "events[2].props.n",
        "events[2].props.i",
        "events[3]",
        "events[4].name",
        "events[4].webhook",
        "events[5].props.big",
        "events[5].props.deep.l[1]",
    }
    assert "UUID" in got["events[1].profile-id"]
    assert "IPv4 or IPv6" in got["events[1].ip-addr"]
    assert "boolean" in got["events[1].tracked-at"]
    assert "set by the server" in got["events[1].source"]
    assert "unknown field" in got["events[1].colour"]
    assert "1..250" in got["events[2].name"]
    assert "finite" in got["events[2].props.n"]
    assert got["events[4].name"] == "required"
    assert "64-bit" in got["events[5].props.big"]
    assert "19 invalid fields" in str(exc.value)


def test_depth_limit() -> None:
    def nest(levels: int) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for _ in range(levels - 1):
            value = {"a": value}
        return value

    # props itself is level 1; 64 nested objects in all are fine.
    prepare_backend_event({"name": "n", "type": "t", "props": nest(64)}, now=NOW)
    with pytest.raises(ValidationError) as exc:
        prepare_backend_event({"name": "n", "type": "t", "props": nest(65)}, now=NOW)
    (err,) = exc.value.errors
    assert err.path == "props" + ".a" * 64  # the 65th object
    assert "deeper than 64" in err.reason


def test_odd_keys_are_quoted_in_paths_and_non_json_values_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        prepare_backend_event(
            {"name": "n", "type": "t", "props": {"a b": {1: "x"}, "when": NOW}}, now=NOW
        )
    assert exc.value.errors == [
        FieldError('props["a b"][1]', "object keys must be strings"),
        FieldError("props.when", "not a JSON value (got datetime)"),
    ]


def test_single_event_paths_have_no_prefix() -> None:
    with pytest.raises(ValidationError) as exc:
        prepare_backend_event({"type": "t"}, now=NOW)
    assert exc.value.errors == [FieldError("name", "required")]


def test_invalid_server_ip_falls_back_to_zero() -> None:
    (p,) = prepare_backend_events([{"name": "n", "type": "t"}], now=NOW, ip_addr="unix:/sock")
    assert p.row.ip_addr == "0.0.0.0"


# ----------------------------------------------------------------- frontend


def fe(**kw: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"name": "navigate", "type": "action", "props": {}, "timestamp": NOW}
    event.update(kw)
    return event


def test_frontend_rows() -> None:
    ts = NOW_MS - timedelta(minutes=5)
    rid = uuid.uuid4()
    rows = prepare_frontend_events(
        [fe(timestamp=to_epoch_ms(ts), props={"route": "/a", "x": None, "token": "t"}), fe()],
        profile_id=PROFILE,
        ip_addr="192.0.2.7",
        now=NOW,
        request_id=rid,
    )
    a, b = rows
    assert a.source == "frontend" and a.profile_id == PROFILE and a.ip_addr == "192.0.2.7"
    assert a.tracked_at == ts and a.created_at == NOW_MS
    assert a.props == {"route": "/a"}
    assert a.context == {"request-id": str(rid)}
    assert a.id != b.id and a.id < b.id


def test_frontend_timestamp_after_request_is_replaced() -> None:
    future = NOW_MS + timedelta(seconds=1)
    (row,) = prepare_frontend_events(
        [fe(timestamp="2024-05-01T12:30:16.123Z", context={"os": "linux"})],
        profile_id=PROFILE,
        ip_addr="192.0.2.7",
        now=NOW,
    )
    assert row.tracked_at == NOW_MS
    assert row.context == {"os": "linux", "original-tracked-at": "2024-05-01T12:30:16.123Z"}
    assert future.isoformat()  # the original is kept as RFC 3339 text


def test_frontend_timestamp_more_than_an_hour_old_is_replaced() -> None:
    hour = timedelta(hours=1)
    old = NOW_MS - hour - timedelta(milliseconds=1)
    edge = NOW_MS - hour
    a, b = prepare_frontend_events(
        [fe(timestamp=to_epoch_ms(old)), fe(timestamp=to_epoch_ms(edge))],
        profile_id=PROFILE,
        ip_addr="192.0.2.7",
        now=NOW,
    )
    assert a.tracked_at == NOW_MS
    assert a.context["original-tracked-at"] == "2024-05-01T11:30:15.122Z"
    assert b.tracked_at == edge  # exactly one hour is still accepted
    assert "original-tracked-at" not in b.context


def test_frontend_validation() -> None:
    with pytest.raises(ValidationError) as exc:
        prepare_frontend_events(
            [
                fe(name="has space"),
                fe(name="x" * 51, type="identify"),
                fe(type="update"),
                {"name": "n", "type": "action", "props": {}},
                fe(extra=1, timestamp="soon"),
            ],
            profile_id="nope",
            ip_addr="192.0.2.7",
            now=NOW,
        )
    assert set(paths(exc)) == {
        "profile-id",
        "events[0].name",
        "events[1].name",
        "events[2].type",
        "events[3].timestamp",
        "events[4].extra",
        "events[4].timestamp",
    }
