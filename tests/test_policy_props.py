"""Property tests of the telemetry policy over random events (hypothesis)."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, reject, settings
from hypothesis import strategies as st

from tuiaudit.events import key_path
from tuiaudit.ids import is_uuid_string
from tuiaudit.policy import POLICY, anonymise, explain, origin_of, props_rule, withheld_reason
from tuiaudit.policy_shapes import nfkc
from tuiaudit.storage.base import AuditRow
from tuiaudit.validation import CONTROL_REASON, ValidationError

KEYS = sorted(
    {
        "email",
        "email-domain",
        "fullname",
        "lang",
        "auth-backend",
        "route",
        "file-id",
        "team-id",
        "page-id",
        "session",
        "token",
        "request-id",
        "ns/key",
        *(k for keys in POLICY.context_keep.values() for k in keys),
    }
)
key = st.one_of(st.sampled_from(KEYS), st.text(max_size=12))
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.uuids().map(str),
    st.emails(),
)
json_value = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
json_object = st.dictionaries(key, json_value, max_size=8)
timestamp = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
name = st.one_of(
    st.sampled_from(
        [
            "login-with-oidc",
            "login-with-password",
            "register-profile",
            "update-profile",
            "instance-start",
            "navigate",
        ]
    ),
    st.text(min_size=1, max_size=20),
)
source = st.sampled_from(["backend", "frontend", "cron"])
type_ = st.one_of(
    st.sampled_from(["action", "identify", "trigger"]), st.text(min_size=1, max_size=8)
)
ip = st.one_of(st.ip_addresses().map(str), st.just("0.0.0.0"))


@st.composite
def rows(draw: st.DrawFn) -> AuditRow:
    created = draw(timestamp)
    return AuditRow(
        id=draw(st.uuids()),
        name=draw(name),
        type=draw(type_),
        source=draw(source),
        profile_id=draw(st.uuids()),
        ip_addr=draw(ip),
        props=draw(json_object),
        context=draw(json_object),
        tracked_at=created - draw(st.timedeltas(timedelta(0), timedelta(days=3))),
        created_at=created,
        archived_at=draw(st.none() | timestamp),
    )


def _midnight(ts: datetime) -> bool:
    return (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0)


@settings(max_examples=150, deadline=None)
@given(rows())
def test_telemetry_copy_never_holds_pii(row: AuditRow) -> None:
    shared = anonymise(row)
    if shared is None:  # withheld (DESIGN §3.1): there must be a reason
        assert withheld_reason(row.source, row.type, row.name) is not None
        return
    assert shared.ip_addr == "0.0.0.0"
    assert _midnight(shared.tracked_at) and _midnight(shared.created_at)
    assert shared.source == "telemetry:" + row.source
    assert shared.archived_at is None
    assert shared.id != row.id

    rule = props_rule(row.source, row.type, row.name)
    if rule == "pass-through":  # only the daemon's own events pass (issue 11)
        rule = "generic"
    text_keys = {
        "identify": POLICY.identify_keep,
        "navigate": POLICY.navigate_keep,
    }.get(rule, frozenset())
    for k, v in shared.props.items():
        assert "/" not in k
        if rule == "pass-through":
            assert row.props[k] == v
            continue
        assert v is not None and not isinstance(v, dict | list)
        if isinstance(v, str) and not is_uuid_string(v):
            assert k in text_keys, f"{rule} event shares the string at props.{k}"
        if rule == "navigate":
            assert k in POLICY.navigate_keep
    allowed_context = POLICY.context_keep.get(origin_of(row.source), frozenset())
    assert set(shared.context) <= allowed_context
    for v in shared.context.values():
        assert v is not None and not isinstance(v, dict | list)


@settings(max_examples=150, deadline=None)
@given(rows())
def test_explain_accounts_for_every_field(row: AuditRow) -> None:
    ex = explain(row)
    shared = ex.shared
    changed = {c.field for c in ex.changes}
    for c in ex.changes:
        assert c.action in ("removed", "altered", "withheld")
        assert c.rule
    if shared is None:  # withheld: one change says why, and nothing else is shared
        assert ex.withheld is not None
        assert [c.field for c in ex.changes if c.action == "withheld"] == ["name"]
        return

    for part in ("props", "context"):
        before: dict[str, Any] = getattr(row, part)
        after: dict[str, Any] = getattr(shared, part)
        for k, v in before.items():
            kept = k in after and after[k] == v and type(after[k]) is type(v)
            assert kept != (key_path(part, k) in changed), f"{part}.{k}: kept and changed?"
        # Nothing appears from nowhere: the only derived key is email-domain.
        for k in after:
            assert k in {nfkc(b) for b in before if isinstance(b, str)} or (
                part == "props" and k == "email-domain" and "email" in before
            )

    for f in fields(AuditRow):
        if f.name in ("props", "context"):
            continue
        same = getattr(row, f.name) == getattr(shared, f.name)
        assert same != (f.name in changed), f"{f.name}: kept and changed?"

    # anonymise and explain are one code path: same row but for the fresh id.
    assert {**_fields(anonymise(row)), "id": None} == {**_fields(shared), "id": None}


def _fields(row: AuditRow) -> dict[str, Any]:
    return {f.name: getattr(row, f.name) for f in fields(AuditRow)}


@settings(max_examples=100, deadline=None)
@given(st.uuids(), st.uuids())
def test_fresh_ids_are_distinct(a: uuid.UUID, b: uuid.UUID) -> None:
    row = AuditRow(
        a, "n", "t", "backend", b, "0.0.0.0", {}, {}, datetime.now(UTC), datetime.now(UTC)
    )
    assert anonymise(row).id != anonymise(row).id


raw_props = st.dictionaries(
    st.one_of(st.sampled_from(["session-id", "password", "old-password", "token", "email"]), key),
    json_value,
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"name": name, "type": type_, "props": raw_props, "context": json_object}
        ),
        min_size=1,
        max_size=5,
    )
)
def test_ingest_path_never_stores_secrets(events: list[dict[str, Any]]) -> None:
    """Through the real preparation (mode B rows): reserved props and nulls never reach a row."""
    from tuiaudit.audit import AuditLog
    from tuiaudit.events import prepare_backend_events

    audit = AuditLog(None, ["audit-log", "telemetry"])  # type: ignore[arg-type]
    try:
        prepared = prepare_backend_events(events, now=datetime.now(UTC), ip_addr="198.51.100.4")
    except ValidationError as exc:  # only control characters are refused at the door
        assert all(e.reason.endswith(CONTROL_REASON) for e in exc.errors), exc
        reject()
    for p in prepared:
        full, *copies = audit.rows_for(p.row)
        if not copies:  # withheld (DESIGN §3.1): the full row only
            assert withheld_reason(p.row.source, p.row.type, p.row.name) is not None
            continue
        (shared,) = copies
        for row in (full, shared):
            assert not {"session-id", "password", "old-password", "token"} & set(row.props)
            assert None not in row.props.values()
        assert full.ip_addr == "198.51.100.4" and shared.ip_addr == "0.0.0.0"
        assert _midnight(shared.created_at) and _midnight(shared.tracked_at)
