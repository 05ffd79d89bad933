"""The policy applied to props and context entries (DESIGN §3, §3.1; DESIGN §3).

Called by ``tuiaudit.policy_apply.apply`` for every row: this is the ingest
hot path. What depends only on a key is decided once per event plan and key
(``KeyPlan``: the key as shared, whether a rule removes it, the shape its
text must have), and a kept text's verdict once per (shape, value), so the
loop per entry is a dictionary hit and a type dispatch. Every change goes to
``record`` as ``(part, key, action, rule id, before, after)``.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from tuiaudit.ids import UUID_PATTERN
from tuiaudit.pii_scan import scan
from tuiaudit.policy_shapes import mailbox_domain, nfkc, round_significant, uri_origin
from tuiaudit.policy_shapes import user_agent_family as _reduce_user_agent
from tuiaudit.site_policy import KIND_COUNT, KIND_IDENTIFIER

if TYPE_CHECKING:
    from tuiaudit.policy import Policy

REMOVED = "removed"
ALTERED = "altered"
WITHHELD = "withheld"

Raw = tuple[str, str, str, str, Any, Any]
Record = Callable[[Raw], None]

_UUID_MATCH = UUID_PATTERN.fullmatch
_NESTED = (dict, list, tuple)
_MEMO_MAX = 1 << 14
_SCAN_ONLY = frozenset({"any", "any-version"})
_VERSION_SHAPES = frozenset({"version", "any-version"})
_EXACT_NUMBER = frozenset({KIND_COUNT, KIND_IDENTIFIER})  # site kinds keeping 9+ digits
# Text shapes of a KeyPlan that are not shapes of the table.
EMAIL = "email"  # identify-like: the address, reduced to its domain at the end
CLIENT_DOMAIN = "client-email-domain"  # identify-like: a client-given email-domain


class KeyPlan(NamedTuple):
    """What one key of one event plan decides, whatever the value."""

    key: str  # as shared (NFKC)
    bad: str | None  # the rule id removing the entry whatever its value, or None
    text: str | None  # the shape a text value must have (None: text removed)
    text_rule: str  # the rule id removing a text value when ``text`` is None
    exact: bool  # a site kind keeping numbers exact (count, identifier)
    uuid_only: bool  # non-text values removed (navigate ids)
    nav_rule: str | None  # navigate: the rule removing any value of a key it does not keep
    simple: bool  # shared under the key as sent, no rule on the key: the fast path may keep
    # a boolean, an integer of fewer than long_int_digits digits or a UUID string as is


class Compiled:
    """A policy's regular expressions and memos, built once per policy object."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.shapes = {name: re.compile(p).fullmatch for name, p in policy.shapes.items()}
        self.key_memo: dict[Any, tuple[str, str | None]] = {}
        # shape -> value -> (shared value or None, rule id of the change or None)
        self.text_memo: dict[str, dict[str, tuple[str | None, str | None]]] = {}
        # origin -> key -> (shape, or None and the rule id removing the entry)
        self.context_keys: dict[str, dict[Any, tuple[str | None, str]]] = {}
        # the same for raw (not yet validated) keys; False: validation rejects the key
        self.raw_context_keys: dict[str, dict[Any, tuple[str | None, str] | bool]] = {}
        self.min_long = 10 ** (policy.long_int_digits - 1)


# ------------------------------------------------------------------- keys


def key_verdict(c: Compiled, k: Any) -> tuple[str, str | None]:
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


def key_plan(
    c: Compiled,
    k: Any,
    kind: str,
    keep: dict[str, str],
    drop: frozenset[str],
    strict: bool,
) -> KeyPlan:
    """The ``KeyPlan`` of key ``k`` for an event of props rule ``kind`` and site lists."""
    policy = c.policy
    key, bad = key_verdict(c, k)
    site_kind = keep.get(key)
    if bad is None and key in drop:
        bad = "site-drop-key"
    if bad is None and strict and site_kind is None:
        bad = "site-strict-key"
    text: str | None = None
    text_rule = (
        "identify" if kind == "identify" else "navigate" if kind == "navigate" else "generic"
    )
    if kind == "pass-through":
        text = (
            "uri"
            if key in policy.uri_keys
            else "any-version"
            if key in policy.version_keys
            else "any"
        )
    elif kind == "identify" and key == "email":
        text = EMAIL
    elif kind == "identify" and key == "email-domain":
        text, text_rule = None, "email-domain-client"
    elif (kind == "identify" and key in policy.identify_keep) or (
        kind == "navigate" and key in policy.navigate_keep
    ):
        text = policy.prop_shapes.get(key, "plain")
    elif site_kind is not None and site_kind != KIND_COUNT:
        text = site_kind
    nav_rule = None
    if kind == "navigate" and key not in policy.navigate_keep:
        nav_rule = "navigate"
    uuid_only = kind == "navigate" and policy.prop_shapes.get(key) == "uuid"
    exact = site_kind in _EXACT_NUMBER
    simple = bad is None and nav_rule is None and key == k and not uuid_only and not exact
    return KeyPlan(key, bad, text, text_rule, exact, uuid_only, nav_rule, simple)


# ------------------------------------------------------------------ values


def text_verdict(c: Compiled, shape: str, value: str) -> tuple[str | None, str | None]:
    """A text kept by §3, checked: (the value as shared or None, rule id or None); memoised.

    Shapes besides the table's: ``user-agent`` (reduced), ``uri`` (reduced to
    its origin), ``number`` (no text allowed), ``any`` and ``any-version``
    (pass-through: only the scan). A version may hold a dotted quad.
    """
    memo = c.text_memo.get(shape)
    if memo is None:
        memo = c.text_memo[shape] = {}
    hit = memo.get(value)
    if hit is not None:
        return hit
    s = nfkc(value)
    verdict: tuple[str | None, str | None]
    if shape == "user-agent":
        reduced = _reduce_user_agent(s)
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
    if len(memo) >= _MEMO_MAX:
        memo.clear()
    memo[value] = verdict
    return verdict


def nested_rule(c: Compiled, value: Any, depth: int = 0) -> str | None:
    """For a pass-through nested value: the rule id of its first unsafe part, or None."""
    if depth > 8:
        return "nested"
    is_map = isinstance(value, dict)
    items: Any = value.items() if is_map else enumerate(value)
    for k, v in items:
        if is_map and key_verdict(c, k)[1] is not None:
            return key_verdict(c, k)[1]
        t = type(v)
        if t is str:
            if found := scan(nfkc(v)):
                return "pii-" + found
        elif t is int and (v >= c.min_long or v <= -c.min_long):
            return "long-number"
        elif t is float:
            return "nested"  # a measurement nested in the daemon's own event: not expected
        elif isinstance(v, _NESTED) and (bad := nested_rule(c, v, depth + 1)) is not None:
            return bad
    return None


# ------------------------------------------------------------------- props


def apply_props(
    props: dict[str, Any],
    plans: dict[Any, KeyPlan],
    kind: str,
    keep: dict[str, str],
    drop: frozenset[str],
    strict: bool,
    c: Compiled,
    record: Record,
) -> dict[str, Any]:
    """The props of a telemetry copy; ``plans`` is the event plan's key memo."""
    out: dict[str, Any] = {}
    email: str | None = None
    min_long = c.min_long
    digits = c.policy.float_digits
    text_memo = c.text_memo
    uuid_match = _UUID_MATCH
    for k, v in props.items():
        kp = plans.get(k)
        if kp is None:
            kp = plans[k] = key_plan(c, k, kind, keep, drop, strict)
        t = type(v)
        if kp.simple and (
            t is bool
            or (t is int and -min_long < v < min_long)
            or (t is str and len(v) == 36 and uuid_match(v) is not None)
        ):
            out[k] = v  # what the full walk below does with these values
            continue
        if kp.bad is not None:
            record(("props", k, REMOVED, kp.bad, v, None))
            continue
        if kp.nav_rule is not None:
            record(("props", k, REMOVED, kp.nav_rule, v, None))
            continue
        key = kp.key
        if key is not k and key != k:
            record(("props", k, ALTERED, "nfkc", k, key))
        if t is str:
            if len(v) == 36 and _UUID_MATCH(v) is not None:
                pass  # a UUID: shared (under a navigate key it keeps, below)
            elif kp.text is None:
                record(("props", k, REMOVED, kp.text_rule, v, None))
                continue
            elif kp.text is EMAIL:
                email = v
                continue
            else:
                memo = text_memo.get(kp.text)
                verdict = memo.get(v) if memo is not None else None
                shared, rule = verdict or text_verdict(c, kp.text, v)
                if shared is None:
                    assert rule is not None  # a removal always names its rule
                    record(("props", k, REMOVED, rule, v, None))
                    continue
                if rule is not None:
                    record(("props", k, ALTERED, rule, v, shared))
                v = shared
        elif t is bool:
            pass
        elif t is int:
            if (v >= min_long or v <= -min_long) and not kp.exact:
                record(("props", k, REMOVED, "long-number", v, None))
                continue
        elif t is float and math.isfinite(v):
            if not kp.exact:
                r = round_significant(v, digits)
                if r != v:
                    record(("props", k, ALTERED, "rounded", v, r))
                    v = r
        elif v is None:
            record(("props", k, REMOVED, "null", v, None))
            continue
        elif isinstance(v, _NESTED):
            bad = nested_rule(c, v) if kind == "pass-through" else "nested"
            if bad is not None:
                record(("props", k, REMOVED, bad, v, None))
                continue
        elif t is not uuid.UUID:
            record(("props", k, REMOVED, kp.text_rule, v, None))
            continue
        if kp.uuid_only and t is not str:
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


# ----------------------------------------------------------------- context


def context_key(c: Compiled, origin: str, key: str) -> tuple[str | None, str]:
    """(the shape of the key's values, or None and the rule id removing it)."""
    plans = c.context_keys.get(origin)
    if plans is None:
        plans = c.context_keys[origin] = {}
    hit = plans.get(key)
    if hit is not None:
        return hit
    policy = c.policy
    keep = policy.context_keep.get(origin)
    verdict: tuple[str | None, str]
    if type(key) is not str or "/" in key:
        verdict = (None, "qualified" if type(key) is str else "context-other")
    elif keep is None:
        verdict = (None, "context-other")
    elif key not in keep:
        rule = f"context-{origin}"
        verdict = (None, rule if rule in policy.rules else "context-other")
    else:
        verdict = (policy.context_shapes.get(key, "plain"), "")
    if len(plans) < _MEMO_MAX:
        plans[key] = verdict
    return verdict


def apply_context(
    context: dict[str, Any], origin: str, c: Compiled, record: Record
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    text_memo = c.text_memo
    plans = c.context_keys.get(origin) or {}
    for k, v in context.items():
        shape, rule = plans.get(k) or context_key(c, origin, k)
        if shape is None:
            record(("context", k, REMOVED, rule, v, None))
            continue
        t = type(v)
        if t is str:
            memo = text_memo.get(shape)
            verdict = memo.get(v) if memo is not None else None
            shared, changed = verdict or text_verdict(c, shape, v)
            if shared is None:
                assert changed is not None  # a removal always names its rule
                record(("context", k, REMOVED, changed, v, None))
                continue
            if changed is not None:
                record(("context", k, ALTERED, changed, v, shared))
            out[k] = shared
        elif t is bool or t is uuid.UUID:
            out[k] = v
        elif t is int:
            if v >= c.min_long or v <= -c.min_long:
                record(("context", k, REMOVED, "long-number", v, None))
                continue
            out[k] = v
        elif t is float and math.isfinite(v):
            r = round_significant(v, c.policy.float_digits)
            if r != v:
                record(("context", k, ALTERED, "rounded", v, r))
            out[k] = r
        elif v is None:
            record(("context", k, REMOVED, "null", v, None))
        elif isinstance(v, _NESTED):
            record(("context", k, REMOVED, "context-nested", v, None))
        else:
            record(("context", k, REMOVED, "shape-plain", v, None))
    return out
