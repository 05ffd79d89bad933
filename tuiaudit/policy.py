"""The telemetry policy (SPEC §3): one table of data, one function that applies it.

``POLICY`` is the whole policy: the allowlists, the identify-like and
pass-through events, the navigate keys and the plain-words text of every rule.
``_apply`` is the only code that reads it; ``explain`` returns what it did,
field by field, and ``anonymise`` is ``_apply``'s shared row, so the preview,
the dashboard and the ingest path cannot drift apart. ``describe_policy``
prints the same table for the consent screen.

``POLICY_VERSION`` must be raised whenever a change would share more (SPEC
§7.1); ``POLICY_FINGERPRINT`` hashes the table, and a test pins it per
version, so a table change without a version decision fails loudly.
"""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from storage.base import TELEMETRY_SOURCE_PREFIX, AuditRow
from tuiaudit.events import DEFAULT_IP, key_path
from tuiaudit.ids import is_uuid_string, uuid7
from tuiaudit.timeutil import day_start


@dataclass(frozen=True)
class Policy:
    version: int
    # (source, type, name) triples; name None matches every name of that type.
    identify_like: frozenset[tuple[str, str, str | None]]
    identify_keep: frozenset[str]  # kept with a text value on identify-like events
    pass_through: frozenset[tuple[str, str, str | None]]
    navigate: frozenset[tuple[str, str, str | None]]
    navigate_keep: frozenset[str]
    context_keep: dict[str, frozenset[str]]  # by origin (backend / frontend)
    rules: dict[str, str] = field(default_factory=dict)

    def table(self) -> dict[str, Any]:
        """The policy as plain JSON data (sorted), the input of the fingerprint."""

        def triples(s: frozenset[tuple[str, str, str | None]]) -> list[list[str | None]]:
            return sorted(([*t] for t in s), key=lambda t: [x or "" for x in t])

        return {
            "version": self.version,
            "identify-like": triples(self.identify_like),
            "identify-keep": sorted(self.identify_keep),
            "pass-through": triples(self.pass_through),
            "navigate": triples(self.navigate),
            "navigate-keep": sorted(self.navigate_keep),
            "context-keep": {k: sorted(v) for k, v in sorted(self.context_keep.items())},
            "rules": dict(sorted(self.rules.items())),
        }


POLICY = Policy(
    version=1,
    identify_like=frozenset(
        {
            ("frontend", "identify", None),
            ("backend", "*", "login-with-oidc"),
            ("backend", "*", "login-with-password"),
            ("backend", "*", "register-profile"),
            ("backend", "*", "update-profile"),
        }
    ),
    identify_keep=frozenset({"lang", "auth-backend", "email-domain"}),
    pass_through=frozenset({("backend", "trigger", "instance-start")}),
    navigate=frozenset({("frontend", "action", "navigate")}),
    navigate_keep=frozenset({"route", "file-id", "team-id", "page-id"}),
    context_keep={
        "backend": frozenset({"version", "initiator", "client-version", "client-user-agent"}),
        "frontend": frozenset(
            {
                "version",
                "locale",
                "browser",
                "browser-version",
                "engine",
                "engine-version",
                "os",
                "os-version",
                "device-type",
                "device-arch",
                "screen-width",
                "screen-height",
                "screen-color-depth",
                "screen-orientation",
                "event-origin",
                "event-namespace",
                "event-symbol",
            }
        ),
    },
    rules={
        "id": "replaced by a new id (telemetry rows cannot be joined to audit rows)",
        "source": "source marked telemetry:<origin>",
        "ip": "ip zeroed",
        "day": "truncated to day",
        "archived": "removed: archive marks are not shared",
        "qualified": "removed: qualified key (holds /), removed in every case",
        "null": "removed: null value",
        "nested": "removed: nested object or array",
        "email": "email → domain",
        "email-no-domain": "removed: email without a domain",
        "email-domain": "email-domain replaced by the domain of email",
        "identify": "removed: identify-like events share only UUID, boolean and number values "
        "plus lang, auth-backend and email-domain",
        "navigate": "removed: navigate shares only route, file-id, team-id and page-id",
        "generic": "removed: only UUID, boolean and number values are shared",
        "context-backend": "removed: not in backend context allowlist",
        "context-frontend": "removed: not in frontend context allowlist",
        "context-other": "removed: context of this origin is not shared",
        "context-nested": "removed: nested value in context",
    },
)

POLICY_VERSION: int = POLICY.version
POLICY_FINGERPRINT: str = hashlib.sha256(
    orjson.dumps(POLICY.table(), option=orjson.OPT_SORT_KEYS)
).hexdigest()

REMOVED = "removed"
ALTERED = "altered"


@dataclass(frozen=True, slots=True)
class Change:
    """What the policy did to one field of a row (``props.email``, ``ip_addr`` ...)."""

    field: str
    action: str  # "removed" | "altered"
    rule: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Explanation:
    original: AuditRow
    shared: AuditRow
    changes: list[Change]

    @property
    def kept(self) -> list[str]:
        """Paths of the props/context keys shared unchanged."""
        return [key_path("props", k) for k in self.shared.props if k in self.original.props] + [
            key_path("context", k) for k in self.shared.context if k in self.original.context
        ]


# ------------------------------------------------------------------ helpers


def clean_email(value: str) -> str:
    """Lower-case, trimmed, without a leading ``mailto:`` or surrounding ``<`` ``>``."""
    s = value.strip().lower()
    if s.startswith("mailto:"):
        s = s[7:].strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1].strip()
    return s


def email_domain(value: str) -> str | None:
    """The part after the first ``@`` of the cleaned address; None without ``@``."""
    s = clean_email(value)
    at = s.find("@")
    return s[at + 1 :] if at >= 0 else None


def _is_number(value: object) -> bool:
    t = type(value)
    # A boolean is not a number; a non-finite float is not JSON.
    return (t is int) or (t is float and value - value == 0.0)  # type: ignore[operator]


def _is_shareable_scalar(value: object) -> bool:
    """UUID, boolean or number: the values every event may share."""
    return (
        type(value) is bool
        or _is_number(value)
        or isinstance(value, uuid.UUID)
        or (is_uuid_string(value))
    )


def _is_scalar(value: object) -> bool:
    return value is not None and not isinstance(value, dict | list | tuple)


def _matches(
    rules: frozenset[tuple[str, str, str | None]], source: str, type_: str, name: str
) -> bool:
    return (
        (source, type_, name) in rules
        or (source, type_, None) in rules
        or (source, "*", name) in rules
    )


def origin_of(source: str) -> str:
    """``backend`` for ``backend`` and ``telemetry:backend``."""
    return (
        source[len(TELEMETRY_SOURCE_PREFIX) :]
        if source.startswith(TELEMETRY_SOURCE_PREFIX)
        else source
    )


def props_rule(source: str, type_: str, name: str, policy: Policy = POLICY) -> str:
    """Which props rule applies: ``identify``, ``pass-through``, ``navigate`` or ``generic``."""
    origin = origin_of(source)
    if _matches(policy.identify_like, origin, type_, name):
        return "identify"
    if _matches(policy.pass_through, origin, type_, name):
        return "pass-through"
    if _matches(policy.navigate, origin, type_, name):
        return "navigate"
    return "generic"


# ------------------------------------------------------------------- apply

_Raw = tuple[str, str, str, Any, Any]  # Change fields, cheap to collect on the hot path


def _apply(row: AuditRow, policy: Policy = POLICY) -> tuple[AuditRow, list[_Raw]]:
    """The telemetry copy of ``row`` and every change made to get it."""
    rules = policy.rules
    changes: list[_Raw] = []
    origin = origin_of(row.source)
    props = _apply_props(row, props_rule(row.source, row.type, row.name, policy), policy, changes)
    context = _apply_context(row.context, origin, policy, changes)

    created = day_start(row.created_at)
    tracked = day_start(row.tracked_at)
    new_id = uuid7(created)  # its time part is the day, like the timestamps
    source = TELEMETRY_SOURCE_PREFIX + origin
    changes.append(("id", ALTERED, rules["id"], row.id, new_id))
    if source != row.source:
        changes.append(("source", ALTERED, rules["source"], row.source, source))
    if row.ip_addr != DEFAULT_IP:
        changes.append(("ip_addr", ALTERED, rules["ip"], row.ip_addr, DEFAULT_IP))
    if tracked != row.tracked_at:
        changes.append(("tracked_at", ALTERED, rules["day"], row.tracked_at, tracked))
    if created != row.created_at:
        changes.append(("created_at", ALTERED, rules["day"], row.created_at, created))
    if row.archived_at is not None:
        changes.append(("archived_at", REMOVED, rules["archived"], row.archived_at, None))
    shared = AuditRow(
        id=new_id,
        name=row.name,
        type=row.type,
        source=source,
        profile_id=row.profile_id,
        ip_addr=DEFAULT_IP,
        props=props,
        context=context,
        tracked_at=tracked,
        created_at=created,
    )
    return shared, changes


def _apply_props(row: AuditRow, kind: str, policy: Policy, changes: list[_Raw]) -> dict[str, Any]:
    rules = policy.rules
    out: dict[str, Any] = {}
    email: tuple[str, Any] | None = None
    for k, v in row.props.items():
        if "/" in k:
            changes.append((key_path("props", k), REMOVED, rules["qualified"], v, None))
        elif kind == "pass-through":
            out[k] = v
        elif kind == "identify" and k == "email":
            if isinstance(v, str):
                email = (k, v)
            else:
                changes.append((key_path("props", k), REMOVED, rules["identify"], v, None))
        elif v is None:
            changes.append((key_path("props", k), REMOVED, rules["null"], v, None))
        elif _is_shareable_scalar(v):
            if kind == "navigate" and k not in policy.navigate_keep:
                changes.append((key_path("props", k), REMOVED, rules["navigate"], v, None))
            else:
                out[k] = v
        elif isinstance(v, dict | list | tuple):
            changes.append((key_path("props", k), REMOVED, rules["nested"], v, None))
        elif (kind == "identify" and k in policy.identify_keep) or (
            kind == "navigate" and k in policy.navigate_keep
        ):
            out[k] = v
        else:
            rule = rules[kind] if kind in ("identify", "navigate") else rules["generic"]
            changes.append((key_path("props", k), REMOVED, rule, v, None))
    if email is not None:
        domain = email_domain(email[1])
        if domain:
            changes.append(("props.email", ALTERED, rules["email"], email[1], domain))
            old = out.get("email-domain")
            if "email-domain" in row.props and old != domain:
                before = row.props["email-domain"]
                changes.append(
                    ("props.email-domain", ALTERED, rules["email-domain"], before, domain)
                )
            out["email-domain"] = domain
        else:
            changes.append(("props.email", REMOVED, rules["email-no-domain"], email[1], None))
    return out


def _apply_context(
    context: dict[str, Any], origin: str, policy: Policy, changes: list[_Raw]
) -> dict[str, Any]:
    rules = policy.rules
    keep = policy.context_keep.get(origin)
    if keep is None:
        not_kept = rules["context-other"]
    else:
        not_kept = rules.get(f"context-{origin}", f"removed: not in {origin} context allowlist")
    out: dict[str, Any] = {}
    for k, v in context.items():
        if "/" in k:
            changes.append((key_path("context", k), REMOVED, rules["qualified"], v, None))
        elif keep is None or k not in keep:
            changes.append((key_path("context", k), REMOVED, not_kept, v, None))
        elif v is None:
            changes.append((key_path("context", k), REMOVED, rules["null"], v, None))
        elif not _is_scalar(v):
            changes.append((key_path("context", k), REMOVED, rules["context-nested"], v, None))
        else:
            out[k] = v
    return out


def anonymise(row: AuditRow) -> AuditRow:
    """The telemetry copy of ``row`` (SPEC §3): what ``explain(row).shared`` shows."""
    return _apply(row)[0]


def explain(row: AuditRow) -> Explanation:
    """The telemetry copy of ``row`` and, for every field not shared as is, why."""
    shared, raw = _apply(row)
    return Explanation(row, shared, [Change(*c) for c in raw])


# ----------------------------------------------------------------- words


def describe_policy(policy: Policy = POLICY) -> str:
    """The policy in plain words, with its version (``tuiaudit consent``, the dashboard)."""

    def names(s: frozenset[str]) -> str:
        return ", ".join(sorted(s))

    def events(s: frozenset[tuple[str, str, str | None]]) -> str:
        return ", ".join(f"{o} {t} events named {n}" for o, t, n in sorted(s, key=str))

    def item(bullet: str, text: str, indent: int = 2) -> list[str]:
        pad = " " * indent
        return textwrap.wrap(
            text,
            76,
            initial_indent=pad + bullet,
            subsequent_indent=pad + " " * len(bullet),
            break_on_hyphens=False,
        )

    backend_identify = sorted(n for o, _t, n in policy.identify_like if o == "backend" and n)
    lines = [
        f"tuiaudit telemetry policy, version {policy.version} "
        f"(fingerprint {POLICY_FINGERPRINT[:12]})",
        "",
        *textwrap.wrap(
            "Nothing leaves this machine until a telemetry URI is configured and this "
            "version of the policy is accepted (tuiaudit consent --accept). What is "
            "shared is an anonymised copy of each event; the audit log itself is never "
            "altered and never sent.",
            78,
        ),
        "",
        "Every shared event:",
        *item("- ", "gets a new id; it cannot be joined back to its audit row."),
        *item(
            "- ",
            "has its IP address replaced by 0.0.0.0; the profile id (a random UUID, "
            "not personal data) is kept.",
        ),
        *item("- ", "has its timestamps truncated to the day (00:00:00 UTC)."),
        *item(
            "- ",
            "keeps its name and type; its source becomes telemetry:backend or telemetry:frontend.",
        ),
        "",
        "Event properties, by event:",
        *item(
            "1. ",
            "Identify-like events (frontend events of type identify; backend events "
            f"named {', '.join(backend_identify)}): UUID, boolean and number values, plus "
            f"{names(policy.identify_keep)}; the email address is reduced to its domain "
            "(email-domain). The email, the full name and every other text are removed.",
        ),
        *item(
            "2. ",
            f"{events(policy.pass_through)}: properties pass unchanged (version, enabled "
            "flags, public URI).",
        ),
        *item("3. ", f"{events(policy.navigate)}: only {names(policy.navigate_keep)}."),
        *item(
            "4. ",
            "Every other event: only UUID, boolean and number values; texts, nested "
            "objects and lists are removed.",
        ),
        *item(
            "",
            "Null values are removed; keys holding '/' (qualified keys) are removed in every case.",
        ),
        "",
        "Event context:",
    ]
    for origin, keep in sorted(policy.context_keep.items()):
        lines += item("- ", f"{origin} events keep only: {names(keep)}.")
    lines += item(
        "- ",
        "any other origin keeps nothing. Session links, access tokens, request ids "
        "and everything else are removed.",
    )
    return "\n".join(lines) + "\n"
