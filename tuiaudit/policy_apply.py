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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from tuiaudit.ids import ZERO_UUID, uuid7, uuid7_many
from tuiaudit.pii_scan import scan
from tuiaudit.policy_fields import (
    ALTERED,
    REMOVED,
    WITHHELD,
    Compiled,
    KeyPlan,
    Raw,
    Record,
    apply_context,
    apply_props,
)
from tuiaudit.policy_shapes import nfkc
from tuiaudit.site_policy import (
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

__all__ = ["ALTERED", "REMOVED", "WITHHELD", "Raw", "Record"]

COUNTS: Counter[str] = Counter()
"""Changes made by ``count`` (the ingest path), by rule id, since the process started."""


def count(raw: Raw) -> None:
    COUNTS[raw[3]] += 1


RULE_ID = itemgetter(3)  # a Raw change's rule id


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
tracked_day_memo = _DayMemo()
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
    last = tracked_day_memo.last
    tracked = last[1] if dt is last[0] else tracked_day_memo(dt)
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
        COUNTS.update(map(RULE_ID, changes))
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
    tracked_day = tracked_day_memo
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
