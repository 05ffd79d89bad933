"""The hardened policy (DESIGN §3.1): planted personal data never survives; real events do."""

from __future__ import annotations

import base64
import random
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shipper_support import INSTANCE

from tuiaudit.batch import build_batch
from tuiaudit.codec import Keyword
from tuiaudit.codec.blob import decode_envelope
from tuiaudit.events import prepare_backend_event, prepare_frontend_events
from tuiaudit.pii_scan import scan
from tuiaudit.policy import anonymise, explain, rule_counts, withheld_reason
from tuiaudit.policy_shapes import mailbox_domain, round_significant, user_agent_family
from tuiaudit.storage.base import AuditRow

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
PROFILE = uuid.UUID("0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b")
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
FILE, TEAM, PAGE = (str(uuid.UUID(int=(0x42 << 120) + i, version=4)) for i in range(3))


def backend(event: dict[str, Any]) -> AuditRow:
    return prepare_backend_event({"profile-id": str(PROFILE), **event}, now=NOW).row


def frontend(event: dict[str, Any]) -> AuditRow:
    (row,) = prepare_frontend_events(
        [{"timestamp": NOW, **event}], profile_id=PROFILE, ip_addr="198.51.100.7", now=NOW
    )
    return row


def shared(row: AuditRow) -> AuditRow:
    copy = anonymise(row)
    assert copy is not None, explain(row).changes
    return copy


# --------------------------------------------------------------- property


def _token(seed: int) -> str:
    raw = random.Random(seed).randbytes(24)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _hex(seed: int) -> str:
    return random.Random(seed).randbytes(20).hex()


def _jwt(seed: int) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    return f"{head}.{_token(seed)}.{_token(seed + 1)}"


_label = st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8)
emails = st.builds(lambda a, b, c: f"{a}.{b}@{c}.example", _label, _label, _label)
ipv4 = st.tuples(*[st.integers(11, 254)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.tuples(*[st.integers(0x1000, 0xFFFF)] * 8).map(lambda t: ":".join(f"{x:x}" for x in t))
seeds = st.integers(0, 2**32)
phones = st.one_of(
    st.integers(1_000_000, 9_999_999).map(lambda n: f"+49 151 {n}"),
    st.integers(1000, 9999).map(lambda n: f"(415) 555-{n}"),
)
long_digits = st.integers(10**9, 10**15).map(str)
plant = st.one_of(
    emails,
    ipv4,
    ipv6,
    seeds.map(_token),
    seeds.map(_hex),
    seeds.map(_jwt),
    phones,
    long_digits,
    emails.map(lambda e: unicodedata.normalize("NFKC", e).replace("@", "＠")),  # full-width
)
# Where a client can put text; the version fields are left out for IPs only by the
# scan rule itself (a version may be 124.0.0.0), so plants avoid them.
PROP_KEYS = ["email", "lang", "auth-backend", "email-domain", "route", "file-id", "title", "x"]
CONTEXT_KEYS = [
    "initiator",
    "client-user-agent",
    "locale",
    "browser",
    "os",
    "device-type",
    "event-origin",
    "event-namespace",
    "event-symbol",
    "screen-width",
]
KINDS = [
    ("backend", "action", "create-file"),
    ("backend", "action", "login-with-password"),
    ("backend", "trigger", "instance-start"),
    ("frontend", "identify", "signed-in"),
    ("frontend", "action", "navigate"),
    ("frontend", "action", "clicked"),
]


def _embed(text: str, how: int) -> str:
    return [text, f"x {text}", f"{text}/1.0", f"{CHROME_MAC} {text}", f"<{text}>"][how]


@st.composite
def planted_events(draw: st.DrawFn) -> tuple[AuditRow, list[str]]:
    source, type_, name = draw(st.sampled_from(KINDS))
    secrets: list[str] = []
    props: dict[str, Any] = {"n": draw(st.integers(0, 1000)), "file-id": FILE}
    context: dict[str, Any] = {"version": "2.4.3"}
    for _ in range(draw(st.integers(1, 4))):
        secret = draw(plant)
        secrets.append(secret)
        value = _embed(secret, draw(st.integers(0, 4)))
        where = draw(st.integers(0, 5))
        if where == 0:
            name = f"{name}-{secret}"
        elif where == 1:
            props[secret] = draw(st.booleans())
        elif where == 2:
            props[draw(st.sampled_from(PROP_KEYS))] = value
        elif where == 3:
            props["meta"] = {"deep": [value], draw(_label): {"k": value}}
        elif where == 4:
            context[draw(st.sampled_from(CONTEXT_KEYS))] = value
        else:
            context["request-id"] = value
    row = AuditRow(
        uuid.uuid4(), name, type_, source, PROFILE, "203.0.113.5", props, context, NOW, NOW
    )
    return row, secrets


@settings(max_examples=300, deadline=None)
@given(planted_events())
def test_no_planted_string_survives_into_the_telemetry_copy(
    case: tuple[AuditRow, list[str]],
) -> None:
    row, secrets = case
    copy = anonymise(row)
    if copy is None:
        assert withheld_reason(row.source, row.type, row.name) is not None
        return
    text = orjson.dumps([copy.name, copy.type, copy.props, copy.context], default=str).decode()
    text = unicodedata.normalize("NFKC", orjson.loads(orjson.dumps(text)))
    for secret in secrets:
        assert unicodedata.normalize("NFKC", secret) not in text, (secret, copy)


# ------------------------------------------------------------ Penpot shapes


def test_penpot_login_ships_the_mailbox_domain_lang_and_backend() -> None:
    row = backend(
        {
            "name": "login-with-password",
            "type": "action",
            "props": {
                "email": "Ana Lopez <Ana.Lopez@Penpot.Example>",
                "fullname": "Ana Lopez",
                "lang": "zh_CN",
                "auth-backend": "penpot",
                "profile-id": str(PROFILE),
                "is-active": True,
            },
        }
    )
    assert shared(row).props == {
        "email-domain": "penpot.example",
        "lang": "zh_CN",
        "auth-backend": "penpot",
        "profile-id": str(PROFILE),
        "is-active": True,
    }


def test_penpot_navigate_ships_route_and_ids_as_strings() -> None:
    row = frontend(
        {
            "name": "navigate",
            "type": "action",
            "props": {"route": "workspace", "file-id": FILE, "team-id": TEAM, "page-id": PAGE},
        }
    )
    copy = shared(row)
    assert copy.props == {"route": "workspace", "file-id": FILE, "team-id": TEAM, "page-id": PAGE}
    batch = build_batch([copy], instance_id=INSTANCE, version="1")
    (event,) = decode_envelope(batch.body)["events"]
    props = event[Keyword("props")]
    assert props[Keyword("file-id")] == FILE and type(props[Keyword("file-id")]) is str
    assert props[Keyword("team-id")] == TEAM and props[Keyword("page-id")] == PAGE


def test_penpot_create_file_ships_counts_ids_and_a_rounded_duration() -> None:
    row = backend(
        {
            "name": "create-file",
            "type": "action",
            "props": {
                "file-id": FILE,
                "project-id": TEAM,
                "page-count": 3,
                "total-components": 12,
                "duration": 1234.5678,
                "name": "Quarterly plan",
            },
        }
    )
    copy = shared(row)
    assert copy.props == {
        "file-id": FILE,
        "project-id": TEAM,
        "page-count": 3,
        "total-components": 12,
        "duration": 1235.0,
    }
    batch = build_batch([copy], instance_id=INSTANCE, version="1")
    (event,) = decode_envelope(batch.body)["events"]
    assert event[Keyword("props")][Keyword("file-id")] == uuid.UUID(FILE)  # §5.1: a UUID


FRONTEND_CONTEXT = {
    "version": "2.4.3",
    "locale": "zh_CN",
    "browser": "Chrome",
    "browser-version": "124.0.0.0",
    "engine": "Blink",
    "engine-version": "124.0.0.0",
    "os": "Mac OS",
    "os-version": "10.15.7",
    "device-type": "desktop",
    "device-arch": "amd64",
    "screen-width": 1920,
    "screen-height": 1080,
    "screen-color-depth": 24,
    "screen-orientation": "landscape-primary",
    "event-origin": "workspace",
    "event-namespace": "app.main.data.workspace",
    "event-symbol": "initialize-workspace",
}


def test_a_real_browser_context_ships_unchanged() -> None:
    row = frontend({"name": "clicked", "type": "action", "context": FRONTEND_CONTEXT})
    assert shared(row).context == FRONTEND_CONTEXT


def test_backend_context_user_agent_is_reduced_to_families() -> None:
    row = backend(
        {
            "name": "update-file",
            "type": "action",
            "context": {
                "version": "2.4.3",
                "initiator": "app",
                "client-version": "2.4.3",
                "client-user-agent": CHROME_MAC,
            },
        }
    )
    ex = explain(row)
    assert ex.shared is not None
    assert ex.shared.context == {
        "version": "2.4.3",
        "initiator": "app",
        "client-version": "2.4.3",
        "client-user-agent": "Chrome 124 / Mac OS X",
    }
    (ua,) = [c for c in ex.changes if c.field == "context.client-user-agent"]
    assert ua.action == "altered" and ua.rule_id == "user-agent"


def test_user_agent_parsing_is_cached() -> None:
    user_agent_family.cache_clear()
    for _ in range(3):
        assert user_agent_family(CHROME_MAC) == "Chrome 124 / Mac OS X"
    info = user_agent_family.cache_info()
    assert info.misses == 1 and info.hits == 2


# ------------------------------------------------------------- the scan


@pytest.mark.parametrize(
    "text",
    [
        "124.0.0.0",
        "Mac OS 10.15.7",
        "zh_CN",
        FILE,
        "workspace",
        "dashboard-recent-projects",
        "app.main.data.workspace/initialize-workspace",
        "Linux 6.1.0-18-amd64",
        "createFileV2Migration2024",
        "Firefox 133 / Linux",
        "2024-05-01",
        "screen 2560 1440",
    ],
)
def test_the_scan_keeps_realistic_values(text: str) -> None:
    assert scan(text, version=text == "124.0.0.0") is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("ana@corp.example", "email"),
        ("https://admin:pw@host/", "email"),  # the user info is an address shape too
        ("https://x.example/?k=secret", "url"),
        ("/auth/recovery?token=abc", "url"),
        (_jwt(1), "token"),
        (_hex(2), "token"),
        ("AKIAIOSFODNN7EXAMPLE", "token"),
        ("4915112345678", "digits"),
        ("10.0.0.1", "ip"),
        ("fe80::1", "ip"),
        ("+49 151 12345678", "phone"),
        ("Ana Lopez 555-0100", "phone"),
    ],
)
def test_the_scan_finds_personal_data(text: str, kind: str) -> None:
    assert scan(text) == kind


@pytest.mark.parametrize(
    ("value", "domain"),
    [
        ("Ana <ana@x.example>", "x.example"),
        ('"a@b" <a@c.example>', "c.example"),
        ("mailto:ana@X.Example", "x.example"),
        ("a@b@c.example", None),
        ("ana@10.0.0.1", None),
        ("ana@localhost", None),
        ("ana＠corp．example", "corp.example"),
    ],
)
def test_mailbox_domain(value: str, domain: str | None) -> None:
    assert mailbox_domain(value) == domain


def test_numbers() -> None:
    assert round_significant(52.520008, 4) == 52.52
    row = backend(
        {
            "name": "measured",
            "type": "action",
            "props": {"big": 123_456_789, "small": 12_345_678, "neg": -987_654_321, "f": 0.1},
        }
    )
    assert shared(row).props == {"small": 12_345_678, "f": 0.1}


# ---------------------------------------------------- withheld and counted


@pytest.mark.parametrize(
    ("type_", "name", "reason"),
    [
        ("action", "password-reset for ana@corp.example", "unsafe-name"),
        ("action", "ok-name", None),
        ("Action Type", "ok-name", "unsafe-type"),
        ("action", "login-10.1.2.3", "pii-scan"),
        ("action", "ｌｏｇｉｎ", None),  # NFKC: a full-width name is a name
    ],
)
def test_withheld_reason(type_: str, name: str, reason: str | None) -> None:
    assert withheld_reason("backend", type_, name) == reason
    copy = anonymise(backend({"name": name, "type": type_}))
    assert (copy is None) == (reason is not None)


def test_removals_are_counted_by_rule() -> None:
    before = rule_counts()
    anonymise(backend({"name": "x", "type": "action", "props": {"a@b.example": 1, "n": 10**12}}))
    after = rule_counts()
    assert after.get("unsafe-key", 0) == before.get("unsafe-key", 0) + 1
    assert after.get("long-number", 0) == before.get("long-number", 0) + 1
