"""Blob v4 framing: ``base64url_nopad(u16be(4) ‖ u32be(len(F)) ‖ zstd(F))`` (DESIGN §5.1),
and the ``telemetry-events`` envelope that carries it.

Decoding trusts nothing: the declared length is capped (64 MiB by default)
before anything is allocated, zstd output is read through a bounded reader so
a lying frame cannot inflate past the declared length, and every failure is a
``DecodeError`` that says which check failed.
"""

from __future__ import annotations

import base64
import binascii
import struct
import threading
from typing import Any

import orjson
import zstandard

from tuiaudit.codec.reader import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_OUTPUT_BYTES, fressian_loads
from tuiaudit.codec.types import DecodeError, EncodeError
from tuiaudit.codec.writer import encode

VERSION = 4
DEFAULT_MAX_SIZE = 64 * 2**20
DEFAULT_LEVEL = 3  # what the reference (and Penpot) use
_HEADER = struct.Struct(">HI")
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_local = threading.local()  # zstd contexts are not safe to share between threads


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    cctx = cache.get(level)
    if cctx is None:
        cctx = cache[level] = zstandard.ZstdCompressor(level=level)
    return cctx


def _decompressor() -> zstandard.ZstdDecompressor:
    dctx: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dctx is None:
        dctx = _local.decompressor = zstandard.ZstdDecompressor()
    return dctx


def b64url_encode(raw: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Inverse of b64url_encode; padding and surrounding whitespace are tolerated."""
    if isinstance(text, str):
        try:
            text = text.strip().encode("ascii")
        except UnicodeEncodeError:
            raise DecodeError("blob is not base64url: it has non-ASCII characters") from None
    else:
        text = bytes(text).strip()
    text = text.rstrip(b"=")
    if text.translate(None, _B64URL_ALPHABET):  # '+' and '/' too: Java's URL decoder refuses them
        raise DecodeError("blob is not base64url: a character is outside A-Za-z0-9-_")
    if len(text) % 4 == 1:
        raise DecodeError("blob is not base64url: its length is impossible (truncated?)")
    try:
        return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    except binascii.Error as exc:  # not expected after the checks above
        raise DecodeError(f"blob is not base64url: {exc}") from None


def blob_frame(fressian_bytes: bytes | bytearray, level: int = DEFAULT_LEVEL) -> str:
    """The blob v4 string of already-encoded Fressian bytes."""
    n = len(fressian_bytes)
    if n > 0xFFFFFFFF:
        raise EncodeError(f"Fressian data of {n} bytes does not fit the blob's 32-bit length")
    return b64url_encode(_HEADER.pack(VERSION, n) + _compressor(level).compress(fressian_bytes))


def encode_blob_parts(value: Any, level: int = DEFAULT_LEVEL) -> tuple[str, int]:
    """``(blob, raw_size)``: the blob and the uncompressed Fressian length (for the ledger)."""
    raw = encode(value)
    return blob_frame(raw, level), len(raw)


def encode_blob(value: Any, level: int = DEFAULT_LEVEL) -> str:
    """The blob v4 string of ``value``."""
    return encode_blob_parts(value, level)[0]


def blob_unframe(blob: str | bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The Fressian bytes inside a blob v4 string, after every framing check."""
    # zstd never grows incompressible data by more than a small margin, so a
    # blob far larger than the size cap cannot be valid: refuse before decoding.
    if len(blob) > (max_size + max_size // 64 + 4096) * 4 // 3 + 16:
        raise DecodeError(f"blob of {len(blob)} characters exceeds the {max_size}-byte limit")
    raw = b64url_decode(blob)
    if len(raw) < _HEADER.size:
        raise DecodeError(f"blob too short: {len(raw)} bytes, the v4 header alone needs 6")
    version, size = _HEADER.unpack_from(raw)
    if version != VERSION:
        raise DecodeError(f"unsupported blob version {version} (this codec reads version 4)")
    if size > max_size:
        raise DecodeError(f"blob declares {size} bytes, over the {max_size}-byte limit")
    try:
        payload = memoryview(raw)[_HEADER.size :]
        reader = _decompressor().stream_reader(payload, read_across_frames=True)
        data = reader.read(size + 1)  # one byte more exposes a frame longer than declared
    except zstandard.ZstdError as exc:
        raise DecodeError(f"corrupt zstd data: {exc}") from None
    if len(data) > size:
        raise DecodeError(f"length mismatch: header says {size} bytes, zstd data holds more")
    if len(data) < size:
        raise DecodeError(
            f"length mismatch: header says {size} bytes, zstd data holds {len(data)} "
            "(truncated or corrupt)"
        )
    return bytes(data)


def decode_blob(
    blob: str | bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> Any:
    """The value in a blob v4 string (an event list, for telemetry).

    ``max_size`` caps the decompressed Fressian; ``max_bytes`` and
    ``max_elements`` cap the decoded value (cache re-uses counted in full).
    """
    return fressian_loads(
        blob_unframe(blob, max_size=max_size), max_bytes=max_bytes, max_elements=max_elements
    )


def decode_envelope(
    envelope: dict[str, Any] | str | bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> dict[str, Any]:
    """A ``telemetry-events`` envelope (dict or JSON text) with ``events`` decoded."""
    if isinstance(envelope, str | bytes | bytearray):
        try:
            envelope = orjson.loads(envelope)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"envelope is not JSON: {exc}") from None
    if not isinstance(envelope, dict):
        raise DecodeError(f"envelope must be a JSON object, got {type(envelope).__name__}")
    events = envelope.get("events")
    if not isinstance(events, str):
        raise DecodeError('envelope has no "events" blob string')
    decoded = decode_blob(events, max_size=max_size, max_bytes=max_bytes, max_elements=max_elements)
    return {**envelope, "events": decoded}
