"""The one function that applies the policy table to a row (DESIGN §3, §3.1).

``apply`` reads ``tuiaudit.policy.POLICY`` (passed in as ``policy``) and the
site policy, and reports every change it makes to ``record`` as a raw tuple
``(part, key, action, rule id, before, after)``; part is "props", "context"
or "" (a row field). ``explain`` records them all; the ingest path passes
``count``, which only counts them by rule id (row-level changes that every
row gets — id, source, ip, day — are reported only when explaining).

Hot path (``apply_many`` runs on every ingest call): what depends only on
an event's (source, type, name) — whether it is withheld, which props rule
applies, the site policy's keep/drop lists for it — is compiled once into a
``Plan`` and cached; verdicts on keys and on kept text values are memoised
(they repeat: a few keys, a few versions, a few routes); ASCII text skips
NFKC; the last scan is a dictionary hit for a string it has seen.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tuiaudit.ids import UUID_PATTERN, ZERO_UUID, uuid7, uuid7_many
from tuiaudit.pii_scan import scan
from tuiaudit.policy_shapes import (
    mailbox_domain,
    nfkc,
    round_significant,
    uri_origin,
    user_agent_family,
)
from tuiaudit.site_policy import (
    KIND_COUNT,
    KIND_IDENTIFIER,
    PROFILE_DAILY_HASH,
    PROFILE_DROP,
    DailyKeys,
    SitePolicy,
    default_key_dir,
)
from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX, AuditRow, new_row
from tuiaudit.validation import DEFAULT_IP

if TYPE_CHECKING:
    from tuiaudit.policy import Policy

REMOVED = "removed"
ALTERED = "altered"
WITHHELD = "withheld"

Raw = tuple[str, str, str, str, Any, Any]
Record = Callable[[Raw], None]

COUNTS: Counter[str] = Counter()
"""Changes made by ``count`` (the ingest path), by rule id, since the process started."""


def count(raw: Raw) -> None:
    COUNTS[raw[3]] += 1


_UUID_MATCH = UUID_PATTERN.fullmatch
_NESTED = (dict, list, tuple)
_NOTHING: frozenset[str] = frozenset()
_MEMO_MAX = 1 << 14
_SCAN_ONLY = frozenset({"any", "any-version"})
_VERSION_SHAPES = frozenset({"version", "any-version"})


# ------------------------------------------------------------------ tables


class _Compiled:
    """A policy's regular expressions and lookups, compiled once per policy object."""

    def __init__(self, policy: Policy) -> None:
        self.shapes = {name: re.compile(p).fullmatch for name, p in policy.shapes.items()}
        self.key_memo: dict[Any, tuple[str, str | None]] = {}
        # (shape, value) -> (shared value or None, rule id of the change or None)
        self.text_memo: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self.min_long = 10 ** (policy.long_int_digits - 1)


_compiled: dict[int, tuple[Policy, _Compiled]] = {}


def compiled(policy: Policy) -> _Compiled:
    hit = _compiled.get(id(policy))
    if hit is None or hit[0] is not policy:
        hit = _compiled[id(policy)] = (policy, _Compiled(policy))
    return hit[1]


def _matches(rules: frozenset[tuple[str, str, str | None]], origin: str, t: str, n: str) -> bool:
    return (origin, t, n) in rules or (origin, t, None) in rules or (origin, "*", n) in rules


def props_rule(policy: Policy, origin: str, type_: str, name: str) -> str:
    if _matches(policy.identify_like, origin, type_, name):
        return "identify"
    if _matches(policy.pass_through, origin, type_, name):
        return "pass-through"
    if _matches(policy.navigate, origin, type_, name):
        return "navigate"
    return "generic"


@dataclass(slots=True)
class Plan:
    """What an event's (source, type, name) alone decides."""

    origin: str
    shared_source: str
    name: str  # as shared (NFKC)
    type: str
    kind: str  # identify | pass-through | navigate | generic
    withheld: str | None  # the drop reason, or None
    head: list[Raw]  # changes to the name/type (NFKC, or the withholding)
    keep: dict[str, str]  # site policy: key -> kind
    drop: frozenset[str]  # site policy: keys never shared
    strict: bool
    text_keys: frozenset[str]  # keys whose text values §3 keeps for this kind


def plan_for(
    policy: Policy, site: SitePolicy, source: str, type_: str, name: str, trusted: bool
) -> Plan:
    key = (id(policy), source, type_, name, trusted)
    plans = site.plans
    plan = plans.get(key)
    if plan is None:
        if len(plans) > 4096:  # names are a vocabulary; never let odd ones pile up
            plans.clear()
        plan = plans[key] = _plan(policy, site, source, type_, name, trusted)
    return plan  # type: ignore[no-any-return]


def _plan(
    policy: Policy, site: SitePolicy, source: str, type_: str, name: str, trusted: bool
) -> Plan:
    c = compiled(policy)
    origin = source[len(TELEMETRY_SOURCE_PREFIX) :] if source.startswith("telemetry:") else source
    n, t = nfkc(name), nfkc(type_)
    head: list[Raw] = []
    if n != name:
        head.append(("", "name", ALTERED, "nfkc", name, n))
    if t != type_:
        head.append(("", "type", ALTERED, "nfkc", type_, t))
    rule: str | None = None
    if n in site.drop_events:
        rule = "site-drop-event"
    elif site.strict and not site.lists_event(n):
        rule = "site-strict-event"
    elif not c.shapes["name"](n):
        rule = "unsafe-name"
    elif not c.shapes["type"](t):
        rule = "unsafe-type"
    elif scan(n) or scan(t):
        rule = "pii-name"
    withheld = None
    if rule is not None:
        withheld = policy.withholding[rule]
        head = [("", "name", WITHHELD, rule, name, None)]
    kind = props_rule(policy, origin, t, n)
    if kind == "pass-through" and not trusted:
        kind = "generic"  # a client's instance-start is any other event (§3.1)
    text_keys = (
        policy.identify_keep
        if kind == "identify"
        else policy.navigate_keep
        if kind == "navigate"
        else _NOTHING
    )
    return Plan(
        origin=origin,
        shared_source=TELEMETRY_SOURCE_PREFIX + origin,
        name=n,
        type=t,
        kind=kind,
        withheld=withheld,
        head=head,
        keep=site.keep_for(n),
        drop=site.dropped_for(n),
        strict=site.strict,
        text_keys=text_keys,
    )


# -------------------------------------------------------------------- days


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
created_day = _DayMemo()
_tracked_day = _DayMemo()
_default_keys: DailyKeys | None = None


def _daily_keys(site: SitePolicy) -> DailyKeys:
    global _default_keys
    if site.daily_keys is not None:
        return site.daily_keys
    if _default_keys is None:
        _default_keys = DailyKeys(default_key_dir())
    return _default_keys


# ------------------------------------------------------------------- apply


def apply(
    row: AuditRow,
    policy: Policy,
    site: SitePolicy,
    trusted: bool,
    record: Record,
    *,
    explaining: bool = False,
    new_id: uuid.UUID | None = None,
) -> AuditRow | None:
    """The telemetry copy of ``row`` (None: withheld); every change goes to ``record``."""
    plan = plan_for(policy, site, row.source, row.type, row.name, trusted)
    if plan.head:
        for raw in plan.head:
            record(raw)
        if plan.withheld is not None:
            return None
    props = _props(row.props, plan, policy, record) if row.props else {}
    context = _context(row.context, plan, policy, record) if row.context else {}

    # The day memos' identity hit, inlined (every row of a batch takes it).
    dt = row.created_at
    last = created_day.last
    created = last[1] if dt is last[0] else created_day(dt)
    dt = row.tracked_at
    last = _tracked_day.last
    tracked = last[1] if dt is last[0] else _tracked_day(dt)
    if new_id is None:
        new_id = uuid7(created)  # its time part is the day, like the timestamps
    profile = row.profile_id
    if site.profile_id != "keep" and profile != ZERO_UUID:
        if site.profile_id == PROFILE_DROP:
            record(("", "profile_id", ALTERED, "profile-drop", profile, ZERO_UUID))
            profile = ZERO_UUID
        elif site.profile_id == PROFILE_DAILY_HASH:
            hashed = _daily_keys(site).pseudonym(profile, created.date())
            record(("", "profile_id", ALTERED, "profile-daily-hash", profile, hashed))
            profile = hashed
    source = row.source
    shared_source = plan.shared_source
    if explaining:
        record(("", "id", ALTERED, "id", row.id, new_id))
        if shared_source != source:
            record(("", "source", ALTERED, "source", source, shared_source))
        if row.ip_addr != DEFAULT_IP:
            record(("", "ip_addr", ALTERED, "ip", row.ip_addr, DEFAULT_IP))
        if tracked != row.tracked_at:
            record(("", "tracked_at", ALTERED, "day", row.tracked_at, tracked))
        if created != row.created_at:
            record(("", "created_at", ALTERED, "day", row.created_at, created))
        if row.archived_at is not None:
            record(("", "archived_at", REMOVED, "archived", row.archived_at, None))
    return new_row(
        new_id,
        plan.name,
        plan.type,
        shared_source,
        profile,
        DEFAULT_IP,
        props,
        context,
        tracked,
        created,
    )


def apply_many(
    rows: Sequence[AuditRow], policy: Policy, site: SitePolicy, trusted: bool
) -> list[AuditRow | None]:
    if not rows:
        return []
    first = rows[0].created_at
    if any(r.created_at is not first for r in rows):
        return [apply(r, policy, site, trusted, count) for r in rows]
    ids = uuid7_many(created_day(first), len(rows))
    return [
        apply(r, policy, site, trusted, count, new_id=i) for r, i in zip(rows, ids, strict=True)
    ]


# ------------------------------------------------------------------- props


def _key(c: _Compiled, k: Any) -> tuple[str, str | None]:
    """(the key as shared, the rule id that removes it or None); memoised."""
    hit = c.key_memo.get(k)
    if hit is not None:
        return hit
    if type(k) is not str:
        verdict: tuple[str, str | None] = (str(k), "unsafe-key")
    elif "/" in k:
        verdict = (k, "qualified")
    else:
        n = nfkc(k)
        if "/" in n:
            verdict = (k, "qualified")
        elif not c.shapes["key"](n):
            verdict = (k, "unsafe-key")
        elif found := scan(n):
            verdict = (k, "pii-" + found)
        else:
            verdict = (n, None)
    if len(c.key_memo) >= _MEMO_MAX:
        c.key_memo.clear()
    c.key_memo[k] = verdict
    return verdict


def _text(c: _Compiled, shape: str, value: str) -> tuple[str | None, str | None]:
    """A text kept by §3, checked: (the value as shared or None, rule id or None); memoised.

    Shapes besides the table's: ``user-agent`` (reduced), ``uri`` (reduced to
    its origin), ``number`` (no text allowed), ``any`` and ``any-version``
    (pass-through: only the scan). A version may hold a dotted quad.
    """
    memo_key = (shape, value)
    hit = c.text_memo.get(memo_key)
    if hit is not None:
        return hit
    s = nfkc(value)
    verdict: tuple[str | None, str | None]
    if shape == "user-agent":
        reduced = user_agent_family(s)
        if reduced is None:
            verdict = (None, "user-agent-unknown")
        elif not c.shapes["plain"](reduced):
            verdict = (None, "shape-plain")
        elif found := scan(reduced):
            verdict = (None, "pii-" + found)
        else:
            verdict = (reduced, "user-agent" if reduced != value else None)
    elif shape == "uri":
        origin = uri_origin(s)
        if origin is None:
            verdict = (None, "public-uri")
        elif found := scan(origin):
            verdict = (None, "pii-" + found)
        else:
            verdict = (origin, "public-uri" if origin != value else None)
    elif shape == "number":
        verdict = (None, "shape-number")
    elif shape not in _SCAN_ONLY and not c.shapes[shape](s):
        verdict = (None, "shape-" + shape)
    elif found := scan(s, version=shape in _VERSION_SHAPES):
        verdict = (None, "pii-" + found)
    else:
        verdict = (s, "nfkc" if s != value else None)
    if len(c.text_memo) >= _MEMO_MAX:
        c.text_memo.clear()
    c.text_memo[memo_key] = verdict
    return verdict


def _number(
    c: _Compiled, policy: Policy, v: int | float, kind: str | None
) -> tuple[int | float | None, str | None]:
    """A number as shared (None: removed) and the rule id of the change."""
    if type(v) is int:
        if (v >= c.min_long or v <= -c.min_long) and kind not in (KIND_COUNT, KIND_IDENTIFIER):
            return None, "long-number"
        return v, None
    if kind == KIND_COUNT:
        return v, None
    r = round_significant(v, policy.float_digits)
    return r, ("rounded" if r != v else None)


def _props(props: dict[str, Any], plan: Plan, policy: Policy, record: Record) -> dict[str, Any]:
    c = compiled(policy)
    kind = plan.kind
    identify = kind == "identify"
    navigate = kind == "navigate"
    passing = kind == "pass-through"
    text_keys = plan.text_keys
    keep, drop, strict = plan.keep, plan.drop, plan.strict
    removed_rule = kind if identify or navigate else "generic"
    out: dict[str, Any] = {}
    email: str | None = None
    for k, v in props.items():
        key, bad = c.key_memo.get(k) or _key(c, k)
        if bad is not None:
            record(("props", k, REMOVED, bad, v, None))
            continue
        if drop and key in drop:
            record(("props", k, REMOVED, "site-drop-key", v, None))
            continue
        site_kind = keep.get(key) if keep else None
        if strict and site_kind is None:
            record(("props", k, REMOVED, "site-strict-key", v, None))
            continue
        if key != k:
            record(("props", k, ALTERED, "nfkc", k, key))
        t = type(v)
        if t is str:
            if len(v) == 36 and _UUID_MATCH(v) is not None:
                pass  # a UUID: shared (navigate only under its four keys, below)
            elif identify and key == "email":
                email = v
                continue
            elif identify and key == "email-domain":
                record(("props", k, REMOVED, "email-domain-client", v, None))
                continue
            else:
                if passing:
                    shape = (
                        "uri"
                        if key in policy.uri_keys
                        else "any-version"
                        if key in policy.version_keys
                        else "any"
                    )
                elif key in text_keys:
                    shape = policy.prop_shapes.get(key, "plain")
                elif site_kind is not None and site_kind != KIND_COUNT:
                    shape = site_kind
                else:
                    record(("props", k, REMOVED, removed_rule, v, None))
                    continue
                shared, rule = c.text_memo.get((shape, v)) or _text(c, shape, v)
                if shared is None:
                    record(("props", k, REMOVED, rule, v, None))
                    continue
                if rule is not None:
                    record(("props", k, ALTERED, rule, v, shared))
                out[key] = shared
                continue
        elif t is bool:
            pass
        elif t is int or (t is float and math.isfinite(v)):
            n, rule = _number(c, policy, v, site_kind)
            if n is None:
                record(("props", k, REMOVED, rule, v, None))
                continue
            if rule is not None:
                record(("props", k, ALTERED, rule, v, n))
                v = n
        elif v is None:
            record(("props", k, REMOVED, "null", v, None))
            continue
        elif isinstance(v, _NESTED):
            bad = _nested_rule(c, v) if passing else "nested"
            if bad is not None:
                record(("props", k, REMOVED, bad, v, None))
                continue
        elif t is not uuid.UUID:
            record(("props", k, REMOVED, removed_rule, v, None))
            continue
        if navigate and key not in policy.navigate_keep:
            record(("props", k, REMOVED, "navigate", v, None))
            continue
        if navigate and t is not str and policy.prop_shapes.get(key) == "uuid":
            record(("props", k, REMOVED, "shape-uuid", v, None))
            continue
        out[key] = v
    if email is not None:
        domain = mailbox_domain(email)
        if domain is None:
            record(("props", "email", REMOVED, "email-no-domain", email, None))
        elif found := scan(domain):
            record(("props", "email", REMOVED, "pii-" + found, email, None))
        else:
            record(("props", "email", ALTERED, "email", email, domain))
            out["email-domain"] = domain
    return out


def _nested_rule(c: _Compiled, value: Any, depth: int = 0) -> str | None:
    """For a pass-through nested value: the rule id of the first unsafe part, or None."""
    if depth > 8:
        return "nested"
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        if isinstance(value, dict):
            _key_shared, bad = _key(c, k)
            if bad is not None:
                return bad
        if type(v) is str:
            s = nfkc(v)
            if found := scan(s):
                return "pii-" + found
        elif type(v) is int and (v >= c.min_long or v <= -c.min_long):
            return "long-number"
        elif type(v) is float:
            return "nested"  # a measurement nested in a trusted event: not expected
        elif isinstance(v, _NESTED):
            bad = _nested_rule(c, v, depth + 1)
            if bad is not None:
                return bad
    return None


# ----------------------------------------------------------------- context


def _context(context: dict[str, Any], plan: Plan, policy: Policy, record: Record) -> dict[str, Any]:
    keep = policy.context_keep.get(plan.origin, _NOTHING)
    c = compiled(policy)
    shapes = policy.context_shapes
    out: dict[str, Any] = {}
    for k, v in context.items():
        if k not in keep or v is None or isinstance(v, _NESTED):
            record(("context", k, REMOVED, _context_rule(k, v, plan.origin, policy), v, None))
            continue
        t = type(v)
        if t is str:
            shape = shapes.get(k, "plain")
            shared, rule = c.text_memo.get((shape, v)) or _text(c, shape, v)
            if shared is None:
                record(("context", k, REMOVED, rule, v, None))
                continue
            if rule is not None:
                record(("context", k, ALTERED, rule, v, shared))
            out[k] = shared
        elif t is bool or t is uuid.UUID:
            out[k] = v
        elif t is int or (t is float and math.isfinite(v)):
            n, rule = _number(c, policy, v, None)
            if n is None:
                record(("context", k, REMOVED, rule, v, None))
                continue
            if rule is not None:
                record(("context", k, ALTERED, rule, v, n))
            out[k] = n
        else:
            record(("context", k, REMOVED, "shape-plain", v, None))
    return out


def _context_rule(key: str, value: Any, origin: str, policy: Policy) -> str:
    """Why a context entry is not shared (the first rule that removes it)."""
    keep = policy.context_keep.get(origin)
    if "/" in key:
        return "qualified"
    if keep is None:
        return "context-other"
    if key not in keep:
        return f"context-{origin}" if f"context-{origin}" in policy.rules else "context-other"
    if value is None:
        return "null"
    return "context-nested"
