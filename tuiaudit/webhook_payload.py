"""What a webhook receives: the event shape, the JSON body and its signature (DESIGN §6).

One place builds it, so the daemon's dispatcher, ``AuditLog.submit_many``
(which queues ``webhook_event(row)`` as ``WebhookJob.event``) and
``tuiaudit webhooks test`` cannot disagree.

The event is the audit row without ``source``, ``context``, ``ip_addr`` and
``type``; keys are kebab-case, UUIDs and RFC 3339 timestamps are strings::

    {"id": "…", "name": "…", "profile-id": "…", "props": {…},
     "tracked-at": "2024-05-01T12:00:00.000Z", "created-at": "…"}

When the webhook has a secret the body is signed, Stripe style, with the
time of sending so a receiver can refuse a replayed request (DESIGN §6)::

    X-Tuiaudit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>

A receiver verifies it with ``verify_signature`` (or the few lines of the
README's example in any language). No event data goes into a header: a
header cannot carry control characters, and the body is what is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from tuiaudit import __version__
from tuiaudit.storage.base import AuditRow

SIGNATURE_HEADER = "X-Tuiaudit-Signature"
DELIVERY_HEADER = "X-Tuiaudit-Delivery"
SIGNATURE_TOLERANCE_S = 300
"""How old (or how far ahead) a signature's timestamp may be when verified."""

# Never sent to a webhook, whatever spelling the stored event used.
EXCLUDED_KEYS = frozenset(
    {"source", "context", "ip_addr", "ip-addr", "type", "webhook", "archived_at", "archived-at"}
)
# snake_case spellings accepted from a stored event, mapped to the wire names.
_KEBAB = {"profile_id": "profile-id", "tracked_at": "tracked-at", "created_at": "created-at"}


def rfc3339(value: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix (``2024-05-01T12:00:00.000Z``)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def webhook_event(row: AuditRow | Mapping[str, Any]) -> dict[str, Any]:
    """The event as a webhook receives it, from an audit row or an already-shaped dict.

    Idempotent: shaping a shaped event returns it unchanged, so the dispatcher
    can apply it again to whatever the queue holds.
    """
    if isinstance(row, AuditRow):
        return {
            "id": str(row.id),
            "name": row.name,
            "profile-id": str(row.profile_id),
            "props": _jsonable(row.props),
            "tracked-at": rfc3339(row.tracked_at),
            "created-at": rfc3339(row.created_at),
        }
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in EXCLUDED_KEYS:
            continue
        out[_KEBAB.get(key, key)] = _jsonable(value)
    return out


def encode_body(event: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed (and signed)."""
    return orjson.dumps(webhook_event(event))


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``X-Tuiaudit-Signature`` value: ``t=<timestamp>,v1=<hex>``."""
    signed = str(int(timestamp)).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
    return f"t={int(timestamp)},v1={digest}"


def verify_signature(
    body: bytes,
    secret: str,
    header: str | None,
    *,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when ``header`` signs ``body`` under ``secret`` within ``tolerance_s`` of ``now``.

    Constant-time comparison; any ``v1`` of the header may match (several
    are sent while a secret is rotated).
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False  # too old (a replay?) or from a clock far off
    expected = sign(body, secret, timestamp).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def delivery_headers(
    body: bytes, *, secret: str | None, delivery_id: int | str, timestamp: int | None = None
) -> dict[str, str]:
    """Headers of one delivery POST; signed (at ``timestamp``, default now) with a secret."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"tuiaudit/{__version__}",
        DELIVERY_HEADER: str(delivery_id),
    }
    if secret:
        when = int(time.time()) if timestamp is None else timestamp
        headers[SIGNATURE_HEADER] = sign(body, secret, when)
    return headers
