"""The telemetry policy (DESIGN §3, §3.1): one table of data and its entry points.

``POLICY`` is the whole policy: the allowlists, the identify-like and
pass-through events, the navigate keys, the value shapes of the hardening
rules (§3.1) and the plain-words text of every rule. ``tuiaudit.policy_apply``
is the only code that reads it: ``explain`` returns what it did, field by
field, each change with its rule, and ``anonymise``/``anonymise_many`` (the
ingest path) run the very same code, only counting the changes by rule
(``rule_counts``) instead of recording them. The consent text
(``tuiaudit.policy_words``) is generated from the same table.

``POLICY_VERSION`` must be raised whenever a change would share more (DESIGN
§7.1); ``POLICY_FINGERPRINT`` hashes the table, and a test pins it per
version, so a table change without a version decision fails loudly. The
site's own rules (``[policy]`` in the settings, ``tuiaudit.site_policy``)
have their own fingerprint, recorded with the consent.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import field as dc_field  # Change has a field named "field"
from datetime import datetime
from typing import Any

import orjson

from tuiaudit import policy_apply as _ap
from tuiaudit import policy_frontend
from tuiaudit.events import key_path
from tuiaudit.ids import UUID_PATTERN
from tuiaudit.pii_scan import SCAN_KINDS
from tuiaudit.policy_shapes import mailbox_domain
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy
from tuiaudit.storage.base import (
    DROP_PII_SCAN,
    DROP_SITE_POLICY,
    DROP_UNSAFE_NAME,
    DROP_UNSAFE_TYPE,
    TELEMETRY_SOURCE_PREFIX,
    AuditRow,
)

_Triples = frozenset[tuple[str, str, str | None]]


@dataclass(frozen=True)
class Policy:
    version: int
    # (source, type, name) triples; name None matches every name of that type.
    identify_like: _Triples
    identify_keep: frozenset[str]  # kept with a text value on identify-like events
    pass_through: _Triples  # only for events the daemon made itself (§3.1)
    navigate: _Triples
    navigate_keep: frozenset[str]
    context_keep: dict[str, frozenset[str]]  # by origin (backend / frontend)
    # §3.1: shape name -> regular expression a value must match whole (after NFKC).
    shapes: dict[str, str] = field(default_factory=dict)
    prop_shapes: dict[str, str] = field(default_factory=dict)  # text prop key -> shape
    context_shapes: dict[str, str] = field(default_factory=dict)  # context key -> shape
    uri_keys: frozenset[str] = frozenset()  # pass-through keys reduced to their origin
    version_keys: frozenset[str] = frozenset()  # where a dotted quad is not an IP
    long_int_digits: int = 9
    float_digits: int = 4
    scan_kinds: tuple[str, ...] = ()
    # Rule id -> drop reason, for the rules that withhold the whole event.
    withholding: dict[str, str] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)

    def table(self) -> dict[str, Any]:
        """The policy as plain JSON data (sorted), the input of the fingerprint."""

        def triples(s: _Triples) -> list[list[str | None]]:
            return sorted(([*t] for t in s), key=lambda t: [x or "" for x in t])

        return {
            "version": self.version,
            "identify-like": triples(self.identify_like),
            "identify-keep": sorted(self.identify_keep),
            "pass-through": triples(self.pass_through),
            "navigate": triples(self.navigate),
            "navigate-keep": sorted(self.navigate_keep),
            "context-keep": {k: sorted(v) for k, v in sorted(self.context_keep.items())},
            "shapes": dict(sorted(self.shapes.items())),
            "prop-shapes": dict(sorted(self.prop_shapes.items())),
            "context-shapes": dict(sorted(self.context_shapes.items())),
            "uri-keys": sorted(self.uri_keys),
            "version-keys": sorted(self.version_keys),
            "long-int-digits": self.long_int_digits,
            "float-digits": self.float_digits,
            "scan-kinds": list(self.scan_kinds),
            "withholding": dict(sorted(self.withholding.items())),
            "rules": dict(sorted(self.rules.items())),
        }


_VERSION_KEYS = frozenset(
    {"version", "client-version", "browser-version", "engine-version", "os-version"}
)
_IDENTIFIER = r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}"

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
    shapes={
        "name": _IDENTIFIER,
        "type": r"[a-z][a-z0-9-]{0,31}",
        "key": r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}",
        "lang": r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{2,8}){0,3}",
        "auth-backend": r"[a-z][a-z0-9_-]{0,31}",
        "route": _IDENTIFIER,
        "uuid": UUID_PATTERN.pattern,
        "version": r"[0-9A-Za-z][0-9A-Za-z._+-]{0,31}",
        # Letters, digits, spaces and ._:/- only, 64 at most, no "://".
        "plain": r"(?!.*://)[\w .:/-]{0,64}",
        # Site policy kinds (``[policy] keep``) for text values.
        "enum": r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}",
        "identifier": r"[A-Za-z0-9][A-Za-z0-9_.:/+=-]{0,127}",
    },
    prop_shapes={
        "lang": "lang",
        "auth-backend": "auth-backend",
        "route": "route",
        "file-id": "uuid",
        "team-id": "uuid",
        "page-id": "uuid",
    },
    context_shapes={
        **dict.fromkeys(_VERSION_KEYS, "version"),
        "locale": "lang",
        "screen-width": "number",
        "screen-height": "number",
        "screen-color-depth": "number",
        "client-user-agent": "user-agent",
        # every other kept context key: "plain"
    },
    uri_keys=frozenset({"public-uri"}),
    version_keys=_VERSION_KEYS,
    long_int_digits=9,
    float_digits=4,
    scan_kinds=SCAN_KINDS,
    withholding={
        "unsafe-name": DROP_UNSAFE_NAME,
        "unsafe-type": DROP_UNSAFE_TYPE,
        "pii-name": DROP_PII_SCAN,
        "site-drop-event": DROP_SITE_POLICY,
        "site-strict-event": DROP_SITE_POLICY,
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
        "email-no-domain": "removed: email without a valid domain (a host name with a dot)",
        "email-domain-client": "removed: email-domain is only computed from email, never "
        "taken from the client",
        "identify": "removed: identify-like events share only UUID, boolean and number values "
        "plus lang, auth-backend and email-domain",
        "navigate": "removed: navigate shares only route, file-id, team-id and page-id",
        "generic": "removed: only UUID, boolean and number values are shared",
        "context-backend": "removed: not in backend context allowlist",
        "context-frontend": "removed: not in frontend context allowlist",
        "context-other": "removed: context of this origin is not shared",
        "context-nested": "removed: nested value in context",
        # §3.1 hardening
        "nfkc": "normalised (NFKC: a full-width ＠ is an @)",
        "unsafe-name": "withheld: the event name is not an identifier "
        "(letters, digits and _.:/-, 100 at most)",
        "unsafe-type": "withheld: the event type is not a short lower-case word",
        "pii-name": "withheld: the event name or type holds personal data "
        "(e-mail, IP, URL, token, phone or long number)",
        "unsafe-key": "removed: the key is not an identifier "
        "(letters, digits, _ and -, 64 at most)",
        "long-number": "removed: an integer of 9 or more digits is an identifier or an exact "
        "time, not a count",
        "rounded": "rounded to 4 significant digits",
        "shape-lang": "removed: not a language tag (e.g. en, zh_CN)",
        "shape-auth-backend": "removed: not a short lower-case word",
        "shape-route": "removed: not a route name (no query, no fragment)",
        "shape-uuid": "removed: not a canonical UUID",
        "shape-version": "removed: not a version",
        "shape-number": "removed: screen sizes are numbers",
        "shape-plain": "removed: not short plain text (64 letters, digits, spaces and ._:/-)",
        "shape-enum": "removed: not a short identifier (site policy kind enum)",
        "shape-identifier": "removed: not an identifier (site policy kind identifier)",
        "user-agent": "reduced to browser family, major version and OS family",
        "user-agent-unknown": "removed: not a recognised user agent",
        "public-uri": "reduced to scheme://host[:port]",
        "pii-email": "removed: holds an e-mail address",
        "pii-url": "removed: holds a URL with user info, a query or a fragment",
        "pii-token": "removed: holds a token (JWT, key or other long opaque string)",
        "pii-digits": "removed: holds 9 or more digits in a row",
        "pii-ip": "removed: holds an IP address",
        "pii-phone": "removed: holds a phone number",
        "profile-daily-hash": "replaced by a daily pseudonym (HMAC under a key of the UTC day)",
        "profile-drop": "replaced by the zero UUID (site policy: profile-id = drop)",
        "site-drop-event": "withheld: the site policy drops this event",
        "site-strict-event": "withheld: the strict site policy does not list this event",
        "site-drop-key": "removed: the site policy drops this key",
        "site-strict-key": "removed: the strict site policy does not list this key",
    },
)

POLICY_VERSION: int = POLICY.version
POLICY_FINGERPRINT: str = hashlib.sha256(
    orjson.dumps(POLICY.table(), option=orjson.OPT_SORT_KEYS)
).hexdigest()

REMOVED = _ap.REMOVED
ALTERED = _ap.ALTERED
WITHHELD = _ap.WITHHELD


@dataclass(frozen=True, slots=True)
class Change:
    """What the policy did to one field of a row (``props.email``, ``ip_addr`` ...)."""

    field: str
    action: str  # "removed" | "altered" | "withheld" (field "name": no telemetry copy)
    rule: str  # the rule in words
    before: Any
    after: Any
    rule_id: str = dc_field(default="", compare=False)  # the key of ``POLICY.rules``


@dataclass(frozen=True, slots=True)
class Explanation:
    original: AuditRow
    shared: AuditRow | None  # None: the event is withheld (see ``withheld``)
    changes: list[Change]
    withheld: str | None = None  # the drop reason when no telemetry copy is made

    @property
    def kept(self) -> list[str]:
        """Paths of the props/context keys shared unchanged."""
        if self.shared is None:
            return []
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
    """The domain of an RFC 5322 mailbox (after its last ``@``), when a valid host name."""
    return mailbox_domain(value)


def origin_of(source: str) -> str:
    """``backend`` for ``backend`` and ``telemetry:backend``."""
    if source.startswith(TELEMETRY_SOURCE_PREFIX):
        return source[len(TELEMETRY_SOURCE_PREFIX) :]
    return source


def props_rule(source: str, type_: str, name: str, policy: Policy = POLICY) -> str:
    """Which §3 props rule the table names: ``identify``, ``pass-through``, ``navigate``
    or ``generic``. (A pass-through event not made by the daemon gets ``generic``: §3.1.)"""
    return _ap.props_rule(policy, origin_of(source), type_, name)


def ships_strings(source: str, type_: str, name: str) -> bool:
    """True when the event's props ship as strings, UUID-shaped ones included (navigate,
    as the reference does); the batch encoder asks."""
    return props_rule(source, type_, name) == "navigate"


def withheld_reason(
    source: str, type_: str, name: str, *, site: SitePolicy = DEFAULT_SITE
) -> str | None:
    """The drop reason when an event of this source, type and name gets no telemetry
    copy (``unsafe-name``, ``unsafe-type``, ``pii-scan``, ``site-policy``); else None."""
    plan = _ap.plan_for(POLICY, site, source, type_, name, False)
    return plan.withheld


def rule_counts() -> dict[str, int]:
    """Changes made by the ingest path since this process started, by rule id."""
    return dict(_ap.COUNTS)


# ------------------------------------------------------------------ apply


def anonymise(
    row: AuditRow, *, site: SitePolicy = DEFAULT_SITE, trusted: bool = False
) -> AuditRow | None:
    """The telemetry copy of ``row`` (DESIGN §3, §3.1), or None when it is withheld.

    ``trusted``: the daemon made this event itself (its own submit path, never
    a field of the event): only then does a pass-through event pass through.
    """
    return _ap.apply(row, POLICY, site, trusted, _ap.count)


def anonymise_many(
    rows: Sequence[AuditRow], *, site: SitePolicy = DEFAULT_SITE, trusted: bool = False
) -> list[AuditRow | None]:
    """``[anonymise(row) for row in rows]``; a batch's new ids are made at once.

    The rows of one ingest call share their ``created_at`` object, so their
    copies share the day and get consecutive ids of it (list order is id order).
    """
    return _ap.apply_many(rows, POLICY, site, trusted)


def prepare_and_anonymise_frontend(
    events: Sequence[Any],
    *,
    profile_id: uuid.UUID | str,
    ip_addr: str | None,
    now: datetime,
    request_id: uuid.UUID | None,
    site: SitePolicy = DEFAULT_SITE,
) -> tuple[list[AuditRow], list[AuditRow | None]]:
    """``prepare_frontend_events`` and ``anonymise_many`` of its rows, in one pass:
    (full rows, their copies). The ingest hot path of a frontend batch (issue 20)."""
    return policy_frontend.prepare_and_apply_frontend(
        events,
        profile_id=profile_id,
        ip_addr=ip_addr,
        now=now,
        request_id=request_id,
        policy=POLICY,
        site=site,
    )


def explain(
    row: AuditRow, *, site: SitePolicy = DEFAULT_SITE, trusted: bool = False
) -> Explanation:
    """The telemetry copy of ``row`` and, for every field not shared as is, why."""
    raw: list[_ap.Raw] = []
    shared = _ap.apply(row, POLICY, site, trusted, raw.append, explaining=True)
    rules = POLICY.rules
    changes = [
        Change(key_path(part, key) if part else key, action, rules[rule], before, after, rule)
        for part, key, action, rule, before, after in raw
    ]
    withheld = None
    if shared is None:
        withheld = next(POLICY.withholding[c.rule_id] for c in changes if c.action == WITHHELD)
    return Explanation(row, shared, changes, withheld)


__all__ = [
    "ALTERED",
    "POLICY",
    "POLICY_FINGERPRINT",
    "POLICY_VERSION",
    "REMOVED",
    "WITHHELD",
    "Change",
    "Explanation",
    "Policy",
    "anonymise",
    "anonymise_many",
    "clean_email",
    "email_domain",
    "explain",
    "origin_of",
    "prepare_and_anonymise_frontend",
    "props_rule",
    "rule_counts",
    "ships_strings",
    "withheld_reason",
]
