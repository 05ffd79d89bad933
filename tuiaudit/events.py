"""The event model: validation and preparation of backend and frontend events (SPEC §1).

Both entry points validate a whole batch before anything is built, and raise
ONE ``ValidationError`` that lists every bad field with its path
(``events[3].props.size``) and reason; the HTTP layer turns it into a JSON
problem and stores nothing. This is the ingest hot path: checks are cheap type
tests first, a regex or parser only where nothing cheaper works, and nested
values are walked (for depth, non-finite floats and non-JSON types) without
being copied unless something has to be converted.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from storage.base import AuditRow
from tuiaudit.ids import ZERO_UUID, is_uuid_string, parse_uuid, uuid7
from tuiaudit.timeutil import parse_timestamp, to_rfc3339, truncate_ms

MAX_JSON_DEPTH = 64
MAX_NAME_LENGTH = 250
RESERVED_PROPS = frozenset({"session-id", "password", "old-password", "token"})
FRONTEND_TYPES = frozenset({"action", "identify", "trigger"})
FRONTEND_MAX_DELAY = timedelta(hours=1)
DEFAULT_IP = "0.0.0.0"
SOURCE_BACKEND = "backend"
SOURCE_FRONTEND = "frontend"

# Fressian (and the store's JSON encoder) carry signed 64-bit integers.
_MIN_INT = -(1 << 63)
_MAX_INT = (1 << 63) - 1
_FRONTEND_NAME = re.compile(r"[A-Za-z0-9_-]{1,50}")
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")

# Wire spelling -> canonical field. Kebab-case as in the reference, with the
# snake_case spellings of SPEC §1 as synonyms.
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
class FieldError:
    """One bad field: where (``events[3].name``) and why."""

    path: str
    reason: str


class ValidationError(ValueError):
    """A rejected event or batch; ``errors`` holds every bad field of it."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        shown = "; ".join(f"{e.path or '(event)'}: {e.reason}" for e in self.errors[:10])
        more = len(self.errors) - 10
        suffix = f"; and {more} more" if more > 0 else ""
        n = len(self.errors)
        super().__init__(f"{n} invalid field{'s' if n != 1 else ''}: {shown}{suffix}")

    def as_json(self) -> list[dict[str, str]]:
        return [{"path": e.path, "reason": e.reason} for e in self.errors]


@dataclass(frozen=True, slots=True)
class WebhookMark:
    """A backend event marked for webhook delivery (SPEC §6)."""

    batch_key: str | None = None
    batch_timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Prepared:
    row: AuditRow
    webhook: WebhookMark | None = None


# ---------------------------------------------------------------- json values


def key_path(base: str, key: object) -> str:
    """``base.key``, or ``base["odd key"]`` when the key is not plain kebab/snake text."""
    if isinstance(key, str) and _SIMPLE_KEY.fullmatch(key):
        return f"{base}.{key}" if base else key
    quoted = orjson.dumps(key).decode() if isinstance(key, str) else repr(key)
    return f"{base}[{quoted}]"


def index_path(base: str, index: int) -> str:
    return f"{base}[{index}]"


def _join(parent: str, key: object) -> str:
    return index_path(parent, key) if type(key) is int else key_path(parent, key)


# Paths are built only when needed (an error, or descending into a
# container): ``_json`` gets the parent path and the key, not the path.


def _json(value: Any, parent: str, key: object, depth: int, errors: list[FieldError]) -> Any:
    """Check one JSON value; return it (or a converted copy: UUID -> str, tuple -> list)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if _MIN_INT <= value <= _MAX_INT:
            return value
        errors.append(FieldError(_join(parent, key), "integer out of the 64-bit range"))
        return value
    if t is float:
        if value - value == 0.0:  # false for NaN and ±inf
            return value
        reason = "not a finite number (NaN and infinity are not JSON)"
        errors.append(FieldError(_join(parent, key), reason))
        return value
    if t is dict or t is list or t is tuple or isinstance(value, Mapping | list | tuple):
        path = _join(parent, key)
        if depth >= MAX_JSON_DEPTH:
            errors.append(FieldError(path, f"nested deeper than {MAX_JSON_DEPTH} levels"))
            return value
        if isinstance(value, Mapping):
            return _json_map(value, path, depth + 1, errors)
        return _json_list(value, path, depth + 1, errors)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _json(int(value), parent, key, depth, errors)
    if isinstance(value, float):
        return _json(float(value), parent, key, depth, errors)
    if isinstance(value, str):
        return str(value)
    errors.append(FieldError(_join(parent, key), f"not a JSON value (got {t.__name__})"))
    return value


def _plain(v: Any) -> bool:
    """The common values that need no further check (inlined where it matters)."""
    t = type(v)
    return (
        t is str
        or t is bool
        or v is None
        or (t is int and _MIN_INT <= v <= _MAX_INT)
        or (t is float and v - v == 0.0)
    )


def _json_map(value: Mapping[Any, Any], path: str, depth: int, errors: list[FieldError]) -> Any:
    out: dict[str, Any] | None = None if type(value) is dict else {}
    for k, v in value.items():
        if type(k) is not str:
            errors.append(FieldError(key_path(path, k), "object keys must be strings"))
            continue
        tv = type(v)
        if not (
            tv is str
            or tv is bool
            or v is None
            or (tv is int and _MIN_INT <= v <= _MAX_INT)
            or (tv is float and v - v == 0.0)
        ):
            new = _json(v, path, k, depth, errors)
            if new is not v and out is None:
                out = dict(value)
            v = new
        if out is not None:
            out[k] = v
    return value if out is None else out


def _json_list(value: Sequence[Any], path: str, depth: int, errors: list[FieldError]) -> Any:
    out: list[Any] | None = None if type(value) is list else list(value)
    for i, v in enumerate(value):
        if _plain(v):
            continue
        new = _json(v, path, i, depth, errors)
        if new is not v:
            if out is None:
                out = list(value)
            out[i] = new
    return value if out is None else out


def _object(
    value: Any, parent: str, key: str, errors: list[FieldError], *, clean: bool
) -> dict[str, Any]:
    """A top-level ``props``/``context``: a new dict (safe to add keys to).

    With ``clean`` (props), null values and the reserved secret keys are
    dropped before anything else looks at them, so they never reach a row.
    """
    if type(value) is not dict and not isinstance(value, Mapping):
        reason = f"must be a JSON object, got {_json_type(value)}"
        errors.append(FieldError(key_path(parent, key), reason))
        return {}
    out: dict[str, Any] = {}
    path: str | None = None
    for k, v in value.items():
        if clean and (v is None or k in RESERVED_PROPS):
            continue
        tv = type(v)
        if type(k) is not str:
            path = path or key_path(parent, key)
            errors.append(FieldError(key_path(path, k), "object keys must be strings"))
            continue
        if not (
            tv is str
            or tv is bool
            or v is None
            or (tv is int and _MIN_INT <= v <= _MAX_INT)
            or (tv is float and v - v == 0.0)
        ):
            path = path or key_path(parent, key)
            v = _json(v, path, k, 1, errors)
        out[k] = v
    return out


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


# ------------------------------------------------------------ scalar fields
# Each takes the event's path and the key as the client spelled it; the
# field's path is only built for an error.


def _uuid(value: Any, parent: str, key: str, errors: list[FieldError]) -> uuid.UUID:
    if type(value) is str and len(value) == 36 and is_uuid_string(value):
        return parse_uuid(value)
    if isinstance(value, uuid.UUID):
        return value
    errors.append(FieldError(key_path(parent, key), "must be a UUID (8-4-4-4-12 hex digits)"))
    return ZERO_UUID


def normalise_ip(value: object) -> str | None:
    """The canonical text of an IPv4/IPv6 address, None when it is not one."""
    if type(value) is not str:
        return None
    try:
        socket.inet_pton(socket.AF_INET, value)  # strict dotted quad: already canonical
        return value
    except (OSError, ValueError):  # ValueError: an embedded NUL character
        pass
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _ip(value: Any, parent: str, key: str, errors: list[FieldError]) -> str:
    if value == DEFAULT_IP:
        return DEFAULT_IP
    ip = normalise_ip(value)
    if ip is None:
        errors.append(FieldError(key_path(parent, key), "must be an IPv4 or IPv6 address"))
        return DEFAULT_IP
    return ip


def _server_ip(value: str | None) -> str:
    """The request's client address; not the client's fault when it is odd."""
    if not value or value == DEFAULT_IP:
        return DEFAULT_IP
    return normalise_ip(value) or normalise_ip(value.split("%", 1)[0]) or DEFAULT_IP


def _timestamp(value: Any, parent: str, key: str, errors: list[FieldError]) -> datetime | None:
    try:
        dt = parse_timestamp(value)
    except ValueError as exc:
        errors.append(FieldError(key_path(parent, key), str(exc)))
        return None
    us = dt.microsecond % 1000
    return dt.replace(microsecond=dt.microsecond - us) if us else dt


def _text(value: Any, parent: str, key: str, errors: list[FieldError]) -> str | None:
    if type(value) is str:
        return value
    if value is None:
        errors.append(FieldError(key_path(parent, key), "required"))
    else:
        reason = f"must be a string, got {_json_type(value)}"
        errors.append(FieldError(key_path(parent, key), reason))
    return None


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
            if type(v) is not int or v < 0:
                errors.append(FieldError(key_path(path, k), "must be a non-negative integer"))
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
    """SPEC §1.1 for a batch; paths are ``events[i].field``. All or nothing."""
    errors: list[FieldError] = []
    created = truncate_ms(now)
    default_ip = _server_ip(ip_addr)
    rid = str(request_id) if request_id is not None else None
    out = []
    for i, raw in enumerate(raws):
        p = _backend_event(raw, i, created, default_ip, rid, errors)
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
    """SPEC §1.1 for one event; paths are the bare field names (``props.size``)."""
    errors: list[FieldError] = []
    rid = str(request_id) if request_id is not None else None
    p = _backend_event(raw, None, truncate_ms(now), _server_ip(ip_addr), rid, errors)
    if errors or p is None:
        raise ValidationError(errors)
    return p


def _backend_event(
    raw: Any,
    index: int | None,
    created: datetime,
    default_ip: str,
    request_id: str | None,
    errors: list[FieldError],
) -> Prepared | None:
    path = "" if index is None else f"events[{index}]"
    if type(raw) is not dict and not isinstance(raw, Mapping):
        reason = f"an event must be a JSON object, got {_json_type(raw)}"
        errors.append(FieldError(path, reason))
        return None
    before = len(errors)
    given: Mapping[str, Any]  # canonical name -> value (None: absent)
    spelled: dict[str, str] = _NO_SYNONYMS  # canonical name -> the synonym used
    if raw.keys() <= _CANONICAL_KEYS:
        given = raw  # the common case: kebab-case names only, nothing to map
    else:
        given, spelled = _canonical_fields(raw, path, errors)

    name = given.get("name")
    if type(name) is not str:
        name = _text(name, path, "name", errors)
    elif not 0 < len(name) <= MAX_NAME_LENGTH:
        errors.append(
            FieldError(key_path(path, "name"), f"must be 1..{MAX_NAME_LENGTH} characters")
        )
    type_ = given.get("type")
    if type(type_) is not str:
        type_ = _text(type_, path, "type", errors)
    elif not type_:
        errors.append(FieldError(key_path(path, "type"), "must not be empty"))
    get = given.get
    v = get("id")
    row_id = _uuid(v, path, "id", errors) if v is not None else None
    v = get("profile-id")
    profile_id = (
        _uuid(v, path, spelled.get("profile-id", "profile-id"), errors)
        if v is not None
        else ZERO_UUID
    )
    v = get("ip-addr")
    ip = _ip(v, path, spelled.get("ip-addr", "ip-addr"), errors) if v is not None else default_ip
    v = get("tracked-at")
    tracked = (
        _timestamp(v, path, spelled.get("tracked-at", "tracked-at"), errors)
        if v is not None
        else created
    )
    v = get("props")
    props = _object(v, path, "props", errors, clean=True) if v is not None else {}
    v = get("context")
    context = _object(v, path, "context", errors, clean=False) if v is not None else {}
    v = get("webhook")
    webhook = _webhook(v, path, "webhook", errors) if v is not None else None

    if len(errors) > before:
        return None
    if request_id is not None:
        context["request-id"] = request_id
    row = AuditRow(
        row_id or uuid7(created),
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
    return Prepared(row, webhook)


def _canonical_fields(
    raw: Mapping[Any, Any], path: str, errors: list[FieldError]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Map synonyms to canonical names; unknown, server-set and doubled keys are errors."""
    given: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        if value is None:
            continue  # null fields are dropped (SPEC §1.1)
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
    """SPEC §1.2: client events ``{name, type, props, timestamp, context?}`` to rows.

    ``tracked_at`` after the request time, or more than ``max_delay`` before
    it, is replaced by the request time; the client's value is kept in
    ``context["original-tracked-at"]``.
    """
    errors: list[FieldError] = []
    pid = _uuid(profile_id, "", "profile-id", errors) if profile_id is not None else ZERO_UUID
    created = truncate_ms(now)
    earliest = created - max_delay
    ip = _server_ip(ip_addr)
    rid = str(request_id) if request_id is not None else None
    rows: list[AuditRow] = []
    for i, raw in enumerate(raws):
        path = f"events[{i}]"
        if type(raw) is not dict and not isinstance(raw, Mapping):
            reason = f"an event must be a JSON object, got {_json_type(raw)}"
            errors.append(FieldError(path, reason))
            continue
        before = len(errors)
        for key in raw:
            if key not in _FRONTEND_KEYS and raw[key] is not None:
                reason = "unknown field (allowed: name, type, props, timestamp, context)"
                errors.append(FieldError(key_path(path, key), reason))
        name = _text(raw.get("name"), path, "name", errors)
        if name is not None and not _FRONTEND_NAME.fullmatch(name):
            reason = "must be 1..50 characters of A-Z a-z 0-9 _ -"
            errors.append(FieldError(f"{path}.name", reason))
        type_ = _text(raw.get("type"), path, "type", errors)
        if type_ is not None and type_ not in FRONTEND_TYPES:
            errors.append(FieldError(f"{path}.type", "must be one of action, identify, trigger"))
        ts = raw.get("timestamp")
        if ts is None:
            errors.append(FieldError(f"{path}.timestamp", "required"))
            tracked = None
        else:
            tracked = _timestamp(ts, path, "timestamp", errors)
        v = raw.get("props")
        props = _object(v, path, "props", errors, clean=True) if v is not None else {}
        v = raw.get("context")
        context = _object(v, path, "context", errors, clean=False) if v is not None else {}
        if len(errors) > before or tracked is None:
            continue
        if tracked > created or tracked < earliest:
            context["original-tracked-at"] = to_rfc3339(tracked)
            tracked = created
        if rid is not None:
            context["request-id"] = rid
        rows.append(
            AuditRow(
                uuid7(created),
                name,  # type: ignore[arg-type]
                type_,  # type: ignore[arg-type]
                SOURCE_FRONTEND,
                pid,
                ip,
                props,
                context,
                tracked,
                created,
            )
        )
    if errors:
        raise ValidationError(errors)
    return rows
