"""The telemetry policy (DESIGN §3): one table of data, one function that applies it.

``POLICY`` is the whole policy: the allowlists, the identify-like and
pass-through events, the navigate keys and the plain-words text of every rule.
``_apply`` is the only code that reads it; ``explain`` returns what it did,
field by field, and ``anonymise`` is ``_apply``'s shared row, so the preview,
the dashboard and the ingest path cannot drift apart (``anonymise`` only skips
recording the changes; ``anonymise_many`` is the batch form ingest calls).
``describe_policy`` prints the same table for the consent screen
(``tuiaudit.policy_words``).

``POLICY_VERSION`` must be raised whenever a change would share more (DESIGN
§7.1); ``POLICY_FINGERPRINT`` hashes the table, and a test pins it per
version, so a table change without a version decision fails loudly.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tuiaudit.events import DEFAULT_IP, key_path
from tuiaudit.ids import UUID_PATTERN, uuid7, uuid7_many
from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX, AuditRow, new_row


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


_Triples = frozenset[tuple[str, str, str | None]]
_UUID_MATCH = UUID_PATTERN.fullmatch
_KEEP_NOTHING: frozenset[str] = frozenset()
_NESTED = (dict, list, tuple)


def _matches(rules: _Triples, source: str, type_: str, name: str) -> bool:
    return (
        (source, type_, name) in rules
        or (source, type_, None) in rules
        or (source, "*", name) in rules
    )


def origin_of(source: str) -> str:
    """``backend`` for ``backend`` and ``telemetry:backend``."""
    if source.startswith(TELEMETRY_SOURCE_PREFIX):
        return source[len(TELEMETRY_SOURCE_PREFIX) :]
    return source


# Placeholder for H1 (issue 11 part A) to replace with the full DESIGN §3.1
# rules (the PII scan of names included); tuiaudit.report counts only names
# for which this returns None. Shape rules only, from DESIGN §3.1.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}")
_SAFE_TYPE = re.compile(r"[a-z][a-z0-9-]{0,31}")


def withheld_reason(source: str, type_: str, name: str) -> str | None:
    """Why an event gets no telemetry copy (a drop reason), or None when it may get one."""
    if not _SAFE_NAME.fullmatch(unicodedata.normalize("NFKC", name)):
        return "unsafe-name"
    if not _SAFE_TYPE.fullmatch(unicodedata.normalize("NFKC", type_)):
        return "unsafe-type"
    return None


_rule_cache: dict[tuple[str, str, str], str] = {}
_origins: dict[str, tuple[str, str]] = {}  # source -> (origin, telemetry source)


def props_rule(source: str, type_: str, name: str, policy: Policy = POLICY) -> str:
    """Which props rule applies: ``identify``, ``pass-through``, ``navigate`` or ``generic``."""
    cache_key = (source, type_, name)
    if policy is POLICY and (hit := _rule_cache.get(cache_key)) is not None:
        return hit
    origin = origin_of(source)
    if _matches(policy.identify_like, origin, type_, name):
        kind = "identify"
    elif _matches(policy.pass_through, origin, type_, name):
        kind = "pass-through"
    elif _matches(policy.navigate, origin, type_, name):
        kind = "navigate"
    else:
        kind = "generic"
    if policy is POLICY:
        if len(_rule_cache) > 4096:
            _rule_cache.clear()
        _rule_cache[cache_key] = kind
    return kind


class _DayMemo:
    """00:00 UTC of a datetime's day, remembering the last day.

    The rows of a batch share their ``created_at`` object, and their
    ``tracked_at`` values mostly fall on one day: such rows get the very same
    day object, which the store then turns into text once per batch.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        # (the last datetime seen, its day, the day after); one tuple, replaced
        # whole, so a reader in another thread never sees a torn memo.
        self.last: tuple[datetime | None, datetime, datetime] = (None, _MAX_UTC, _MAX_UTC)

    def __call__(self, dt: datetime) -> datetime:
        last = self.last
        if dt is last[0]:
            return last[1]
        day = last[1]
        # (fold is meaningless in UTC, but replace() below keeps it: so do we.)
        if dt.tzinfo is UTC and day <= dt < last[2] and dt.fold == day.fold:
            self.last = (dt, day, last[2])  # the next row may share this very object
            return day
        day = dt if dt.tzinfo is UTC else dt.astimezone(UTC)
        if day.hour or day.minute or day.second or day.microsecond:
            day = day.replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            after = day + _ONE_DAY
        except OverflowError:  # the last day datetime can hold: no range, identity only
            after = day
        self.last = (dt, day, after)
        return day


_MAX_UTC = datetime.max.replace(tzinfo=UTC)
_ONE_DAY = timedelta(days=1)
_created_day = _DayMemo()
_tracked_day = _DayMemo()


# ------------------------------------------------------------------- apply

# A change as collected by ``explain``: (part, key, action, rule, before,
# after); part is "props", "context" or "" (a row field). Paths are built
# only by ``explain``; ``anonymise`` records nothing (``record`` is None).
_Raw = tuple[str, str, str, str, Any, Any]
_Record = Callable[[_Raw], None] | None


def _apply(
    row: AuditRow, policy: Policy, record: _Record, new_id: uuid.UUID | None = None
) -> AuditRow:
    """The telemetry copy of ``row``; every change made to get it goes to ``record``."""
    source = row.source
    origins = _origins.get(source)
    if origins is None:
        origin = origin_of(source)
        origins = _origins[source] = (origin, TELEMETRY_SOURCE_PREFIX + origin)
        if len(_origins) > 64:  # sources are a handful; never let odd ones pile up
            _origins.clear()
    origin, shared_source = origins
    kind = props_rule(source, row.type, row.name, policy)
    props = _apply_props(row.props, kind, policy, record) if row.props else {}
    context = _apply_context(row.context, origin, policy, record) if row.context else {}

    # The day memos' identity hit, inlined (every row of a batch takes it).
    dt = row.created_at
    last = _created_day.last
    created = last[1] if dt is last[0] else _created_day(dt)
    dt = row.tracked_at
    last = _tracked_day.last
    tracked = last[1] if dt is last[0] else _tracked_day(dt)
    if new_id is None:
        new_id = uuid7(created)  # its time part is the day, like the timestamps
    if record is not None:
        rules = policy.rules
        record(("", "id", ALTERED, rules["id"], row.id, new_id))
        if shared_source != source:
            record(("", "source", ALTERED, rules["source"], source, shared_source))
        if row.ip_addr != DEFAULT_IP:
            record(("", "ip_addr", ALTERED, rules["ip"], row.ip_addr, DEFAULT_IP))
        if tracked != row.tracked_at:
            record(("", "tracked_at", ALTERED, rules["day"], row.tracked_at, tracked))
        if created != row.created_at:
            record(("", "created_at", ALTERED, rules["day"], row.created_at, created))
        if row.archived_at is not None:
            record(("", "archived_at", REMOVED, rules["archived"], row.archived_at, None))
    return new_row(
        new_id,
        row.name,
        row.type,
        shared_source,
        row.profile_id,
        DEFAULT_IP,
        props,
        context,
        tracked,
        created,
    )


def _apply_props(
    props: dict[str, Any], kind: str, policy: Policy, record: _Record
) -> dict[str, Any]:
    rules = policy.rules
    out: dict[str, Any] = {}
    if kind == "pass-through":
        for k, v in props.items():
            if "/" in k:
                if record is not None:
                    record(("props", k, REMOVED, rules["qualified"], v, None))
            else:
                out[k] = v
        return out
    email: str | None = None
    identify = kind == "identify"
    navigate = kind == "navigate"
    text_keys = (
        policy.identify_keep if identify else policy.navigate_keep if navigate else _KEEP_NOTHING
    )
    removed_text = rules[kind] if identify or navigate else rules["generic"]
    uuid_match = _UUID_MATCH
    for k, v in props.items():
        if "/" in k:
            if record is not None:
                record(("props", k, REMOVED, rules["qualified"], v, None))
            continue
        if identify and k == "email":
            if isinstance(v, str):
                email = v
            elif record is not None:
                record(("props", k, REMOVED, rules["identify"], v, None))
            continue
        # Shared: UUID, boolean or number values (a boolean is not a number,
        # but both are shared). Text (the commonest) is tested first.
        t = type(v)
        if t is str:
            if len(v) != 36 or uuid_match(v) is None:
                if k in text_keys:  # a text under a key allowed to hold one
                    out[k] = v
                elif record is not None:
                    record(("props", k, REMOVED, removed_text, v, None))
                continue
        elif not (t is bool or t is int or (t is float and v - v == 0.0) or t is uuid.UUID):
            if v is None:
                if record is not None:
                    record(("props", k, REMOVED, rules["null"], v, None))
            elif isinstance(v, _NESTED):
                if record is not None:
                    record(("props", k, REMOVED, rules["nested"], v, None))
            elif k in text_keys:  # another scalar under a key allowed to hold text
                out[k] = v
            elif record is not None:
                record(("props", k, REMOVED, removed_text, v, None))
            continue
        if navigate and k not in policy.navigate_keep:
            if record is not None:
                record(("props", k, REMOVED, rules["navigate"], v, None))
        else:
            out[k] = v
    if email is not None:
        domain = email_domain(email)
        if domain:
            if record is not None:
                record(("props", "email", ALTERED, rules["email"], email, domain))
                if "email-domain" in props and out.get("email-domain") != domain:
                    rule = rules["email-domain"]
                    record(("props", "email-domain", ALTERED, rule, props["email-domain"], domain))
            out["email-domain"] = domain
        elif record is not None:
            record(("props", "email", REMOVED, rules["email-no-domain"], email, None))
    return out


def _apply_context(
    context: dict[str, Any], origin: str, policy: Policy, record: _Record
) -> dict[str, Any]:
    keep = policy.context_keep.get(origin, _KEEP_NOTHING)
    out: dict[str, Any] = {}
    for k, v in context.items():
        if k in keep and "/" not in k and v is not None and not isinstance(v, _NESTED):
            out[k] = v
        elif record is not None:
            record(("context", k, REMOVED, _context_rule(k, v, origin, policy), v, None))
    return out


def _context_rule(key: str, value: Any, origin: str, policy: Policy) -> str:
    """Why a context entry is not shared (the first rule that removes it)."""
    rules = policy.rules
    keep = policy.context_keep.get(origin)
    if "/" in key:
        return rules["qualified"]
    if keep is None:
        return rules["context-other"]
    if key not in keep:
        return rules.get(f"context-{origin}", f"removed: not in {origin} context allowlist")
    if value is None:
        return rules["null"]
    return rules["context-nested"]


def anonymise(row: AuditRow) -> AuditRow:
    """The telemetry copy of ``row`` (DESIGN §3): what ``explain(row).shared`` shows."""
    return _apply(row, POLICY, None)


def anonymise_many(rows: Sequence[AuditRow]) -> list[AuditRow]:
    """``[anonymise(row) for row in rows]``; a batch's new ids are made at once.

    The rows of one ingest call share their ``created_at`` object, so their
    copies share the day and get consecutive ids of it (list order is id order).
    """
    if not rows:
        return []
    first = rows[0].created_at
    if any(r.created_at is not first for r in rows):
        return [_apply(r, POLICY, None) for r in rows]
    ids = uuid7_many(_created_day(first), len(rows))
    return [_apply(r, POLICY, None, new_id) for r, new_id in zip(rows, ids, strict=True)]


def explain(row: AuditRow) -> Explanation:
    """The telemetry copy of ``row`` and, for every field not shared as is, why."""
    raw: list[_Raw] = []
    shared = _apply(row, POLICY, raw.append)
    changes = [
        Change(key_path(part, key) if part else key, action, rule, before, after)
        for part, key, action, rule, before, after in raw
    ]
    return Explanation(row, shared, changes)


# ----------------------------------------------------------------- words


def describe_policy(policy: Policy = POLICY) -> str:
    """The policy in plain words, with its version (``tuiaudit consent``, the dashboard)."""
    from tuiaudit.policy_words import describe  # imported here: it reads this module's table

    return describe(policy, POLICY_FINGERPRINT)
