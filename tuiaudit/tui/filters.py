"""The dashboard's filter language and time-range presets, as pure functions.

``name:login-with-password source:telemetry:* free text`` becomes an
``AuditFilter``: ``field:value`` tokens set that field (the first colon
splits, so ``source:telemetry:backend`` works), every other word joins the
free text searched in names, sources, types, profile ids, props and context.
``archived:yes`` / ``archived:no`` keeps the rows the audit archive has / has
not taken yet (DESIGN §9).
"""

from __future__ import annotations

import shlex
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from tuiaudit.storage.base import AuditFilter

# Time-range presets: label -> how far back from now (None = all time).
RANGES: dict[str, timedelta | None] = {
    "all": None,
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}

FIELDS = {"name": "name", "source": "source", "type": "type", "profile": "profile_id"}
FIELDS_HELP = (
    "name:X source:X type:X (exact; * matches any text: name:login*) profile:UUID "
    "archived:yes|no, other words: free text"
)
_YES_NO = {"yes": True, "y": True, "true": True, "no": False, "n": False, "false": False}


class FilterError(ValueError):
    """The filter text cannot be used; the message says how to fix it."""


def parse_filter(text: str) -> AuditFilter:
    """Parse the filter input (see the module docstring)."""
    try:
        words = shlex.split(text)
    except ValueError:  # an unbalanced quote while typing: take words as they are
        words = text.split()
    values: dict[str, object] = {}
    free: list[str] = []
    for word in words:
        key, sep, value = word.partition(":")
        if sep and key.lower() == "archived":
            if not value:
                continue  # "archived:" half typed
            if value.lower() not in _YES_NO:
                raise FilterError(f"archived:{value}: use archived:yes or archived:no")
            values["archived"] = _YES_NO[value.lower()]
            continue
        field = FIELDS.get(key.lower()) if sep else None
        if field is None:
            free.append(word)
            continue
        if not value:
            continue  # "name:" half typed
        if field == "profile_id":
            try:
                values[field] = uuid.UUID(value)
            except ValueError:
                raise FilterError(
                    f"profile:{value} is not a UUID (8-4-4-4-12 hex digits)"
                ) from None
        else:
            values[field] = value
    if free:
        values["text"] = " ".join(free)
    return AuditFilter(**values)  # type: ignore[arg-type]


def with_range(flt: AuditFilter, range_name: str, now: datetime) -> AuditFilter:
    """``flt`` limited to the preset ``range_name`` ending at ``now``."""
    span = RANGES[range_name]
    return replace(flt, since=None if span is None else now - span)


def next_range(range_name: str) -> str:
    names = list(RANGES)
    return names[(names.index(range_name) + 1) % len(names)]


def without_text(flt: AuditFilter) -> AuditFilter:
    """The rows a text search goes through: ``flt`` with its other conditions only."""
    return replace(flt, text=None)


def exact_hint(flt: AuditFilter) -> str | None:
    """When a filter found nothing, say that its name:/type: values are exact."""
    exact = [
        f"{label}:{value}"
        for label, value in (("name", flt.name), ("type", flt.type))
        if value is not None and "*" not in value
    ]
    if not exact:
        return None
    return f"{' and '.join(exact)} must match exactly: try {exact[0]}* for a prefix"


def describe(flt: AuditFilter) -> str:
    """A short human summary of a filter, for the count line."""
    parts = [
        f"{label}:{getattr(flt, field)}"
        for label, field in FIELDS.items()
        if getattr(flt, field) is not None
    ]
    if flt.archived is not None:
        parts.append(f"archived:{'yes' if flt.archived else 'no'}")
    if flt.text:
        parts.append(repr(flt.text))
    return " ".join(parts)
