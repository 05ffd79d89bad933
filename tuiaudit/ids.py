"""Identifiers: the zero UUID, time-ordered UUIDv7, and the canonical UUID-string test.

JSON has no UUID type, so everywhere in tuiaudit a string in canonical
8-4-4-4-12 hex form counts as a UUID value (SPEC §1).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime

ZERO_UUID = uuid.UUID(int=0)

_HEX = frozenset("0123456789abcdefABCDEF")
_DASHES = (8, 13, 18, 23)

# RFC 9562 §6.2 method 1: a 42-bit counter (rand_a + the top 30 bits of
# rand_b) keeps ids made within one millisecond in creation order. It is
# seeded randomly for each millisecond, with its top bit clear for headroom.
_COUNTER_BITS = 42
_COUNTER_SEED_MASK = (1 << (_COUNTER_BITS - 1)) - 1
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
_lock = threading.Lock()
_counters: dict[int, int] = {}  # milliseconds -> last counter used
_MAX_TRACKED_MS = 64


def uuid7(now: datetime | None = None) -> uuid.UUID:
    """A new UUIDv7 whose first 48 bits are ``now`` in Unix milliseconds.

    Ids made by this process for the same millisecond are strictly increasing,
    so rows of one batch sort in the order they were prepared.
    """
    if now is None:
        ms = time.time_ns() // 1_000_000
    else:
        ms = int(now.timestamp() * 1000)
    ms &= (1 << 48) - 1
    tail = int.from_bytes(os.urandom(9))
    with _lock:
        counter = _counters.get(ms)
        if counter is None or counter >= _COUNTER_MAX:
            if len(_counters) >= _MAX_TRACKED_MS:
                _counters.clear()
            counter = (tail >> 32) & _COUNTER_SEED_MASK
        else:
            counter += 1
        _counters[ms] = counter
    rand_a = counter >> 30
    rand_b = ((counter & ((1 << 30) - 1)) << 32) | (tail & 0xFFFFFFFF)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


def is_uuid_string(value: object) -> bool:
    """True for a ``str`` in canonical 8-4-4-4-12 hex form (either case)."""
    if type(value) is not str or len(value) != 36:
        return False
    for i in _DASHES:
        if value[i] != "-":
            return False
    return value.count("-") == 4 and _HEX.issuperset(value.replace("-", ""))


def is_uuid_value(value: object) -> bool:
    """A ``uuid.UUID`` or a canonical UUID string (how the policy sees a UUID)."""
    return isinstance(value, uuid.UUID) or is_uuid_string(value)
