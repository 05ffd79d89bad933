"""Field checks shared by the event entry points: JSON values, UUIDs, IPs, timestamps.

Every check takes the value, the path of its parent and its key, and the
batch's error list; it returns the value to store (converted where needed)
and appends a ``FieldError`` when the value is bad. Paths are built only for
an error (or to descend into a container), so a well-formed event costs cheap
type tests and no string work. ``memoised`` runs a check once per distinct
string of a batch (``BatchMemo``): a batch's events share profile ids and IPs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

from tuiaudit.ids import ZERO_UUID, is_uuid_string, parse_uuid
from tuiaudit.safe_text import escape_controls, has_control
from tuiaudit.timeutil import parse_rfc3339, parse_timestamp

MAX_JSON_DEPTH = 64
CONTROL_REASON = "must not contain control characters (C0, C1 or DEL)"
RESERVED_PROPS = frozenset({"session-id", "password", "old-password", "token"})
DEFAULT_IP = "0.0.0.0"

# Fressian (and the store's JSON encoder) carry signed 64-bit integers.
_MIN_INT = -(1 << 63)
_MAX_INT = (1 << 63) - 1
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


# --------------------------------------------------------------------- errors


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


# ---------------------------------------------------------------- json values


def key_path(base: str, key: object) -> str:
    """``base.key``, or ``base["odd key"]`` when the key is not plain kebab/snake text."""
    if isinstance(key, str) and _SIMPLE_KEY.fullmatch(key):
        return f"{base}.{key}" if base else key
    quoted = orjson.dumps(key).decode() if isinstance(key, str) else repr(key)
    quoted = escape_controls(quoted)  # DEL and C1 pass through JSON's escaping
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
        if not k.isprintable() and has_control(k):  # keys at every depth (DESIGN §8.2)
            errors.append(FieldError(key_path(path, k), "key " + CONTROL_REASON))
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


def json_object(
    value: Any, parent: str, key: str, errors: list[FieldError], *, clean: bool
) -> dict[str, Any]:
    """A top-level ``props``/``context``: a new dict (safe to add keys to).

    With ``clean`` (props), null values and the reserved secret keys are
    dropped before anything else looks at them, so they never reach a row.
    """
    if type(value) is not dict and not isinstance(value, Mapping):
        reason = f"must be a JSON object, got {json_type(value)}"
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
        if not k.isprintable() and has_control(k):
            path = path or key_path(parent, key)
            errors.append(FieldError(key_path(path, k), "key " + CONTROL_REASON))
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


def json_type(value: object) -> str:
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


def uuid_field(value: Any, parent: str, key: str, errors: list[FieldError]) -> uuid.UUID:
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


def ip_field(value: Any, parent: str, key: str, errors: list[FieldError]) -> str:
    if value == DEFAULT_IP:
        return DEFAULT_IP
    ip = normalise_ip(value)
    if ip is None:
        errors.append(FieldError(key_path(parent, key), "must be an IPv4 or IPv6 address"))
        return DEFAULT_IP
    return ip


def server_ip(value: str | None) -> str:
    """The request's client address; not the client's fault when it is odd."""
    if not value or value == DEFAULT_IP:
        return DEFAULT_IP
    return normalise_ip(value) or normalise_ip(value.split("%", 1)[0]) or DEFAULT_IP


def timestamp_field(value: Any, parent: str, key: str, errors: list[FieldError]) -> datetime | None:
    try:
        dt = parse_rfc3339(value) if type(value) is str else parse_timestamp(value)
    except ValueError as exc:
        errors.append(FieldError(key_path(parent, key), str(exc)))
        return None
    us = dt.microsecond % 1000
    return dt.replace(microsecond=dt.microsecond - us) if us else dt


def text_field(value: Any, parent: str, key: str, errors: list[FieldError]) -> str | None:
    if type(value) is str:
        if not value.isprintable() and has_control(value):
            errors.append(FieldError(key_path(parent, key), CONTROL_REASON))
            return None
        return value
    if value is None:
        errors.append(FieldError(key_path(parent, key), "required"))
    else:
        reason = f"must be a string, got {json_type(value)}"
        errors.append(FieldError(key_path(parent, key), reason))
    return None


# ---------------------------------------------------------------- batch memos

T = TypeVar("T")


class BatchMemo:
    """Checked values of this batch, by the client's text: checked once, then shared.

    Only a string that passed its check is remembered, so a bad value is
    checked (and reported, with its own path) every time it appears.
    """

    __slots__ = ("ips", "timestamps", "uuids")

    def __init__(self) -> None:
        self.uuids: dict[str, uuid.UUID] = {}
        self.ips: dict[str, str] = {}
        self.timestamps: dict[str, datetime | None] = {}


def memoised(
    check: Callable[[Any, str, str, list[FieldError]], T],
    memo: dict[str, T],
    value: Any,
    parent: str,
    key: str,
    errors: list[FieldError],
) -> T:
    """``check(value, parent, key, errors)``, remembered in ``memo`` for a string that passed."""
    if type(value) is not str:
        return check(value, parent, key, errors)
    hit = memo.get(value)
    if hit is None:
        before = len(errors)
        hit = check(value, parent, key, errors)
        if len(errors) == before:
            memo[value] = hit
    return hit
