"""What a webhook receives: the event shape, the JSON body and its signature (SPEC §6).

One place builds it, so the daemon's dispatcher, ``AuditLog.submit_many``
(which queues ``webhook_event(row)`` as ``WebhookJob.event``) and
``tuiaudit webhooks test`` cannot disagree.

The event is the audit row without ``source``, ``context``, ``ip_addr`` and
``type``; keys are kebab-case, UUIDs and RFC 3339 timestamps are strings::

    {"id": "…", "name": "…", "profile-id": "…", "props": {…},
     "tracked-at": "2024-05-01T12:00:00.000Z", "created-at": "…"}

When the webhook has a secret the body is signed: ``X-Tuiaudit-Signature:
sha256=<hex HMAC-SHA256 of the exact body bytes>``. A receiver verifies it
with ``verify_signature`` (or the same three lines in any language).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from tuiaudit import __version__
from tuiaudit.storage.base import AuditRow

SIGNATURE_HEADER = "X-Tuiaudit-Signature"
DELIVERY_HEADER = "X-Tuiaudit-Delivery"
EVENT_HEADER = "X-Tuiaudit-Event"

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


def sign(body: bytes, secret: str) -> str:
    """The ``X-Tuiaudit-Signature`` value: ``sha256=<hex>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(body: bytes, secret: str, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret`` (constant time)."""
    if not header:
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())


def delivery_headers(
    body: bytes, *, secret: str | None, delivery_id: int | str, event_name: str | None = None
) -> dict[str, str]:
    """Headers of one delivery POST; signed only when the webhook has a secret."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"tuiaudit/{__version__}",
        DELIVERY_HEADER: str(delivery_id),
    }
    if event_name:
        headers[EVENT_HEADER] = event_name
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    return headers
