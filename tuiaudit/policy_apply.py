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

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import is_, itemgetter
from typing import TYPE_CHECKING, Any

from tuiaudit.events import (
    FRONTEND_FIELDS,
    FRONTEND_MAX_DELAY,
    FRONTEND_TYPES,
    SOURCE_FRONTEND,
    FrontendBatch,
    fast_timestamp,
)
from tuiaudit.ids import UUID_PATTERN, ZERO_UUID, uuid7, uuid7_many
from tuiaudit.pii_scan import scan
from tuiaudit.policy_fields import (
    ALTERED,
    EMAIL,
    REMOVED,
    WITHHELD,
    Compiled,
    KeyPlan,
    Raw,
    Record,
    apply_context,
    apply_props,
    context_key,
    key_plan,
    text_verdict,
)
from tuiaudit.policy_shapes import nfkc, round_significant
from tuiaudit.safe_text import has_control
from tuiaudit.site_policy import (
    PROFILE_DAILY_HASH,
    PROFILE_DROP,
    DailyKeys,
    SitePolicy,
    default_key_dir,
)
from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX, AuditRow, new_row
from tuiaudit.timeutil import to_rfc3339
from tuiaudit.validation import DEFAULT_IP, RESERVED_PROPS

if TYPE_CHECKING:
    from tuiaudit.policy import Policy

__all__ = ["ALTERED", "REMOVED", "WITHHELD", "Raw", "Record"]

_MEMO_TYPES = frozenset({str, int, bool, type(None)})
"""Value types whose equal values are the same value (not floats: 0.0 == -0.0; with the
types compared too, 1 == 1.0 == True does not count)."""
_MIN_INT = -(1 << 63)  # validation's 64-bit range (the store's integers)
_MAX_INT = (1 << 63) - 1

COUNTS: Counter[str] = Counter()
"""Changes made by ``count`` (the ingest path), by rule id, since the process started."""


def count(raw: Raw) -> None:
    COUNTS[raw[3]] += 1


_RULE = itemgetter(3)


# ------------------------------------------------------------------ plans

_compiled: dict[int, Compiled] = {}


def compiled(policy: Policy) -> Compiled:
    hit = _compiled.get(id(policy))
    if hit is None or hit.policy is not policy:
        hit = _compiled[id(policy)] = Compiled(policy)
    return hit


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
    compiled: Compiled
    keys: dict[Any, KeyPlan] = field(default_factory=dict)  # per key, built on first use
    # prepare_and_apply_frontend: per raw props key, its KeyPlan when the combined
    # path may take it, True when validation drops it (reserved), False otherwise.
    raw_keys: dict[str, KeyPlan | bool] = field(default_factory=dict)


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
    return plan


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
        compiled=c,
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
    c = plan.compiled
    props = row.props
    if props:
        keys = plan.keys
        if len(keys) > 4096:  # keys are a vocabulary; never let odd ones pile up
            keys.clear()
        props = apply_props(props, keys, plan.kind, plan.keep, plan.drop, plan.strict, c, record)
    else:
        props = {}
    context = apply_context(row.context, plan.origin, c, record) if row.context else {}

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
    """``apply`` for a batch; the changes are counted by rule once, at the end."""
    if not rows:
        return []
    changes: list[Raw] = []
    record = changes.append  # a C call per change; counted in one pass below
    first = rows[0].created_at
    if any(r.created_at is not first for r in rows):
        out = [apply(r, policy, site, trusted, record) for r in rows]
    else:
        created = created_day(first)
        ids = uuid7_many(created, len(rows))
        out = _apply_batch(rows, ids, created, policy, site, trusted, record)
    if changes:
        COUNTS.update(map(_RULE, changes))
    return out


def _apply_batch(
    rows: Sequence[AuditRow],
    ids: Sequence[uuid.UUID],
    created: datetime,
    policy: Policy,
    site: SitePolicy,
    trusted: bool,
    record: Record,
) -> list[AuditRow | None]:
    """``apply`` for rows sharing one ``created_at`` (its day: ``created``), inlined.

    The same steps as ``apply`` in the same order; what a batch's rows share is
    looked up once: the plan of a run of rows with the same (source, type,
    name), the created day, the site's profile-id rule. A row whose
    plan changes its name or withholds it, or a site rule on the profile id,
    goes through ``apply`` itself.
    """
    out: list[AuditRow | None] = []
    append = out.append
    if site.profile_id != "keep":
        for row, new_id in zip(rows, ids, strict=True):
            append(apply(row, policy, site, trusted, record, new_id=new_id))
        return out
    c = compiled(policy)
    plan: Plan | None = None
    source = type_ = name = ""
    tracked_day = _tracked_day
    for row, new_id in zip(rows, ids, strict=True):
        if plan is None or row.name != name or row.type != type_ or row.source != source:
            source, type_, name = row.source, row.type, row.name
            plan = plan_for(policy, site, source, type_, name, trusted)
            keys = plan.keys
            if len(keys) > 4096:  # as in apply
                keys.clear()
        if plan.head:
            append(apply(row, policy, site, trusted, record, new_id=new_id))
            continue
        props = row.props
        if props:
            props = apply_props(
                props, plan.keys, plan.kind, plan.keep, plan.drop, plan.strict, c, record
            )
        else:
            props = {}
        context = row.context
        context = apply_context(context, plan.origin, c, record) if context else {}
        dt = row.tracked_at
        last = tracked_day.last
        tracked = last[1] if dt is last[0] else tracked_day(dt)
        append(
            new_row(
                new_id,
                plan.name,
                plan.type,
                plan.shared_source,
                row.profile_id,
                DEFAULT_IP,
                props,
                context,
                tracked,
                created,
            )
        )
    return out


# --------------------------------------------------- frontend, in one pass


def prepare_and_apply_frontend(
    raws: Sequence[Any],
    *,
    profile_id: uuid.UUID | str,
    ip_addr: str | None,
    now: datetime,
    request_id: uuid.UUID | None,
    policy: Policy,
    site: SitePolicy,
    max_delay: timedelta = FRONTEND_MAX_DELAY,
) -> tuple[list[AuditRow], list[AuditRow | None]]:
    """``prepare_frontend_events`` then ``apply_many(rows, policy, site, False)``, in one pass.

    The ingest hot path of mode B and C (issue 20): validation and the policy
    walk each event's props and context once together instead of once each.
    An event is taken by this combined path only when every check proves it
    good and every entry is one the policy treats without a rule of its own
    (plain keys; strings, booleans, numbers and nulls); any other event gets
    ``FrontendBatch.event`` (validation, with its errors in the same order)
    and then ``apply``, exactly as the two steps do. The rows, their order,
    the copies, their ids (drawn in the same order: the batch's, then the
    copies') and the rule counts are the same; on a bad batch the same
    ``ValidationError`` is raised and nothing is counted. (The one difference:
    a rejected batch has drawn its copies' ids, which only moves the next ids
    of that day's millisecond further on.)
    """
    batch = FrontendBatch(profile_id, ip_addr, now, request_id, max_delay)
    created = batch.created
    n = len(raws)
    ids = uuid7_many(created, n)  # event order is id order
    day = created_day(created)
    shared_ids = uuid7_many(day, n) if n else []
    changes: list[Raw] = []  # the changes of the events that take the two steps
    record = changes.append
    rules: list[str] = []  # the rule ids of the changes made here (all that is counted)
    count = rules.append
    rows: list[AuditRow] = []
    shared: list[AuditRow | None] = []
    fast = site.profile_id == "keep"  # else every copy goes through apply (its profile rule)
    c = compiled(policy)
    text_memo = c.text_memo
    min_long = c.min_long
    digits = policy.float_digits
    uuid_match = UUID_PATTERN.fullmatch
    names = batch.names
    pid, ip, rid, earliest = batch.pid, batch.ip, batch.rid, batch.earliest
    ctx_extra = "request-id" if rid is not None else None
    tracked_day = _tracked_day
    plan: Plan | None = None
    name_: Any = None
    type_: Any = None
    ctx_keys: dict[Any, tuple[str | None, str] | bool] = {}
    # The last context that went through the loop below, with its copy and rule ids
    # (a client sends one context with every event of a request).
    last_keys: tuple[str, ...] | None = None
    last_types: tuple[type, ...] = ()
    last_context: dict[str, Any] = {}
    last_out: dict[str, Any] = {}
    last_rules: list[str] = []
    name: Any
    etype: Any
    raw_props: Any
    raw_context: Any
    n_fields = len(FRONTEND_FIELDS)
    for i, raw in enumerate(raws):
        tracked = None
        if fast and type(raw) is dict and raw.keys() <= FRONTEND_FIELDS:
            if len(raw) == n_fields:  # every field given (subscripts: cheaper than .get)
                name, etype = raw["name"], raw["type"]
                ts, raw_props, raw_context = raw["timestamp"], raw["props"], raw["context"]
            else:
                name, etype = raw.get("name"), raw.get("type")
                ts, raw_props, raw_context = (
                    raw.get("timestamp"),
                    raw.get("props"),
                    raw.get("context"),
                )
            if (
                type(name) is str
                and name in names
                and type(etype) is str
                and etype in FRONTEND_TYPES
            ):
                tracked = fast_timestamp(ts)
        if tracked is None:
            _slow(batch, raw, i, ids[i], shared_ids[i], policy, site, record, rows, shared)
            continue
        if plan is None or name != name_ or etype != type_:
            name_, type_ = name, etype
            plan = plan_for(policy, site, SOURCE_FRONTEND, etype, name, False)
            if len(plan.keys) > 4096 or len(plan.raw_keys) > 4096:  # as in apply
                plan.keys.clear()  # (raw_keys also holds keys validation rejects)
                plan.raw_keys.clear()
            ctx_keys = _raw_context_keys(c, plan.origin)
            last_keys = None
        if plan.head:  # a name changed by NFKC or withheld: apply says how
            _slow(batch, raw, i, ids[i], shared_ids[i], policy, site, record, rows, shared)
            continue
        mark = len(rules)
        original: str | None = None
        if tracked > created or tracked < earliest:
            original = to_rfc3339(tracked)
            tracked = created

        # props: json_object(clean=True), then apply_props, entry by entry (the full
        # row's props are the client's entries as they are, less nulls and reserved keys)
        props: dict[str, Any]
        out_props: dict[str, Any] = {}
        ok = True
        dropped = False
        if raw_props is None:
            props = {}
        elif type(raw_props) is not dict:
            props = {}
            ok = False
        else:
            raw_keys = plan.raw_keys
            for k, v in raw_props.items():
                if v is None:
                    dropped = True
                    continue  # clean: never stored, never seen by the policy
                if type(k) is not str:
                    ok = False
                    break
                try:  # (a subscript is cheaper than .get in the interpreter)
                    kp = raw_keys[k]
                except KeyError:
                    kp = raw_keys[k] = _raw_key_plan(c, plan, k)
                if kp is True:
                    dropped = True
                    continue  # a reserved key: dropped by validation
                if kp is False:
                    ok = False
                    break
                t = type(v)
                if t is str:
                    if len(v) == 36 and uuid_match(v) is not None:
                        out_props[k] = v
                    elif kp.text is None:
                        count(kp.text_rule)
                    elif kp.text is EMAIL:
                        ok = False
                        break
                    else:
                        try:
                            value, rule = text_memo[kp.text][v]
                        except KeyError:
                            value, rule = text_verdict(c, kp.text, v)
                        if value is None:
                            assert rule is not None  # a removal always names its rule
                            count(rule)
                        else:
                            if rule is not None:
                                count(rule)
                            out_props[k] = value
                elif t is bool:
                    out_props[k] = v
                elif t is int:
                    if -min_long < v < min_long:
                        out_props[k] = v
                    elif _MIN_INT <= v <= _MAX_INT:
                        count("long-number")
                    else:
                        ok = False  # validation reports it
                        break
                elif t is float and v - v == 0.0:  # finite
                    r = round_significant(v, digits)
                    if r != v:
                        count("rounded")
                        out_props[k] = r
                    else:
                        out_props[k] = v
                else:
                    ok = False
                    break
            if not ok:
                props = {}
            elif dropped:
                props = {
                    k: v for k, v in raw_props.items() if v is not None and k not in RESERVED_PROPS
                }
            else:
                props = dict(raw_props)

        # context: json_object(clean=False) (every entry as it is), the keys prepare
        # adds, then apply_context
        out_context: dict[str, Any] = {}
        if raw_context is None:
            context: dict[str, Any] = {}
        elif ok:
            if type(raw_context) is not dict or (
                (original is not None and "original-tracked-at" in raw_context)
                or (ctx_extra is not None and ctx_extra in raw_context)
            ):
                ok = False  # the key prepare sets would keep the client's place
            elif (
                last_keys is not None
                and len(raw_context) == len(last_keys)
                and all(map(is_, raw_context, last_keys))
                and tuple(map(type, raw_context.values())) == last_types
                and raw_context == last_context  # compared only once the types are known
            ):
                # the context of the last event that had one, again: its copy and changes
                out_context = dict(last_out)
                rules.extend(last_rules)
            else:
                cmark = len(rules)
                for k, v in raw_context.items():
                    if type(k) is not str:
                        ok = False
                        break
                    try:
                        cp = ctx_keys[k]
                    except KeyError:
                        cp = ctx_keys[k] = _raw_context_key(c, plan.origin, k)
                    if cp is False:
                        ok = False
                        break
                    t = type(v)
                    if not (
                        t is str
                        or t is bool
                        or v is None
                        or (t is int and _MIN_INT <= v <= _MAX_INT)
                        or (t is float and v - v == 0.0)
                    ):
                        ok = False
                        break
                    shape = cp[0]  # type: ignore[index]
                    if t is str and shape is not None:  # apply_context's common step
                        try:
                            value, rule = text_memo[shape][v]
                        except KeyError:
                            value, rule = text_verdict(c, shape, v)
                        if value is None:
                            assert rule is not None  # a removal always names its rule
                            count(rule)
                        else:
                            if rule is not None:
                                count(rule)
                            out_context[k] = value
                    else:
                        _context_entry(c, cp, k, v, t, out_context, count)  # type: ignore[arg-type]
                if ok:
                    types = tuple(map(type, raw_context.values()))
                    if _MEMO_TYPES.issuperset(types):
                        last_context = dict(raw_context)
                        last_keys, last_types = tuple(last_context), types
                        last_out, last_rules = dict(out_context), rules[cmark:]
            context = dict(raw_context)  # the full row's: every entry as the client sent it
        if not ok:
            del rules[mark:]
            _slow(batch, raw, i, ids[i], shared_ids[i], policy, site, record, rows, shared)
            continue
        if original is not None:
            k = "original-tracked-at"
            context[k] = original
            try:
                cp = ctx_keys[k]
            except KeyError:
                cp = ctx_keys[k] = _raw_context_key(c, plan.origin, k)
            _context_entry(c, cp, k, original, str, out_context, count)  # type: ignore[arg-type]
        if ctx_extra is not None:
            context[ctx_extra] = rid
            try:
                cp = ctx_keys[ctx_extra]
            except KeyError:
                cp = ctx_keys[ctx_extra] = _raw_context_key(c, plan.origin, ctx_extra)
            if cp[0] is None:  # type: ignore[index]  # not shared (the rule every request meets)
                count(cp[1])  # type: ignore[index]
            else:
                _context_entry(c, cp, ctx_extra, rid, str, out_context, count)  # type: ignore[arg-type]
        rows.append(
            new_row(ids[i], name, etype, SOURCE_FRONTEND, pid, ip, props, context, tracked, created)
        )
        last = tracked_day.last  # the day memo's hits, inlined (as in apply, and in its range)
        if tracked is last[0]:
            tday = last[1]
        elif (
            tracked.tzinfo is UTC and last[1] <= tracked < last[2] and tracked.fold == last[1].fold
        ):
            tday = last[1]
        else:
            tday = tracked_day(tracked)
        shared.append(
            new_row(
                shared_ids[i],
                plan.name,
                plan.type,
                plan.shared_source,
                pid,
                DEFAULT_IP,
                out_props,
                out_context,
                tday,
                day,
            )
        )
    batch.check()
    if changes:
        COUNTS.update(map(_RULE, changes))
    if rules:
        COUNTS.update(rules)
    return rows, shared


def _slow(
    batch: FrontendBatch,
    raw: Any,
    i: int,
    row_id: uuid.UUID,
    shared_id: uuid.UUID,
    policy: Policy,
    site: SitePolicy,
    record: Record,
    rows: list[AuditRow],
    shared: list[AuditRow | None],
) -> None:
    """One event the two steps' way: the full check, then ``apply``."""
    row = batch.event(raw, i, row_id)
    if row is not None:
        rows.append(row)
        shared.append(apply(row, policy, site, False, record, new_id=shared_id))


def _raw_key_plan(c: Compiled, plan: Plan, k: str) -> KeyPlan | bool:
    """A raw props key: True if validation drops it, its KeyPlan if the combined path
    may take it (a valid key the policy shares as sent, without a rule), else False."""
    if k in RESERVED_PROPS:
        return True
    if not k.isprintable() and has_control(k):
        return False  # validation reports it
    keys = plan.keys
    kp = keys.get(k)
    if kp is None:
        kp = keys[k] = key_plan(c, k, plan.kind, plan.keep, plan.drop, plan.strict)
    return kp if kp.simple else False


def _raw_context_keys(c: Compiled, origin: str) -> dict[Any, tuple[str | None, str] | bool]:
    memo = c.raw_context_keys.get(origin)
    if memo is None or len(memo) > 4096:
        memo = c.raw_context_keys[origin] = {}
    return memo


def _raw_context_key(c: Compiled, origin: str, k: str) -> tuple[str | None, str] | bool:
    """A raw context key: its (shape, rule) as ``apply_context`` sees it, or False when
    validation rejects it."""
    if not k.isprintable() and has_control(k):
        return False
    return context_key(c, origin, k)


def _context_entry(
    c: Compiled,
    plan: tuple[str | None, str],
    k: str,
    v: Any,
    t: type,
    out: dict[str, Any],
    count: Callable[[str], None],
) -> None:
    """``apply_context``'s step for one validated entry (``t`` is ``type(v)``); each
    change's rule id goes to ``count``."""
    shape, rule = plan
    if shape is None:
        count(rule)
    elif t is str:
        memo = c.text_memo.get(shape)
        verdict = memo.get(v) if memo is not None else None
        shared, changed = verdict or text_verdict(c, shape, v)
        if shared is None:
            assert changed is not None  # a removal always names its rule
            count(changed)
            return
        if changed is not None:
            count(changed)
        out[k] = shared
    elif t is bool:
        out[k] = v
    elif t is int:
        if v >= c.min_long or v <= -c.min_long:
            count("long-number")
            return
        out[k] = v
    elif t is float:  # finite: validated
        r = round_significant(v, c.policy.float_digits)
        if r != v:
            count("rounded")
        out[k] = r
    else:  # None
        count("null")
