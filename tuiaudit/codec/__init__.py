"""Blob v4 wire format: Fressian with Penpot's Clojure tags, zstd, base64url (DESIGN §5.1)."""

from tuiaudit.codec.blob import (
    DEFAULT_MAX_SIZE,
    blob_frame,
    blob_unframe,
    decode_blob,
    decode_envelope,
    encode_blob,
    encode_blob_parts,
)
from tuiaudit.codec.reader import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_OUTPUT_BYTES, fressian_loads
from tuiaudit.codec.tagged import from_tagged_json, to_tagged_json
from tuiaudit.codec.types import (
    BigInt,
    Char,
    CljList,
    DecodeError,
    EncodeError,
    FrozenMap,
    Keyword,
    Symbol,
    Tagged,
    kw,
)
from tuiaudit.codec.writer import fressian_dumps

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MAX_SIZE",
    "BigInt",
    "Char",
    "CljList",
    "DecodeError",
    "EncodeError",
    "FrozenMap",
    "Keyword",
    "Symbol",
    "Tagged",
    "blob_frame",
    "blob_unframe",
    "decode_blob",
    "decode_envelope",
    "encode_blob",
    "encode_blob_parts",
    "fressian_dumps",
    "fressian_loads",
    "from_tagged_json",
    "kw",
    "to_tagged_json",
]
