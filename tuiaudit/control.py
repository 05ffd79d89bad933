"""The control queue's protocol: what the dashboard and the CLI may ask a daemon.

A client calls ``store.enqueue_command(kind, args)`` (storage names a queued
request a "command" row); a running daemon claims the row, performs the
action registered for ``kind`` (``tuiaudit.daemon.actions``) and finishes the
row with its result. Both sides meet here: the property that records a pause
and the JSON form of an audit filter carried in ``args`` (DESIGN §8).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Final

from tuiaudit.storage.base import AuditFilter
from tuiaudit.timeutil import parse_timestamp

PAUSED_PROPERTY: Final = "shipping-paused"
"""Server property: true while shipping is paused (set by the pause/resume actions)."""

FILTER_FIELDS: Final = frozenset(
    {"source", "type", "name", "profile-id", "text", "since", "until", "archived"}
)


class ControlError(Exception):
    """A request cannot be performed as asked; the message goes into the row's result."""


def filter_to_json(flt: AuditFilter) -> dict[str, Any]:
    """An ``AuditFilter`` as request args (the inverse of ``filter_from_json``)."""
    out: dict[str, Any] = {}
    for key, value in asdict(flt).items():
        if value is None:
            continue
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        out[key.replace("_", "-")] = value
    return out


def filter_from_json(data: Mapping[str, Any] | None) -> AuditFilter:
    """The ``AuditFilter`` a request carries; ``ControlError`` names a bad field."""
    if not data:
        return AuditFilter()
    if not isinstance(data, Mapping):
        raise ControlError("the filter must be a JSON object")
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("_", "-")
        if key not in FILTER_FIELDS:
            known = ", ".join(sorted(FILTER_FIELDS))
            raise ControlError(f"unknown filter field {raw_key!r}: use {known}")
        if value is None:
            continue
        if key == "profile-id":
            try:
                value = uuid.UUID(str(value))
            except ValueError:
                raise ControlError(f"filter profile-id {value!r} is not a UUID") from None
        elif key in ("since", "until"):
            value = parse_timestamp(value)
        elif key == "archived":  # the dashboard's archived:yes|no (DESIGN §9)
            if not isinstance(value, bool):
                raise ControlError("filter archived must be true or false")
        elif not isinstance(value, str):
            raise ControlError(f"filter {key} must be a string")
        values[key.replace("-", "_")] = value
    return AuditFilter(**values)


def ids_from_args(args: Mapping[str, Any]) -> list[uuid.UUID] | None:
    """The row ids a request names (``{"ids": [...]}``), or None for all rows."""
    ids = args.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list):
        raise ControlError("ids must be a list of UUID strings (or absent for all)")
    try:
        return [uuid.UUID(str(i)) for i in ids]
    except ValueError:
        raise ControlError("ids must be a list of UUID strings") from None
