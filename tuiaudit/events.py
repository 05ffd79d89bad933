"""The event model: validation and preparation of backend and frontend events (DESIGN §1).

Both entry points validate a whole batch before anything is built, and raise
ONE ``ValidationError`` that lists every bad field with its path
(``events[3].props.size``) and reason; the HTTP layer turns it into a JSON
problem and stores nothing. The field checks live in ``tuiaudit.validation``.

This is the ingest hot path. A batch pays once for what its events share:
its ids are reserved in one go (``uuid7_many``), and a profile id, an IP or
a tracked-at text already checked in this batch is not parsed again. Rows are
built without the frozen dataclass ``__init__`` (``new_row``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tuiaudit.ids import ZERO_UUID, uuid7_many
from tuiaudit.storage.base import AuditRow, new_row
from tuiaudit.timeutil import to_rfc3339, truncate_ms
from tuiaudit.validation import (
    DEFAULT_IP,
    MAX_JSON_DEPTH,
    RESERVED_PROPS,
    BatchMemo,
    FieldError,
    ValidationError,
    index_path,
    ip_field,
    json_object,
    json_type,
    key_path,
    memoised,
    normalise_ip,
    server_ip,
    text_field,
    timestamp_field,
    uuid_field,
)

__all__ = [
    "BACKEND_FIELDS",
    "DEFAULT_IP",
    "FRONTEND_FIELDS",
    "FRONTEND_MAX_DELAY",
    "FRONTEND_NAME_PATTERN",
    "FRONTEND_TYPES",
    "MAX_JSON_DEPTH",
    "MAX_NAME_LENGTH",
    "RESERVED_PROPS",
    "SERVER_FIELDS",
    "SOURCE_BACKEND",
    "SOURCE_FRONTEND",
    "WEBHOOK_FIELDS",
    "FieldError",
    "FrontendBatch",
    "Prepared",
    "ValidationError",
    "WebhookMark",
    "index_path",
    "key_path",
    "new_row",
    "normalise_ip",
    "prepare_backend_event",
    "prepare_backend_events",
    "prepare_frontend_events",
]

MAX_NAME_LENGTH = 250
FRONTEND_TYPES = frozenset({"action", "identify", "trigger"})
FRONTEND_MAX_DELAY = timedelta(hours=1)
SOURCE_BACKEND = "backend"
SOURCE_FRONTEND = "frontend"

_FRONTEND_NAME = re.compile(r"[A-Za-z0-9_-]{1,50}")
_fromisoformat = datetime.fromisoformat

# Wire spelling -> canonical field. Kebab-case as in the reference, with the
# snake_case spellings of DESIGN §1 as synonyms.
_BACKEND_KEYS = {
    "id": "id",
    "name": "name",
    "type": "type",
    "profile-id": "profile-id",
    "profile_id": "profile-id",
    "props": "props",
    "context": "context",
    "ip-addr": "ip-addr",
    "ip_addr": "ip-addr",
    "tracked-at": "tracked-at",
    "tracked_at": "tracked-at",
    "webhook": "webhook",
}
_SERVER_KEYS = frozenset({"source", "created-at", "created_at", "archived-at", "archived_at"})
_FRONTEND_KEYS = frozenset({"name", "type", "props", "context", "timestamp"})
_WEBHOOK_KEYS = {
    "batch-key": "batch-key",
    "batch_key": "batch-key",
    "batch-timeout-ms": "batch-timeout-ms",
    "batch_timeout_ms": "batch-timeout-ms",
}


# --------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class WebhookMark:
    """A backend event marked for webhook delivery (DESIGN §6)."""

    batch_key: str | None = None
    batch_timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Prepared:
    row: AuditRow
    webhook: WebhookMark | None = None


_new = object.__new__
_set_row = Prepared.__dict__["row"].__set__
_set_webhook = Prepared.__dict__["webhook"].__set__


def _prepared(row: AuditRow, webhook: WebhookMark | None) -> Prepared:
    p = _new(Prepared)
    _set_row(p, row)
    _set_webhook(p, webhook)
    return p


# ------------------------------------------------------------------ webhook


def _webhook(value: Any, parent: str, key: str, errors: list[FieldError]) -> WebhookMark | None:
    if value is True:
        return WebhookMark()
    if value is False:
        return None
    path = key_path(parent, key)
    if not isinstance(value, Mapping):
        errors.append(
            FieldError(path, 'must be true or {"batch-key": str, "batch-timeout-ms": int}')
        )
        return None
    batch_key: str | None = None
    timeout = 0
    for k, v in value.items():
        canon = _WEBHOOK_KEYS.get(k) if isinstance(k, str) else None
        if canon is None:
            reason = "unknown field (batch-key, batch-timeout-ms)"
            errors.append(FieldError(key_path(path, k), reason))
        elif canon == "batch-key":
            if v is not None and type(v) is not str:
                errors.append(FieldError(key_path(path, k), "must be a string"))
            else:
                batch_key = v
        elif v is not None:
            if type(v) is float and v.is_integer() and abs(v) < 2**63:
                v = int(v)  # JSON has one number type: 398.0 is 398
            if type(v) is not int or not 0 <= v < 2**63:  # the store's integers are int64
                reason = "must be a non-negative 64-bit integer"
                errors.append(FieldError(key_path(path, k), reason))
            else:
                timeout = v
    return WebhookMark(batch_key, timeout)


# ----------------------------------------------------------- backend submit


def prepare_backend_events(
    raws: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    request_id: uuid.UUID | None = None,
    ip_addr: str | None = None,
) -> list[Prepared]:
    """DESIGN §1.1 for a batch; paths are ``events[i].field``. All or nothing."""
    errors: list[FieldError] = []
    created = truncate_ms(now)
    default_ip = server_ip(ip_addr)
    rid = str(request_id) if request_id is not None else None
    ids = uuid7_many(created, len(raws))  # event order is id order
    memo = BatchMemo()
    out = []
    for i, raw in enumerate(raws):
        p = _backend_event(raw, i, ids[i], created, default_ip, rid, memo, errors)
        if p is not None:
            out.append(p)
    if errors:
        raise ValidationError(errors)
    return out


def prepare_backend_event(
    raw: Mapping[str, Any],
    *,
    now: datetime,
    request_id: uuid.UUID | None = None,
    ip_addr: str | None = None,
) -> Prepared:
    """DESIGN §1.1 for one event; paths are the bare field names (``props.size``)."""
    errors: list[FieldError] = []
    rid = str(request_id) if request_id is not None else None
    created = truncate_ms(now)
    (new_id,) = uuid7_many(created, 1)
    p = _backend_event(raw, None, new_id, created, server_ip(ip_addr), rid, BatchMemo(), errors)
    if errors or p is None:
        raise ValidationError(errors)
    return p


def _backend_event(
    raw: Any,
    index: int | None,
    new_id: uuid.UUID,
    created: datetime,
    default_ip: str,
    request_id: str | None,
    memo: BatchMemo,
    errors: list[FieldError],
) -> Prepared | None:
    path = "" if index is None else f"events[{index}]"
    if type(raw) is not dict and not isinstance(raw, Mapping):
        reason = f"an event must be a JSON object, got {json_type(raw)}"
        errors.append(FieldError(path, reason))
        return None
    before = len(errors)
    given: Mapping[str, Any]  # canonical name -> value (None: absent)
    spelled: dict[str, str] = _NO_SYNONYMS  # canonical name -> the synonym used
    if raw.keys() <= _CANONICAL_KEYS:
        given = raw  # the common case: kebab-case names only, nothing to map
    else:
        given, spelled = _canonical_fields(raw, path, errors)

    get = given.get
    name = get("name")
    if type(name) is not str:
        name = text_field(name, path, "name", errors)
    elif not 0 < len(name) <= MAX_NAME_LENGTH:
        errors.append(
            FieldError(key_path(path, "name"), f"must be 1..{MAX_NAME_LENGTH} characters")
        )
    elif not name.isprintable():  # a control character? (DESIGN §8.2)
        name = text_field(name, path, "name", errors)
    type_ = get("type")
    if type(type_) is not str:
        type_ = text_field(type_, path, "type", errors)
    elif not type_:
        errors.append(FieldError(key_path(path, "type"), "must not be empty"))
    elif not type_.isprintable():
        type_ = text_field(type_, path, "type", errors)
    v = get("id")
    row_id = uuid_field(v, path, "id", errors) if v is not None else new_id
    v = get("profile-id")
    # A hit in the batch memo is taken here; anything else goes through the
    # field's check (which remembers a good string for the next event).
    if v is None:
        profile_id = ZERO_UUID
    elif type(v) is not str or (profile_id := memo.uuids.get(v)) is None:  # type: ignore[assignment]
        key = spelled.get("profile-id", "profile-id")
        profile_id = memoised(uuid_field, memo.uuids, v, path, key, errors)
    v = get("ip-addr")
    if v is None:
        ip = default_ip
    elif type(v) is not str or (ip := memo.ips.get(v)) is None:  # type: ignore[assignment]
        ip = memoised(ip_field, memo.ips, v, path, spelled.get("ip-addr", "ip-addr"), errors)
    v = get("tracked-at")
    tracked: datetime | None
    if v is None:
        tracked = created
    elif type(v) is not str or (tracked := memo.timestamps.get(v)) is None:
        key = spelled.get("tracked-at", "tracked-at")
        tracked = memoised(timestamp_field, memo.timestamps, v, path, key, errors)
    v = get("props")
    props = json_object(v, path, "props", errors, clean=True) if v is not None else {}
    v = get("context")
    context = json_object(v, path, "context", errors, clean=False) if v is not None else {}
    v = get("webhook")
    webhook = _webhook(v, path, "webhook", errors) if v is not None else None

    if len(errors) > before:
        return None
    if request_id is not None:
        context["request-id"] = request_id
    row = new_row(
        row_id,
        name,  # type: ignore[arg-type]  # checked above
        type_,  # type: ignore[arg-type]
        SOURCE_BACKEND,
        profile_id,
        ip,
        props,
        context,
        tracked,  # type: ignore[arg-type]
        created,
    )
    return _prepared(row, webhook)


def _canonical_fields(
    raw: Mapping[Any, Any], path: str, errors: list[FieldError]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Map synonyms to canonical names; unknown, server-set and doubled keys are errors."""
    given: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue  # null fields are dropped (DESIGN §1.1)
        canon = _BACKEND_KEYS.get(key) if type(key) is str else None
        if canon is None:
            if key in _SERVER_KEYS:
                reason = "set by the server; remove it from the event"
            else:
                reason = "unknown field (allowed: " + ", ".join(_BACKEND_ALLOWED) + ")"
            errors.append(FieldError(key_path(path, key), reason))
            continue
        if canon in given:
            other = spelled.get(canon, canon)
            errors.append(
                FieldError(key_path(path, key), f"given twice (as {other} and {key}); send one")
            )
            continue
        given[canon] = value
        if key != canon:
            spelled[canon] = key
    return given, spelled


_BACKEND_ALLOWED = tuple(k for k in _BACKEND_KEYS if "_" not in k)
_CANONICAL_KEYS = frozenset(_BACKEND_ALLOWED)
_NO_SYNONYMS: dict[str, str] = {}

# The wire fields as data for the API description (daemon/openapi.py): the
# checks above and the OpenAPI document read the same tables, so they agree.
BACKEND_FIELDS: Mapping[str, str] = _BACKEND_KEYS
"""Every spelling a backend event may use -> its canonical (kebab-case) field."""
SERVER_FIELDS: frozenset[str] = _SERVER_KEYS
"""Fields the server sets; a client sending one gets a 400 naming it."""
FRONTEND_FIELDS: frozenset[str] = _FRONTEND_KEYS
WEBHOOK_FIELDS: Mapping[str, str] = _WEBHOOK_KEYS
FRONTEND_NAME_PATTERN: str = _FRONTEND_NAME.pattern


# ----------------------------------------------------------- frontend batch


def prepare_frontend_events(
    raws: Sequence[Mapping[str, Any]],
    *,
    profile_id: uuid.UUID | str,
    ip_addr: str | None,
    now: datetime,
    request_id: uuid.UUID | None = None,
    max_delay: timedelta = FRONTEND_MAX_DELAY,
) -> list[AuditRow]:
    """DESIGN §1.2: client events ``{name, type, props, timestamp, context?}`` to rows.

    ``tracked_at`` after the request time, or more than ``max_delay`` before
    it, is replaced by the request time; the client's value is kept in
    ``context["original-tracked-at"]``.
    """
    batch = FrontendBatch(profile_id, ip_addr, now, request_id, max_delay)
    ids = uuid7_many(batch.created, len(raws))  # event order is id order
    rows: list[AuditRow] = []
    for i, raw in enumerate(raws):
        row = batch.event(raw, i, ids[i])
        if row is not None:
            rows.append(row)
    batch.check()
    return rows


class FrontendBatch:
    """What a frontend batch's events share, and the full check of one event (DESIGN §1.2).

    ``prepare_frontend_events`` runs ``event`` on each event; the policy's
    combined path (``tuiaudit.policy_frontend.prepare_and_apply_frontend``) runs
    it on each event its own fast path does not prove good, so both report the
    same errors in the same order.
    """

    __slots__ = ("created", "earliest", "errors", "ip", "names", "pid", "rid", "timestamps")

    def __init__(
        self,
        profile_id: uuid.UUID | str,
        ip_addr: str | None,
        now: datetime,
        request_id: uuid.UUID | None,
        max_delay: timedelta,
    ) -> None:
        self.errors: list[FieldError] = []
        self.pid = (
            uuid_field(profile_id, "", "profile-id", self.errors)
            if profile_id is not None
            else ZERO_UUID
        )
        self.created = truncate_ms(now)
        self.earliest = self.created - max_delay
        self.ip = server_ip(ip_addr)
        self.rid = str(request_id) if request_id is not None else None
        self.timestamps: dict[str, datetime | None] = {}
        self.names: set[str] = set()  # names of this batch that passed their check

    def check(self) -> None:
        """Raise the batch's ``ValidationError`` if any event (or the profile id) was bad."""
        if self.errors:
            raise ValidationError(self.errors)

    def event(self, raw: Any, i: int, row_id: uuid.UUID) -> AuditRow | None:
        """The full row of event ``i``, or None when it is bad (its errors are recorded)."""
        errors = self.errors
        path = f"events[{i}]"
        if type(raw) is not dict and not isinstance(raw, Mapping):
            reason = f"an event must be a JSON object, got {json_type(raw)}"
            errors.append(FieldError(path, reason))
            return None
        before = len(errors)
        # Each check below has a fast path taken only when it proves the value good
        # (the common case: a plain name, a listed type, a UTC timestamp in whole
        # milliseconds); anything else goes through the full check, which reports.
        if not raw.keys() <= _FRONTEND_KEYS:
            for key in raw:
                if key not in _FRONTEND_KEYS and raw[key] is not None:
                    reason = "unknown field (allowed: name, type, props, timestamp, context)"
                    errors.append(FieldError(key_path(path, key), reason))
        name = raw.get("name")
        if type(name) is not str or name not in self.names:
            name = text_field(name, path, "name", errors)
            if name is not None:
                if _FRONTEND_NAME.fullmatch(name):
                    self.names.add(name)
                else:
                    reason = "must be 1..50 characters of A-Z a-z 0-9 _ -"
                    errors.append(FieldError(f"{path}.name", reason))
        type_ = raw.get("type")
        if type(type_) is not str or type_ not in FRONTEND_TYPES:
            type_ = text_field(type_, path, "type", errors)
            if type_ is not None and type_ not in FRONTEND_TYPES:
                reason = "must be one of action, identify, trigger"
                errors.append(FieldError(f"{path}.type", reason))
        ts = raw.get("timestamp")
        tracked = fast_timestamp(ts)
        if tracked is not None:
            pass
        elif ts is None:
            errors.append(FieldError(f"{path}.timestamp", "required"))
        else:
            tracked = memoised(timestamp_field, self.timestamps, ts, path, "timestamp", errors)
        v = raw.get("props")
        props = json_object(v, path, "props", errors, clean=True) if v is not None else {}
        v = raw.get("context")
        context = json_object(v, path, "context", errors, clean=False) if v is not None else {}
        if len(errors) > before or tracked is None:
            return None
        created = self.created
        if tracked > created or tracked < self.earliest:
            context["original-tracked-at"] = to_rfc3339(tracked)
            tracked = created
        if self.rid is not None:
            context["request-id"] = self.rid
        return new_row(
            row_id,
            name,  # type: ignore[arg-type]
            type_,  # type: ignore[arg-type]
            SOURCE_FRONTEND,
            self.pid,
            self.ip,
            props,
            context,
            tracked,
            created,
        )


def fast_timestamp(ts: Any) -> datetime | None:
    """``timestamp_field``'s result when it is the parsed value as it is, else None.

    The common case (a UTC timestamp in whole milliseconds) without the
    memo and the error plumbing; None sends the value to the full check.
    """
    if type(ts) is str and 19 <= len(ts) <= 40 and ts[10] in "Tt ":
        # parse_rfc3339's own path when it returns the value as it is.
        try:
            dt = _fromisoformat(ts)
        except ValueError:
            return None
        if dt.tzinfo is UTC and not dt.microsecond % 1000:
            return dt
    return None
