"""Fuzz the Fressian decoder and the blob v4 unframing with damaged real batches.

``test_codec_properties.py`` feeds random bytes and damaged random values; this
damages what actually travels: telemetry batches built by ``tuiaudit.batch``.
Every case must decode or raise ``DecodeError`` (nothing else) and finish within
a watchdog (no hang); decoding garbage twice must retain no memory.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fuzz_support import FUZZ, bounded_memory, watchdog
from hypothesis import given
from hypothesis import strategies as st

from tuiaudit.batch import build_batch
from tuiaudit.codec import DecodeError, blob_frame, decode_blob, decode_envelope
from tuiaudit.codec.blob import blob_unframe
from tuiaudit.codec.reader import decode
from tuiaudit.storage.base import AuditRow

DAY = datetime(2025, 3, 1, tzinfo=UTC)
INTERESTING = [0x00, 0x3F, 0x40, 0x7F, 0x80, 0xA0, 0xC0, 0xC3, 0xCC, 0xCD, 0xCF, 0xD8, 0xD9]
INTERESTING += [0xDA, 0xDB, 0xDC, 0xE0, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xEC, 0xED, 0xEE, 0xEF]
INTERESTING += [0xF0, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF]


def _row(i: int) -> AuditRow:
    return AuditRow(
        id=uuid.UUID(int=(i + 1) * 0x1234567),
        name=["navigate", "create-file", "login-with-password"][i % 3],
        type="action",
        source="telemetry:frontend",
        profile_id=uuid.UUID(int=i + 99),
        ip_addr="0.0.0.0",
        props={"team-id": str(uuid.UUID(int=i)), "n": i * 1001, "ok": i % 2 == 0, "r": 0.5},
        context={"version": "2.4.1", "browser": "firefox", "screen-width": 1920},
        tracked_at=DAY,
        created_at=DAY,
    )


BATCHES = [build_batch([_row(i) for i in range(n)], instance_id=uuid.UUID(int=1), version="1")
           for n in (1, 3, 20)]  # fmt: skip
RAW = [blob_unframe(decode_envelope_blob) for decode_envelope_blob in
       (__import__("orjson").loads(b.body)["events"] for b in BATCHES)]  # fmt: skip


def _decode_or_decode_error(data: bytes) -> None:
    with watchdog(10):
        try:
            decode(data)
        except DecodeError:
            pass


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real batch's Fressian bytes with a few edits: flips, inserts, deletes, splices."""
    data = bytearray(draw(st.sampled_from(RAW)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        elif op == "insert":
            data[at:at] = bytes(draw(st.lists(st.sampled_from(INTERESTING), max_size=8)))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(damaged())
def _fuzz_damaged_fressian(data: bytes) -> None:
    _decode_or_decode_error(data)


def test_damaged_real_batches_decode_or_raise_decode_error() -> None:
    _fuzz_damaged_fressian()


@FUZZ
@given(st.binary(max_size=400) | st.lists(st.sampled_from(INTERESTING), max_size=120).map(bytes))
def _fuzz_random_fressian(data: bytes) -> None:
    _decode_or_decode_error(data)
    with watchdog(10):
        try:
            decode_blob(blob_frame(data))  # the same bytes in a well-framed blob
        except DecodeError:
            pass


def test_random_bytes_decode_or_raise_decode_error() -> None:
    _fuzz_random_fressian()


def test_decoding_garbage_keeps_no_memory() -> None:
    """The same 3,000 damaged inputs twice: the second pass retains (next to) nothing."""
    import random

    rng = random.Random(8)
    corpus = []
    for i in range(3000):
        data = bytearray(RAW[i % len(RAW)])
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice(INTERESTING)
        corpus.append(bytes(data[: rng.randint(1, len(data))]))

    def run() -> None:
        for data in corpus:
            _decode_or_decode_error(data)

    run()  # warm-up: interned keywords, caches
    with bounded_memory(1.0):
        run()


@st.composite
def damaged_blob(draw: st.DrawFn) -> str:
    blob: str = __import__("orjson").loads(draw(st.sampled_from(BATCHES)).body)["events"]
    chars = list(blob)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(chars) - 1))
        op = draw(st.sampled_from(["set", "delete", "insert"]))
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ \n"
        if op == "set":
            chars[at] = draw(st.sampled_from(alphabet))
        elif op == "delete":
            del chars[at : at + draw(st.integers(1, 12))]
        else:
            chars.insert(at, draw(st.sampled_from(alphabet)))
    return "".join(chars)


@FUZZ
@given(damaged_blob())
def _fuzz_damaged_blobs(blob: str) -> None:
    with watchdog(10):
        try:
            decode_blob(blob)
        except DecodeError:
            pass
        try:
            decode_envelope({"type": "telemetry-events", "events": blob})
        except DecodeError:
            pass


def test_damaged_blobs_decode_or_raise_decode_error() -> None:
    _fuzz_damaged_blobs()


def test_the_undamaged_batches_round_trip() -> None:
    for batch in BATCHES:
        assert len(decode_envelope(batch.body)["events"]) == batch.count
