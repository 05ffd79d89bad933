"""The telemetry policy (DESIGN §3): what each kind of event shares, and why."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from tuiaudit.events import prepare_backend_event, prepare_frontend_events
from tuiaudit.ids import ZERO_UUID
from tuiaudit.policy import (
    POLICY,
    POLICY_FINGERPRINT,
    POLICY_VERSION,
    Change,
    anonymise,
    clean_email,
    email_domain,
    explain,
    props_rule,
)
from tuiaudit.policy_words import describe_policy
from tuiaudit.storage.base import AuditRow

NOW = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
DAY = datetime(2024, 5, 1, tzinfo=UTC)
PROFILE = uuid.UUID("0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b")
U = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"

# Fingerprint of each released policy version. A change to the table must
# either keep the version (it shares no more: add the new pair here) or raise
# it (DESIGN §7.1: a policy that shares more needs fresh consent).
# Version 1 twice: the §3.1 hardening (issue 11) only removes or reduces what
# version 1 shared (shapes, last scan, client instance-start as rule 4), so it
# keeps the version and records its new fingerprint.
RELEASED = {1: "5854c8e38db915e81d8af9a732920794e5604038b092db980ac635cfd825f658"}


def shared(row: AuditRow, *, trusted: bool = False) -> AuditRow:
    """The telemetry copy of ``row``, which must exist (not withheld)."""
    copy = anonymise(row, trusted=trusted)
    assert copy is not None
    return copy


def backend(name: str = "create-file", type_: str = "action", **kw: Any) -> AuditRow:
    event = {"name": name, "type": type_, "profile-id": str(PROFILE), "ip-addr": "10.0.0.9"}
    event.update(kw)
    return prepare_backend_event(event, now=NOW).row


def frontend(name: str = "click", type_: str = "action", **kw: Any) -> AuditRow:
    event = {"name": name, "type": type_, "timestamp": NOW, **kw}
    (row,) = prepare_frontend_events([event], profile_id=PROFILE, ip_addr="192.0.2.1", now=NOW)
    return row


def test_policy_version_pins_the_table() -> None:
    assert isinstance(POLICY_VERSION, int)
    assert RELEASED.get(POLICY_VERSION) == POLICY_FINGERPRINT, (
        "the policy table changed: raise POLICY_VERSION if it now shares more, "
        "and record the new fingerprint in RELEASED"
    )


def test_describe_policy_names_version_and_every_allowlisted_key() -> None:
    text = describe_policy()
    assert f"version {POLICY_VERSION}" in text
    for keys in (*POLICY.context_keep.values(), POLICY.navigate_keep, POLICY.identify_keep):
        for key in keys:
            assert key in text
    assert "0.0.0.0" in text and "truncated to the day" in text and "'/'" in text


def test_telemetry_row_carries_no_pii() -> None:
    row = backend(
        props={"email": "a@b.c", "size": 3, "file-id": U, "title": "Secret plan"},
        context={"initiator": "app", "client-ip": "10.0.0.9", "session": "s"},
        **{"tracked-at": "2024-05-01T09:15:00Z"},
    )
    shared = anonymise(row)
    assert shared.ip_addr == "0.0.0.0"
    assert shared.props == {"size": 3, "file-id": U}
    assert shared.context == {"initiator": "app"}
    assert shared.source == "telemetry:backend"
    assert shared.tracked_at == DAY and shared.created_at == DAY
    assert shared.id != row.id and shared.id.version == 7
    assert shared.profile_id == PROFILE  # a random UUID, not PII
    assert shared.name == row.name and shared.type == row.type
    # The full row is never altered.
    assert row.props["email"] == "a@b.c" and row.ip_addr == "10.0.0.9"


def test_telemetry_id_carries_only_the_day() -> None:
    shared = anonymise(backend())
    assert shared.id.int >> 80 == int(DAY.timestamp() * 1000)


def test_frontend_context_allowlist() -> None:
    context = {
        "browser": "firefox",
        "browser-version": "125",
        "os": "linux",
        "os-version": "6.8",
        "screen-width": 1920,
        "screen-height": 1080,
        "locale": "fr",
        "session": "abc",
        "external-session-id": "x",
        "access-token": "tok",
        "token": "tok",
        "initiator": "app",  # backend-only key
        "made-up": 1,
        "request-id": U,
    }
    shared = anonymise(frontend(context=context))
    assert shared.context == {
        "browser": "firefox",
        "browser-version": "125",
        "os": "linux",
        "os-version": "6.8",
        "screen-width": 1920,
        "screen-height": 1080,
        "locale": "fr",
    }
    assert shared.source == "telemetry:frontend"


def test_empty_context_stays_empty() -> None:
    assert anonymise(frontend()).context == {}
    assert anonymise(backend()).context == {}


def test_other_origin_keeps_no_context() -> None:
    row = replace(backend(context={"version": "1"}), source="cron")
    shared = anonymise(row)
    assert shared.context == {}
    assert shared.source == "telemetry:cron"


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(backend("login-with-password", "action", props={}), id="login-password"),
        pytest.param(backend("login-with-oidc", "action", props={}), id="login-oidc"),
        pytest.param(backend("register-profile", "action", props={}), id="register"),
        pytest.param(backend("update-profile", "action", props={}), id="update-profile"),
        pytest.param(frontend("signed-in", "identify", props={}), id="frontend-identify"),
    ],
)
def test_identify_like_events(row: AuditRow) -> None:
    props = {
        "email": "MailTo:<Ann@Example.ORG>",
        "fullname": "Ann Example",
        "lang": "fr",
        "auth-backend": "oidc",
        "team-id": U,
        "is-active": True,
        "logins": 3,
        "ratio": 0.5,
        "nested": {"a": 1},
        "theme": "dark",
    }
    row = replace(row, props=props)
    assert props_rule(row.source, row.type, row.name) == "identify"
    assert anonymise(row).props == {
        "email-domain": "example.org",
        "lang": "fr",
        "auth-backend": "oidc",
        "team-id": U,
        "is-active": True,
        "logins": 3,
        "ratio": 0.5,
    }


def test_identify_email_without_domain_is_removed() -> None:
    row = backend("login-with-password", props={"email": "nobody"})
    ex = explain(row)
    assert ex.shared.props == {}
    assert Change("props.email", "removed", POLICY.rules["email-no-domain"], "nobody", None) in (
        ex.changes
    )


def test_frontend_identify_needs_frontend_source() -> None:
    # A backend event of type identify is a generic event: strings go.
    row = backend("whoami", "identify", props={"lang": "fr", "n": 1})
    assert anonymise(row).props == {"n": 1}


def test_instance_start_passes_through_only_when_the_daemon_made_it() -> None:
    props = {
        "version": "1.2.3",
        "flags": ["audit-log", "telemetry"],
        "public-uri": "https://x.example",
    }
    row = backend("instance-start", "trigger", props=props)
    assert shared(row, trusted=True).props == props
    # ... except qualified keys, removed in every case.
    row = backend("instance-start", "trigger", props={**props, "app/secret": "x"})
    assert shared(row, trusted=True).props == props
    # Only the backend trigger passes through.
    assert shared(backend("instance-start", "action", props=props), trusted=True).props == {}
    # Issue 11 changed this: the same event from a client is any other event (§3.1
    # rule 4), whatever it carries.
    assert shared(backend("instance-start", "trigger", props=props)).props == {}


def test_generic_events_keep_only_uuid_bool_number() -> None:
    row = backend(
        props={
            "file-id": U,
            "upper-id": U.upper(),
            "flag": False,
            "on": True,
            "count": 0,
            "big": 2**62,  # issue 11: 9+ digits are an identifier, removed (§3.1)
            "ratio": -1.25,
            "name": "Plan",
            "not-uuid": U[:-1],
            "list": [1, 2],
            "obj": {"a": 1},
            "ns/key": 1,
            "ns/flag": True,
        }
    )
    shared = anonymise(row).props
    assert shared == {
        "file-id": U,
        "upper-id": U.upper(),
        "flag": False,
        "on": True,
        "count": 0,
        "ratio": -1.25,
    }
    # A boolean stays a boolean (True == 1 in Python, so check the types).
    assert {k: type(v) for k, v in shared.items()} == {
        "file-id": str,
        "upper-id": str,
        "flag": bool,
        "on": bool,
        "count": int,
        "ratio": float,
    }


def test_navigate_keeps_exactly_its_four_keys() -> None:
    row = frontend(
        "navigate",
        "action",
        props={
            "route": "dashboard-files",
            "file-id": U,
            "team-id": U,
            "page-id": U,
            "project-id": U,
            "count": 2,
            "title": "x",
            "team/x": U,
        },
    )
    assert anonymise(row).props == {
        "route": "dashboard-files",
        "file-id": U,
        "team-id": U,
        "page-id": U,
    }
    # A backend navigate is a generic event.
    assert "route" not in anonymise(replace(row, source="backend")).props


def test_day_precision_of_both_timestamps() -> None:
    row = backend(**{"tracked-at": "2024-04-30T23:59:59.999Z"})
    shared = anonymise(row)
    assert shared.tracked_at == datetime(2024, 4, 30, tzinfo=UTC)
    assert shared.created_at == DAY
    for ts in (shared.tracked_at, shared.created_at):
        assert (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0)


def test_explain_accounts_for_every_field() -> None:
    row = replace(
        backend(
            "login-with-password",
            props={"email": "a@b.org", "fullname": "A B", "n": 1, "x/y": 2},
            context={"version": "2", "request-id": U},
        ),
        archived_at=NOW,
    )
    ex = explain(row)
    rules = POLICY.rules
    by_field = {c.field: c for c in ex.changes}
    assert replace(ex.shared, id=ZERO_UUID) == replace(anonymise(row), id=ZERO_UUID)
    assert by_field["props.email"] == Change(
        "props.email", "altered", rules["email"], "a@b.org", "b.org"
    )
    assert by_field["props.fullname"].action == "removed"
    assert by_field['props["x/y"]'].rule == rules["qualified"]
    assert by_field["context.request-id"].rule == rules["context-backend"]
    assert by_field["ip_addr"] == Change("ip_addr", "altered", "ip zeroed", "10.0.0.9", "0.0.0.0")
    assert by_field["created_at"].rule == "truncated to day"
    assert by_field["tracked_at"].after == DAY
    assert by_field["source"].after == "telemetry:backend"
    assert by_field["id"].before == row.id and by_field["id"].after == ex.shared.id
    assert by_field["archived_at"].action == "removed"
    assert "n" in ex.shared.props and "version" in ex.shared.context
    assert sorted(ex.kept) == ["context.version", "props.n"]


def test_anonymise_is_explain_shared() -> None:
    row = frontend(props={"a": 1, "b": "x"}, context={"os": "mac", "session": "s"})
    a, b = anonymise(row), explain(row).shared
    assert replace(a, id=ZERO_UUID) == replace(b, id=ZERO_UUID)


@pytest.mark.parametrize(
    ("raw", "clean", "domain"),
    [
        ("Ann@Example.ORG", "ann@example.org", "example.org"),
        ("mailto:ann@example.org", "ann@example.org", "example.org"),
        ("<ann@example.org>", "ann@example.org", "example.org"),
        ("  MAILTO:<Ann@Sub.Example.org>  ", "ann@sub.example.org", "sub.example.org"),
        # Issue 11 changed these: an RFC 5322 mailbox, the domain after its LAST @,
        # only a host name with a dot.
        ("a@b@c.org", "a@b@c.org", None),  # not a mailbox at all
        ('"a@b"@c.org', '"a@b"@c.org', "c.org"),
        ("Ana <ana@x.example>", "ana <ana@x.example>", "x.example"),
        ("a@localhost", "a@localhost", None),
        ("nobody", "nobody", None),
        ("", "", None),
    ],
)
def test_email_helpers(raw: str, clean: str, domain: str | None) -> None:
    assert clean_email(raw) == clean
    assert email_domain(raw) == domain
