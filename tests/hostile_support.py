"""Hostile telemetry blobs for the decoder, receiver and fuzz tests (issue 13)."""

from __future__ import annotations

import orjson

from tuiaudit.codec import blob_frame, fressian_dumps, kw
from tuiaudit.codec import codes as C


def _int(n: int) -> bytes:
    return fressian_dumps(n)


def amplified_fressian(string_bytes: int = 2**20, refs: int = 1000) -> bytes:
    """A list caching one ``string_bytes`` string, then referencing it ``refs`` times."""
    return (
        bytes([C.LIST])
        + _int(refs + 1)
        + bytes([C.PUT_PRIORITY_CACHE, C.STRING])
        + _int(string_bytes)
        + b"a" * string_bytes
        + bytes([C.PRIORITY_CACHE_PACKED_START]) * refs
    )


def empty_lists_fressian(n: int = 8 * 2**20) -> bytes:
    """A list declaring ``n`` empty lists (one byte each: tiny once compressed)."""
    return bytes([C.LIST]) + _int(n) + bytes([C.LIST_PACKED_LENGTH_START]) * n


def deep_fressian(depth: int) -> bytes:
    """``depth`` lists of one item, nested, around a 0."""
    return bytes([C.LIST_PACKED_LENGTH_START + 1]) * depth + b"\x00"


def envelope(fressian: bytes) -> bytes:
    """A ``telemetry-events`` envelope (the POST body) carrying ``fressian``."""
    return orjson.dumps(
        {"type": "telemetry-events", "version": "1", "events": blob_frame(fressian)}
    )


def idless_events_fressian(names: list[str]) -> bytes:
    """Events as the reference's wire format has them: no ``:id``."""
    return fressian_dumps([{kw("name"): n, kw("type"): "action"} for n in names])
