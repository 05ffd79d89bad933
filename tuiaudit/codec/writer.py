"""Fressian writer with the tags of Penpot's backend (DESIGN §5.1).

Layout choices follow org.clojure/data.fressian: maps are ``clj/map`` over a
closed list with cached keys, keywords are ``clj/keyword`` with cached parts,
vectors/sets are ``clj/vector``/``clj/set`` over a counted list, instants are
``java/instant`` epoch milliseconds, UUIDs the built-in ``uuid`` code.

This is the shipper's hot path, so the encoder is a set of closures over one
``bytearray`` (locals beat attribute lookups), dispatches on ``type(v) is``
before anything slower, inlines the commonest value types in the map loop, and
memoises the bytes of values that repeat within a batch (short strings,
instants). A cached keyword costs one dict lookup and one ``extend`` after its
first appearance.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any
from uuid import UUID

from tuiaudit.codec import codes as C
from tuiaudit.codec.types import BigInt, Char, CljList, EncodeError, Keyword, Symbol, Tagged

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_pack_double = struct.Struct(">d").pack
_DOUBLE_0 = _pack_double(0.0)
_DOUBLE_1 = _pack_double(1.0)
_NON_BMP = re.compile("[\U00010000-\U0010ffff]")
_UUID_PREFIX = b"\xc3\xd9\x10"  # uuid code, then 16 bytes (BYTES, length 16)
_MEMO_MAX_STR = 64  # longer strings are rarely repeated; do not memoise them


def int_bytes(i: int) -> bytes:
    """The shortest Fressian encoding of a 64-bit int (FressianWriter.internalWriteInt)."""
    if -4096 <= i < 4096:  # one or two bytes, precomputed
        return _SMALL_INTS[i + 4096]
    if -(1 << 19) <= i < 1 << 19:
        return ((C.INT_PACKED_3_ZERO + (i >> 16)) << 16 | (i & 0xFFFF)).to_bytes(3, "big")
    if -(1 << 25) <= i < 1 << 25:
        return ((C.INT_PACKED_4_ZERO + (i >> 24)) << 24 | (i & 0xFFFFFF)).to_bytes(4, "big")
    if -(1 << 33) <= i < 1 << 33:
        return ((C.INT_PACKED_5_ZERO + (i >> 32)) << 32 | (i & 0xFFFFFFFF)).to_bytes(5, "big")
    if -(1 << 41) <= i < 1 << 41:
        return ((C.INT_PACKED_6_ZERO + (i >> 40)) << 40 | (i & 0xFFFFFFFFFF)).to_bytes(6, "big")
    if -(1 << 49) <= i < 1 << 49:
        return ((C.INT_PACKED_7_ZERO + (i >> 48)) << 48 | (i & 0xFFFFFFFFFFFF)).to_bytes(7, "big")
    if C.INT64_MIN <= i <= C.INT64_MAX:
        return b"\xf8" + i.to_bytes(8, "big", signed=True)
    raise EncodeError(f"int {i} does not fit in 64 bits (use BigInt for clj/bigint)")


def _small_int(i: int) -> bytes:
    if -1 <= i < 64:
        return bytes((i & 0xFF,))
    return bytes((C.INT_PACKED_2_ZERO + (i >> 8), i & 0xFF))


_SMALL_INTS = [_small_int(i) for i in range(-4096, 4096)]
_STR_PACKED = [bytes((C.STRING_PACKED_LENGTH_START + n,)) for n in range(8)]
_LIST_PACKED = [bytes((C.LIST_PACKED_LENGTH_START + n,)) for n in range(8)]


def _cesu8(s: str) -> bytes:
    """UTF-8 as Java's Fressian writes it: per UTF-16 unit, a surrogate pair as 2×3 bytes."""
    if _NON_BMP.search(s) is not None:
        s = _NON_BMP.sub(lambda m: _surrogates(m.group()), s)
    return s.encode("utf-8", "surrogatepass")


def _surrogates(ch: str) -> str:
    cp = ord(ch) - 0x10000
    return chr(0xD800 + (cp >> 10)) + chr(0xDC00 + (cp & 0x3FF))


def str_bytes(s: str) -> bytes:
    """A string value, unchunked (Java's reader takes any length)."""
    b = s.encode("ascii") if s.isascii() else _cesu8(s)
    n = len(b)
    if n < 8:
        return _STR_PACKED[n] + b
    return b"\xe3" + int_bytes(n) + b


def bytes_bytes(b: bytes) -> bytes:
    """A byte string; long ones in 65535-byte chunks as FressianWriter.writeBytes does."""
    n = len(b)
    if n < 8:
        return bytes((C.BYTES_PACKED_LENGTH_START + n,)) + b
    parts = []
    off = 0
    while n - off > C.BYTE_CHUNK_SIZE:
        parts.append(b"\xd8" + int_bytes(C.BYTE_CHUNK_SIZE) + b[off : off + C.BYTE_CHUNK_SIZE])
        off += C.BYTE_CHUNK_SIZE
    parts.append(b"\xd9" + int_bytes(n - off) + b[off:])
    return b"".join(parts)


def inst_millis(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime, floored like Instant.toEpochMilli."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise EncodeError("naive datetime: attach a timezone (UTC) before encoding")
    d = dt - _EPOCH
    return (d.days * 86400 + d.seconds) * 1000 + d.microseconds // 1000


def _bigint_bytes(i: int) -> bytes:
    """Two's complement, big-endian, minimal — Java's BigInteger.toByteArray."""
    return i.to_bytes((i if i >= 0 else ~i).bit_length() // 8 + 1, "big", signed=True)


def _path(parts: list[Any]) -> str:
    out = []
    for p in reversed(parts):
        if type(p) is int:
            out.append(f"[{p}]")
        elif isinstance(p, Keyword):
            out.append(f"[:{p}]")
        else:
            out.append(f"[{p!r}]")
    return "".join(out)


def encode(value: Any) -> bytearray:
    """The Fressian bytes of ``value`` (one top-level object, no footer)."""
    out = bytearray()
    append = out.append
    refs: dict[Any, bytes] = {}  # priority cache: Keyword/Symbol/str -> reference bytes
    tags: dict[tuple[Any, int], bytes] = {}  # struct cache: (tag, fields) -> reference bytes
    smemo: dict[str, bytes] = {}  # string values seen in this batch
    dmemo: dict[datetime, bytes] = {}  # instants seen in this batch (tag reference + millis)
    next_ref = 0
    next_struct = 0
    map_tag: bytes | None = None  # clj/map tag reference + BEGIN_CLOSED_LIST, once known

    def ref_bytes(index: int) -> bytes:
        if index < 32:
            return bytes((C.PRIORITY_CACHE_PACKED_START + index,))
        return b"\xcc" + int_bytes(index)

    def tag(name: Any, fields: int) -> None:
        """A struct tag: its shortcut code, a struct cache reference, or STRUCTTYPE."""
        nonlocal next_struct
        key: tuple[Any, int] | None = (name, fields)
        try:
            ref = tags.get((name, fields))
        except TypeError:  # an unhashable tag (only from odd decoded input): never cached
            ref, key = None, None
        if ref is not None:
            out.extend(ref)
            return
        code = C.TAG_CODES.get(name) if type(name) is str else None
        if code is not None:  # built-in tags have a one-byte code and no field count
            ref = bytes((code,))
            out.extend(ref)
        else:
            index = next_struct
            next_struct += 1
            append(C.STRUCTTYPE)
            write(name)
            out.extend(int_bytes(fields))
            ref = (
                bytes((C.STRUCT_CACHE_PACKED_START + index,))
                if index < 16
                else (b"\xf0" + int_bytes(index))
            )
        if key is not None:
            tags[key] = ref

    def cached_str(s: str) -> None:
        """A string through the priority cache (keyword parts, string map keys)."""
        nonlocal next_ref
        ref = refs.get(s)
        if ref is not None:
            out.extend(ref)
        elif not s:  # data.fressian never caches the empty string
            append(C.STRING_PACKED_LENGTH_START)
        else:
            refs[s] = ref_bytes(next_ref)
            next_ref += 1
            append(C.PUT_PRIORITY_CACHE)
            out.extend(str_bytes(s))

    def named(v: Keyword | Symbol) -> None:
        """A keyword or symbol, itself cached, with cached namespace and name."""
        nonlocal next_ref
        ref = refs.get(v)
        if ref is not None:
            out.extend(ref)
            return
        refs[v] = ref_bytes(next_ref)  # its index precedes its parts' (PUT first)
        next_ref += 1
        append(C.PUT_PRIORITY_CACHE)
        tag("clj/keyword" if type(v) is Keyword else "clj/symbol", 2)
        ns = v.namespace
        if ns is None:
            append(C.NULL)
        else:
            cached_str(ns)
        cached_str(v.name)

    def write_str(v: str) -> None:
        b = smemo.get(v)
        if b is None:
            b = str_bytes(v)
            if len(v) <= _MEMO_MAX_STR:
                smemo[v] = b
        out.extend(b)

    def write_map(m: Mapping[Any, Any]) -> None:
        nonlocal map_tag
        if map_tag is None:
            tag("clj/map", 1)
            append(C.BEGIN_CLOSED_LIST)
            map_tag = tags[("clj/map", 1)] + b"\xed"  # tag ref + begin closed list
        else:
            out.extend(map_tag)
        k: Any = None
        try:
            for k, v in m.items():
                # The cache is looked up by exact type only: a Char key equals (and
                # hashes as) the one-letter str, so refs.get(Char("0")) would find
                # the cached name of :0 and write a string in its place.
                kt = type(k)
                if kt is Keyword or kt is Symbol:
                    ref = refs.get(k)
                    if ref is None:
                        named(k)
                    else:
                        out.extend(ref)
                elif kt is str:
                    cached_str(k)
                else:
                    write(k)
                # The commonest value types inline (a call costs more than the test).
                t = type(v)
                if t is str:
                    b = smemo.get(v)
                    if b is None:
                        write_str(v)
                    else:
                        out.extend(b)
                elif t is Keyword:
                    ref = refs.get(v)
                    if ref is None:
                        named(v)
                    else:
                        out.extend(ref)
                elif t is UUID:
                    out.extend(_UUID_PREFIX)
                    out.extend(v.int.to_bytes(16))
                elif t is bool:
                    append(C.TRUE if v else C.FALSE)
                elif t is dict:
                    write_map(v)
                elif t is int and 0 <= v < 64:
                    append(v)
                elif t is datetime:
                    b = dmemo.get(v)
                    if b is None:
                        write(v)
                    else:
                        out.extend(b)
                else:
                    write(v)
        except EncodeError as exc:
            exc.parts.append(k)
            raise
        append(C.END_COLLECTION)

    def write_items(items: Any, n: int) -> None:
        if n < 8:
            out.extend(_LIST_PACKED[n])
        else:
            append(C.LIST)
            out.extend(int_bytes(n))
        i = 0
        try:
            for i, item in enumerate(items):  # noqa: B007 - i names the failing item
                write(item)
        except EncodeError as exc:
            exc.parts.append(i)
            raise

    def write(v: Any) -> None:
        t = type(v)
        if t is str:
            write_str(v)
        elif t is Keyword:
            ref = refs.get(v)
            if ref is None:
                named(v)
            else:
                out.extend(ref)
        elif t is dict:
            write_map(v)
        elif t is int:
            if 0 <= v < 64:
                append(v)
            else:
                out.extend(int_bytes(v))
        elif t is bool:
            append(C.TRUE if v else C.FALSE)
        elif v is None:
            append(C.NULL)
        elif t is UUID:
            out.extend(_UUID_PREFIX)
            out.extend(v.int.to_bytes(16))
        elif t is datetime:
            b = dmemo.get(v)
            if b is None:
                millis = int_bytes(inst_millis(v))
                tag("java/instant", 1)
                out.extend(millis)
                # The tag is cached now, so tag reference + millis is position-free.
                dmemo[v] = tags[("java/instant", 1)] + millis
            else:
                out.extend(b)
        elif t is float:
            b = _pack_double(v)
            if b == _DOUBLE_0:
                append(C.DOUBLE_0)
            elif b == _DOUBLE_1:
                append(C.DOUBLE_1)
            else:
                append(C.DOUBLE)
                out.extend(b)
        elif t is list or t is tuple:
            tag("clj/vector", 1)
            write_items(v, len(v))
        elif t is frozenset or t is set:
            tag("clj/set", 1)
            write_items(v, len(v))
        else:
            write_other(v)

    def write_other(v: Any) -> None:
        if isinstance(v, Tagged):
            tag(v.tag, len(v.values))
            for item in v.values:
                write(item)
        elif isinstance(v, Symbol | Keyword):
            named(v)
        elif isinstance(v, BigInt):
            tag("clj/bigint", 1)
            out.extend(bytes_bytes(_bigint_bytes(v)))
        elif isinstance(v, bool):
            append(C.TRUE if v else C.FALSE)
        elif isinstance(v, int):
            out.extend(int_bytes(int(v)))
        elif isinstance(v, Char):
            tag("char", 1)
            out.extend(int_bytes(ord(v)))
        elif isinstance(v, str):
            write_str(str(v))
        elif isinstance(v, CljList):
            tag("clj/seq", 1)
            write_items(v, len(v))
        elif isinstance(v, Mapping):
            write_map(v)
        elif isinstance(v, list | tuple):
            tag("clj/vector", 1)
            write_items(v, len(v))
        elif isinstance(v, set | frozenset):
            tag("clj/set", 1)
            write_items(v, len(v))
        elif isinstance(v, bytes | bytearray | memoryview):
            out.extend(bytes_bytes(bytes(v)))
        elif isinstance(v, datetime):
            tag("java/instant", 1)
            out.extend(int_bytes(inst_millis(v)))
        elif isinstance(v, UUID):
            out.extend(_UUID_PREFIX + v.int.to_bytes(16))
        elif isinstance(v, float):
            write(float(v))
        elif isinstance(v, Decimal):
            sign, digits, exponent = v.as_tuple()
            if not isinstance(exponent, int) or not -(2**31) < exponent <= 2**31:
                raise EncodeError(f"cannot encode the decimal {v} (bigdec needs an int32 scale)")
            unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
            tag("bigdec", 2)
            out.extend(bytes_bytes(_bigint_bytes(unscaled)))
            out.extend(int_bytes(-exponent))
        elif isinstance(v, Fraction):
            tag("clj/ratio", 2)
            for part in (v.numerator, v.denominator):
                write(part if C.INT64_MIN <= part <= C.INT64_MAX else BigInt(part))
        else:
            raise EncodeError(f"cannot encode a value of type {type(v).__name__}")

    try:
        write(value)
    except EncodeError as exc:
        raise EncodeError(exc.reason, _path(exc.parts)) from None
    except RecursionError:
        raise EncodeError("value nested too deeply (or it contains itself)") from None
    return out


def fressian_dumps(value: Any) -> bytes:
    """Fressian bytes of ``value``, as data.fressian with Penpot's handlers writes it."""
    return bytes(encode(value))
