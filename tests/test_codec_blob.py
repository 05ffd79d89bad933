"""Blob v4 framing, base64url, envelopes, and the decoder's limits."""

from __future__ import annotations

import base64
import struct
import tracemalloc
from datetime import UTC, datetime
from uuid import UUID

import orjson
import pytest
import zstandard

from tuiaudit.codec import (
    DecodeError,
    blob_frame,
    decode_blob,
    decode_envelope,
    encode_blob,
    encode_blob_parts,
    fressian_dumps,
    fressian_loads,
    kw,
)
from tuiaudit.codec.blob import b64url_decode, blob_unframe

EVENT = {
    kw("name"): "navigate",
    kw("type"): "action",
    kw("source"): "telemetry:frontend",
    kw("tracked-at"): datetime(2025, 11, 30, tzinfo=UTC),
    kw("profile-id"): UUID(int=0),
    kw("id"): UUID("0193d0a7-0000-7000-8000-000000000001"),
    kw("props"): {kw("file-id"): UUID(int=7), kw("count"): 3, kw("new"): True},
    kw("context"): {kw("version"): "2.4.3", kw("browser"): "firefox"},
}


def frame(version: int, length: int, payload: bytes) -> str:
    raw = struct.pack(">HI", version, length) + payload
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_blob_layout() -> None:
    blob, raw_size = encode_blob_parts([EVENT])
    assert "=" not in blob and "+" not in blob and "/" not in blob
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    version, length = struct.unpack(">HI", raw[:6])
    fressian = zstandard.ZstdDecompressor().decompress(raw[6:])
    assert (version, length, raw_size) == (4, len(fressian), len(fressian))
    assert fressian == fressian_dumps([EVENT])
    assert fressian_loads(fressian) == [EVENT]
    assert decode_blob(blob) == [EVENT]
    assert encode_blob([EVENT]) == blob_frame(fressian_dumps([EVENT]))
    assert decode_blob(blob_frame(fressian_dumps([EVENT]), level=19)) == [EVENT]


def test_blob_decoding_tolerates_padding_whitespace_and_bytes() -> None:
    blob = encode_blob([1, 2, 3])
    padded = blob + "=" * (-len(blob) % 4)
    for form in (padded, f"  {blob}\n", blob.encode(), bytearray(blob.encode())):
        assert decode_blob(form) == [1, 2, 3]  # type: ignore[arg-type]


def test_multi_frame_zstd_payload_is_accepted() -> None:
    data = fressian_dumps("x" * 100)
    cctx = zstandard.ZstdCompressor()
    payload = cctx.compress(data[:40]) + cctx.compress(data[40:])
    assert decode_blob(frame(4, len(data), payload)) == "x" * 100


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        ("", "blob too short: 0 bytes"),
        ("AAQ", "blob too short"),
        ("A", "length is impossible"),
        ("AAQAAA*A", "character is outside"),
        ("AAQAAA+A", "character is outside"),  # standard base64, not URL-safe
        ("AAQAAA/A", "character is outside"),
        ("AAQAAAé", "non-ASCII"),
        (frame(3, 1, b""), "unsupported blob version 3"),
        (frame(0xFFFF, 1, b""), "unsupported blob version 65535"),
        (frame(4, 1, b"not zstd"), "corrupt zstd data"),
        (frame(4, 10, zstandard.ZstdCompressor().compress(b"\x01")), "holds 1"),
        (frame(4, 1, zstandard.ZstdCompressor().compress(b"\x01\x02")), "holds more"),
        (frame(4, 2, zstandard.ZstdCompressor().compress(b"\xe3\x05")), "exceeds"),
        (frame(4, 2**32 - 1, b""), "over the 67108864-byte limit"),
    ],
)
def test_bad_blobs_raise_decode_error_with_a_reason(blob: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_blob(blob)


def test_truncated_blob() -> None:
    blob = encode_blob([EVENT] * 20)
    for cut in (len(blob) - 1, len(blob) - 2, len(blob) - 4, len(blob) // 2, 9):
        with pytest.raises(DecodeError):
            decode_blob(blob[:cut])
    with pytest.raises(DecodeError, match="zstd data holds 0"):
        decode_blob(blob[:20])


def test_size_limit_is_configurable() -> None:
    blob, raw_size = encode_blob_parts([EVENT] * 10)
    assert decode_blob(blob, max_size=raw_size) == [EVENT] * 10
    with pytest.raises(DecodeError, match=f"blob declares {raw_size} bytes, over the 100"):
        decode_blob(blob, max_size=100)
    with pytest.raises(DecodeError, match="exceeds the 100-byte limit"):
        decode_blob("A" * 10_000, max_size=100)


def test_decompression_bomb_is_refused_without_inflating() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\x00" * (256 * 2**20))
    blob = frame(4, 1000, bomb)  # header says 1000 bytes; the frame holds 256 MiB
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="length mismatch: header says 1000 bytes"):
            decode_blob(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"decoding a bomb allocated {peak} bytes"


def test_declared_size_over_the_limit_allocates_nothing_large() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="over the"):
            decode_blob(frame(4, 2**31, b"\x28\xb5\x2f\xfd"), max_size=2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2**20


def test_b64url_decode_rejects_standard_alphabet_slash() -> None:
    with pytest.raises(DecodeError):
        b64url_decode("ab/d")
    assert b64url_decode("-_-_") == base64.urlsafe_b64decode("-_-_")


def test_blob_unframe_returns_the_fressian_bytes() -> None:
    data = fressian_dumps({kw("a"): 1})
    assert blob_unframe(blob_frame(data)) == data


# --------------------------------------------------------------------------- envelopes


def test_decode_envelope_from_dict_text_and_bytes() -> None:
    env = {
        "type": "telemetry-events",
        "version": "2.4.3",
        "instance-id": "0193d0a7-0000-7000-8000-00000000abcd",
        "events": encode_blob([EVENT]),
    }
    expected = {**env, "events": [EVENT]}
    assert decode_envelope(env) == expected
    assert decode_envelope(orjson.dumps(env)) == expected
    assert decode_envelope(orjson.dumps(env).decode()) == expected
    assert env["events"] != [EVENT]  # the caller's dict is not modified


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ({"type": "telemetry-events"}, 'no "events" blob'),
        ({"events": 5}, 'no "events" blob'),
        ({"events": "AAQ"}, "blob too short"),
    ],
)
def test_bad_envelopes(envelope: object, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_envelope(envelope)  # type: ignore[arg-type]
