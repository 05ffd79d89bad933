"""The archive POST body: ``{"events": [...]}`` of full audit rows (DESIGN §9).

Each event carries the reference's keys ``type, name, source, created-at,
tracked-at, profile-id, ip-addr, props, context`` and also ``id``, so an
archive can drop the duplicate of a chunk re-sent after a crash. Two
encodings:

* ``json`` (the default): ``application/json``, timestamps RFC 3339 UTC with
  microseconds, UUIDs as strings;
* ``transit``: ``application/transit+json`` as the reference sends it
  (Cognitect's transit-python2: keyword keys, ``~u`` UUIDs, ``~m`` instants in
  epoch milliseconds, so sub-millisecond digits are not carried), the format
  a Clojure archive reads with ``transit/read``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from transit.transit_types import Keyword
from transit.writer import Writer

from tuiaudit.storage.base import AuditRow

JSON = "json"
TRANSIT = "transit"


def row_to_event(row: AuditRow) -> dict[str, Any]:
    """One archived event (values as Python objects: UUID, datetime, dicts)."""
    return {
        "id": row.id,
        "type": row.type,
        "name": row.name,
        "source": row.source,
        "created-at": row.created_at,
        "tracked-at": row.tracked_at,
        "profile-id": row.profile_id,
        "ip-addr": row.ip_addr,
        "props": row.props,
        "context": row.context,
    }


def encode_json(rows: Sequence[AuditRow]) -> bytes:
    # orjson writes UUIDs and aware datetimes itself (RFC 3339, "Z" for UTC).
    return orjson.dumps({"events": [row_to_event(r) for r in rows]}, option=orjson.OPT_UTC_Z)


_KEYWORDS: dict[str, Keyword] = {}


def _kw(name: str) -> Keyword:
    found = _KEYWORDS.get(name)
    if found is None:
        found = Keyword(name)
        if len(_KEYWORDS) < 4096:  # props keys are a small vocabulary; stay bounded anyway
            _KEYWORDS[name] = found
    return found


def _clojure(value: Any) -> Any:
    """JSON value -> the Clojure shape the reference archives: keyword-keyed maps."""
    if isinstance(value, dict):
        return {_kw(str(k)): _clojure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clojure(v) for v in value]
    return value


def encode_transit(rows: Sequence[AuditRow]) -> bytes:
    events = [
        {_kw(k): _clojure(v) if k in ("props", "context") else v for k, v in ev.items()}
        for ev in map(row_to_event, rows)
    ]
    out = io.StringIO()
    Writer(out, "json").write({_kw("events"): events})
    return out.getvalue().encode()


@dataclass(frozen=True, slots=True)
class BodyFormat:
    name: str
    content_type: str
    encode: Callable[[Sequence[AuditRow]], bytes]


FORMATS = {
    JSON: BodyFormat(JSON, "application/json", encode_json),
    TRANSIT: BodyFormat(TRANSIT, "application/transit+json", encode_transit),
}

__all__ = ["FORMATS", "JSON", "TRANSIT", "BodyFormat", "encode_json", "encode_transit"]
