"""Identifiers: the zero UUID, time-ordered UUIDv7, and the canonical UUID-string test.

JSON has no UUID type, so everywhere in tuiaudit a string in canonical
8-4-4-4-12 hex form counts as a UUID value (DESIGN §1).
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from datetime import datetime

ZERO_UUID = uuid.UUID(int=0)

# The canonical UUID text (DESIGN §1), for callers that test many strings in a loop.
UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

# RFC 9562 §6.2 method 2 (monotonic random): the 74 bits after the version
# and variant are random for the first id of a millisecond and incremented for
# each further id of that millisecond, so ids made in one batch sort in the
# order they were made and only one random draw is paid per millisecond. The
# seed's top bit is clear, leaving 2**73 increments of headroom.
_RAND_BITS = 74
_SEED_MASK = (1 << (_RAND_BITS - 1)) - 1
_RAND_MAX = (1 << _RAND_BITS) - 1
_LOW62 = (1 << 62) - 1
_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)
_lock = threading.Lock()
_last_rand: dict[int, int] = {}  # milliseconds -> last random field used
_MAX_TRACKED_MS = 64
_last: tuple[datetime | None, int] = (None, 0)  # the last ``now`` and its milliseconds


def uuid7(now: datetime | None = None) -> uuid.UUID:
    """A new UUIDv7 whose first 48 bits are ``now`` in Unix milliseconds.

    Ids made by this process for the same millisecond are strictly increasing,
    so rows of one batch sort in the order they were prepared.
    """
    ms = _millis(now)
    with _lock:
        rand = _last_rand.get(ms)
        if rand is None or rand >= _RAND_MAX:
            if len(_last_rand) >= _MAX_TRACKED_MS:
                _last_rand.clear()
            rand = int.from_bytes(os.urandom(10)) & _SEED_MASK
        else:
            rand += 1
        _last_rand[ms] = rand
    return uuid_from_int((ms << 80) | _VERSION_VARIANT | ((rand >> 62) << 64) | (rand & _LOW62))


def uuid7_many(now: datetime, n: int) -> list[uuid.UUID]:
    """``[uuid7(now) for _ in range(n)]``, with one clock read and one lock for the lot.

    A batch's ids: consecutive random fields of one millisecond, so they sort
    in list order, after every id this process made for that millisecond.
    """
    if n <= 0:
        return []
    ms = _millis(now)
    with _lock:
        rand = _last_rand.get(ms)
        if rand is None or rand > _RAND_MAX - n:
            if len(_last_rand) >= _MAX_TRACKED_MS:
                _last_rand.clear()
            first = int.from_bytes(os.urandom(10)) & _SEED_MASK
        else:
            first = rand + 1
        _last_rand[ms] = first + n - 1
    base = (ms << 80) | _VERSION_VARIANT
    low = first & _LOW62
    if low + n > _LOW62:  # the run would carry across the variant bits: one at a time
        return [
            uuid_from_int(base | ((r >> 62) << 64) | (r & _LOW62)) for r in range(first, first + n)
        ]
    start = base | ((first >> 62) << 64) | low
    out: list[uuid.UUID] = []
    append = out.append
    for value in range(start, start + n):
        u = _new(_UUID)
        _set_int(u, value)
        _set_safe(u, _UNKNOWN)
        append(u)
    return out


def _millis(now: datetime | None) -> int:
    global _last
    if now is None:
        return time.time_ns() // 1_000_000
    last = _last  # one tuple, replaced whole: safe across threads
    if now is last[0]:  # a batch stamps every row with the same datetime
        return last[1]
    ms = int(now.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    _last = (now, ms)
    return ms


_new = object.__new__
_UUID = uuid.UUID
# The slot descriptors themselves: UUID forbids attribute assignment, and
# object.__setattr__ would look the descriptor up on every call.
_set_int = uuid.UUID.__dict__["int"].__set__
_set_safe = uuid.UUID.__dict__["is_safe"].__set__
_UNKNOWN = uuid.SafeUUID.unknown


def uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` without its argument checks (hot path; value is 128-bit)."""
    u = _new(_UUID)
    _set_int(u, value)
    _set_safe(u, _UNKNOWN)
    return u


def parse_uuid(text: str) -> uuid.UUID:
    """A canonical UUID string (checked by ``is_uuid_string``) as a ``uuid.UUID``."""
    return uuid_from_int(int(text.replace("-", ""), 16))


def is_uuid_string(value: object) -> bool:
    """True for a ``str`` in canonical 8-4-4-4-12 hex form (either case)."""
    return type(value) is str and len(value) == 36 and UUID_PATTERN.fullmatch(value) is not None


def is_uuid_value(value: object) -> bool:
    """A ``uuid.UUID`` or a canonical UUID string (how the policy sees a UUID)."""
    return isinstance(value, uuid.UUID) or is_uuid_string(value)
