"""Identifiers: the zero UUID, time-ordered UUIDv7, and the canonical UUID-string test.

JSON has no UUID type, so everywhere in tuiaudit a string in canonical
8-4-4-4-12 hex form counts as a UUID value (SPEC §1).
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from datetime import datetime

ZERO_UUID = uuid.UUID(int=0)

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

# RFC 9562 §6.2 method 1: a 42-bit counter (rand_a + the top 30 bits of
# rand_b) keeps ids made within one millisecond in creation order. It is
# seeded randomly for each millisecond, with its top bit clear for headroom.
_COUNTER_BITS = 42
_COUNTER_SEED_MASK = (1 << (_COUNTER_BITS - 1)) - 1
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
_lock = threading.Lock()
_counters: dict[int, int] = {}  # milliseconds -> last counter used
_MAX_TRACKED_MS = 64
_last: tuple[datetime | None, int] = (None, 0)  # the last ``now`` and its milliseconds


def uuid7(now: datetime | None = None) -> uuid.UUID:
    """A new UUIDv7 whose first 48 bits are ``now`` in Unix milliseconds.

    Ids made by this process for the same millisecond are strictly increasing,
    so rows of one batch sort in the order they were prepared.
    """
    global _last
    if now is None:
        ms = time.time_ns() // 1_000_000
    else:
        last = _last  # one tuple, replaced whole: safe across threads
        if now is last[0]:  # a batch stamps every row with the same datetime
            ms = last[1]
        else:
            ms = int(now.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
            _last = (now, ms)
    with _lock:
        tail = _random72()
        counter = _counters.get(ms)
        if counter is None or counter >= _COUNTER_MAX:
            if len(_counters) >= _MAX_TRACKED_MS:
                _counters.clear()
            counter = (tail >> 32) & _COUNTER_SEED_MASK
        else:
            counter += 1
        _counters[ms] = counter
    rand_a = counter >> 30
    rand_b = ((counter & 0x3FFF_FFFF) << 32) | (tail & 0xFFFF_FFFF)
    return uuid_from_int((ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


# os.urandom is a system call; drawing 9 bytes at a time from a pool keeps
# id generation off the ingest profile.
_POOL_SIZE = 9 * 512
_pool = b""
_pool_pos = _POOL_SIZE


def _random72() -> int:
    global _pool, _pool_pos
    if _pool_pos >= _POOL_SIZE:
        _pool = os.urandom(_POOL_SIZE)
        _pool_pos = 0
    pos = _pool_pos
    _pool_pos = pos + 9
    return int.from_bytes(_pool[pos : pos + 9])


_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` without its argument checks (hot path; value is 128-bit)."""
    u = _new(uuid.UUID)
    _set(u, "int", value)
    _set(u, "is_safe", _UNKNOWN)
    return u


def parse_uuid(text: str) -> uuid.UUID:
    """A canonical UUID string (checked by ``is_uuid_string``) as a ``uuid.UUID``."""
    return uuid_from_int(int(text.replace("-", ""), 16))


def is_uuid_string(value: object) -> bool:
    """True for a ``str`` in canonical 8-4-4-4-12 hex form (either case)."""
    return type(value) is str and len(value) == 36 and _UUID_RE.fullmatch(value) is not None


def is_uuid_value(value: object) -> bool:
    """A ``uuid.UUID`` or a canonical UUID string (how the policy sees a UUID)."""
    return isinstance(value, uuid.UUID) or is_uuid_string(value)
