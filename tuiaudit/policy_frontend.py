# cython: language_level=3, annotation_typing=False
"""Frontend ingest in one pass: validation and the policy together (DESIGN §3.1, §8.2).

``prepare_and_apply_frontend`` is ``prepare_frontend_events`` followed by
``policy_apply.apply_many`` for a frontend batch in mode B and C, with each
event's props and context walked once for both (issue 20: the ingest hot
path). It is an optimisation, not a second policy: an event is taken here
only when every check proves it good and every entry is one the policy treats
without a rule of its own; any other event goes the two steps' way
(``FrontendBatch.event``, then ``policy_apply.apply``). Its results (rows,
copies, ids, rule counts, errors) must be those of the two steps:
tests/test_policy_frontend_pass.py compares them on random batches under
several site policies.

``prepare_and_apply_frontend_columns`` makes the stored rows' column tuples in
the same pass (an ingest worker sends them packed: issue 20), with or without
the rows of the events it takes; tests/test_worker_path_json.py compares them
with ``rows_columns`` of the two steps' rows.

Compiled. ``pip install`` builds this file with Cython as the module of the
same name (pyproject.toml), which Python imports in place of the source: the
pass is the ingest workers' largest share of CPU, and compiled it takes 0.86x
the instructions per event of a worker's work (``python bench/ingest_stages.py
--callgrind --paths worker``). The ``# cython:`` line above turns off typing
from annotations, so the compiled module keeps Python's semantics exactly
(an ``int`` stays a Python int, a ``float`` a Python float); the tests run
against whichever module is imported. Where it is not built, this file runs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from operator import is_
from typing import TYPE_CHECKING, Any

import orjson

from tuiaudit.events import (
    FRONTEND_FIELDS,
    FRONTEND_MAX_DELAY,
    FRONTEND_TYPES,
    SOURCE_FRONTEND,
    FrontendBatch,
    fast_timestamp,
)
from tuiaudit.ids import UUID_PATTERN, uuid7_many
from tuiaudit.policy_apply import (
    COUNTS,
    RULE_ID,
    Plan,
    apply,
    compiled,
    created_day,
    plan_for,
    tracked_day_memo,
)
from tuiaudit.policy_fields import (
    EMAIL,
    Compiled,
    KeyPlan,
    Raw,
    Record,
    context_key,
    key_plan,
    text_verdict,
)
from tuiaudit.policy_shapes import round_significant
from tuiaudit.safe_text import has_control
from tuiaudit.site_policy import SitePolicy
from tuiaudit.storage.base import AuditRow, new_row
from tuiaudit.storage.columns import rows_columns, ts_text
from tuiaudit.timeutil import to_rfc3339
from tuiaudit.validation import DEFAULT_IP, RESERVED_PROPS

if TYPE_CHECKING:
    from tuiaudit.policy import Policy

_MEMO_TYPES = frozenset({str, int, bool, type(None)})
"""Value types whose equal values are the same value (not floats: 0.0 == -0.0; with the
types compared too, 1 == 1.0 == True does not count)."""
_MIN_INT = -(1 << 63)  # validation's 64-bit range (the store's integers)
_MAX_INT = (1 << 63) - 1
_WHOLE_MS_UTC = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}\.[0-9]{3}(?:Z|\+00:00)"
).fullmatch
"""A client's timestamp whose ``ts_text`` is its first 23 characters and ``000Z``
(once ``fast_timestamp`` has parsed it: a real date and time, in UTC)."""

Columns = list[tuple[Any, ...]]


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
    rows, shared, _ = _one_pass(
        raws, profile_id, ip_addr, now, request_id, policy, site, max_delay, columns=False
    )
    return rows, shared


def prepare_and_apply_frontend_columns(
    raws: Sequence[Any],
    *,
    profile_id: uuid.UUID | str,
    ip_addr: str | None,
    now: datetime,
    request_id: uuid.UUID | None,
    policy: Policy,
    site: SitePolicy,
    max_delay: timedelta = FRONTEND_MAX_DELAY,
    rows: bool = True,
) -> tuple[list[AuditRow], list[AuditRow | None], Columns | None]:
    """``prepare_and_apply_frontend`` and the stored rows' ``columns.rows_columns``
    tuples, made in the same pass (what an ingest worker sends: issue 20):
    (rows, copies, tuples).

    The tuples are those of the rows as mode B stores them (each full row, then
    its copy unless withheld). They are None where ``rows_columns`` gives None
    or orjson refuses a value. What the pass knows saves most of the work: a
    timestamp's text is the client's own (``_WHOLE_MS_UTC``), a context the
    same as the last event's has the same texts, the profile id and the day
    are made into text once.

    ``rows`` False: the rows and copies of the events taken in one pass are not
    made (the larger part of the cost left: an ingest worker needs the tuples
    only); the lists hold those of the events that took the two steps (a
    withheld copy is one of them). Tuples None then mean that nothing was
    counted: the caller starts again with ``rows`` (new ids are drawn).
    """
    return _one_pass(
        raws,
        profile_id,
        ip_addr,
        now,
        request_id,
        policy,
        site,
        max_delay,
        columns=True,
        make_rows=rows,
    )


def _one_pass(
    raws: Sequence[Any],
    profile_id: uuid.UUID | str,
    ip_addr: str | None,
    now: datetime,
    request_id: uuid.UUID | None,
    policy: Policy,
    site: SitePolicy,
    max_delay: timedelta,
    *,
    columns: bool,
    make_rows: bool = True,
) -> tuple[list[AuditRow], list[AuditRow | None], Columns | None]:
    """The two functions above: ``columns`` says whether the tuples are made,
    ``make_rows`` whether the rows of the events taken in one pass are."""
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
    tracked_day = tracked_day_memo
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
    # columns: the tuples, with an event's index in rows where its rows are still to
    # be made into tuples (an event that took the two steps)
    cols: list[Any] | None = [] if columns else None
    dumps = orjson.dumps
    pid_text = str(batch.pid) if type(batch.pid) is uuid.UUID else None
    two_steps = 0  # events that took the two steps (their tuples are made at the end)
    if pid_text is None:
        cols = None  # rows_columns' answer
        if not make_rows:
            return rows, shared, None
    created_text = ts_text(created)
    day_text = ts_text(day)
    tday_of_text: datetime | None = None
    tday_text = ""
    last_texts: tuple[str, str] | None = None  # the last context's texts (full row, copy)
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
            if cols is not None:
                cols.append(len(rows))
                two_steps += 1
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
            if cols is not None:
                cols.append(len(rows))
                two_steps += 1
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
                props = raw_props.copy()  # (a dict: a method call costs less than dict())

        # context: json_object(clean=False) (every entry as it is), the keys prepare
        # adds, then apply_context
        out_context: dict[str, Any] = {}
        memo_context = False  # this event's context is the memo's (last_context)
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
                out_context = last_out.copy()
                rules.extend(last_rules)
                memo_context = True
                context = raw_context.copy()  # the full row's: every entry as the client sent it
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
                        last_context = raw_context.copy()
                        last_keys, last_types = tuple(last_context), types
                        last_out, last_rules = out_context.copy(), rules[cmark:]
                        last_texts = None  # made below, for the next events
                        memo_context = True
                    context = raw_context.copy()  # the full row's: every entry as sent
        if not ok:
            del rules[mark:]
            if cols is not None:
                cols.append(len(rows))
                two_steps += 1
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
        if make_rows:
            rows.append(
                new_row(
                    ids[i], name, etype, SOURCE_FRONTEND, pid, ip, props, context, tracked, created
                )
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
        if make_rows:
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
        if cols is not None:
            # The same tuples as rows_columns of the two rows just made, with what
            # this pass knows: each text made once per request where it can be.
            if original is not None:
                tracked_text = created_text
            elif _WHOLE_MS_UTC(ts) is not None:
                tracked_text = ts[:23] + "000Z"
            else:
                tracked_text = ts_text(tracked)
            if tday is not tday_of_text:
                tday_of_text, tday_text = tday, ts_text(tday)
            try:
                # A context the same as the memo's (the same entries: the check above
                # proves it) has the same texts when no original-tracked-at is added
                # (the request id is the batch's).
                if memo_context and original is None and last_texts is not None:
                    context_text, copy_context_text = last_texts
                else:
                    context_text = dumps(context).decode()
                    copy_context_text = dumps(out_context).decode()
                    if memo_context:
                        last_texts = (context_text, copy_context_text) if original is None else None
                props_text = dumps(props).decode()
                copy_props_text = dumps(out_props).decode()
            except TypeError:  # a value orjson refuses (a lone surrogate): rows_params says
                cols = None
                if not make_rows:
                    return rows, shared, None  # (nothing counted yet)
                continue
            cols.append(
                (ids[i], name, etype, SOURCE_FRONTEND, pid_text, ip, props_text, context_text,
                 tracked_text, created_text, None)
            )  # fmt: skip
            cols.append(
                (shared_ids[i], plan.name, plan.type, plan.shared_source, pid_text, DEFAULT_IP,
                 copy_props_text, copy_context_text, tday_text, day_text, None)
            )  # fmt: skip
    batch.check()
    if cols is not None and two_steps:
        cols = _with_two_step_columns(cols, rows, shared)
        if cols is None and not make_rows:
            return rows, shared, None  # (nothing counted yet)
    if changes:
        COUNTS.update(map(RULE_ID, changes))
    if rules:
        COUNTS.update(rules)
    return rows, shared, cols


def _with_two_step_columns(
    cols: list[Any], rows: list[AuditRow], shared: list[AuditRow | None]
) -> Columns | None:
    """``cols`` with each index (of an event that took the two steps) replaced by the
    ``rows_columns`` tuples of its row and copy. Every event of a batch that
    passed has its row (``batch.check``): the index is that of its row in ``rows``."""
    out: Columns = []
    for c in cols:
        if type(c) is int:
            copy = shared[c]
            made = rows_columns([rows[c]] if copy is None else [rows[c], copy])
            if made is None:
                return None
            out.extend(made)
        else:
            out.append(c)
    return out


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
