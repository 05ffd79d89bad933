"""Fressian reader: every built-in code of org.fressian.FressianReader, plus the
read handlers of data.fressian and of Penpot's backend (``clj/*``, ``java/instant``).

Robustness rules: every length is checked against the bytes that remain
before anything is allocated, every loop consumes input, and any malformed
input ends in one ``DecodeError`` whose message says what was wrong and where.

Output budget (DESIGN §8.2): a cache reference re-uses a value without
re-reading it, so 2 KB of input can stand for a 1 GB value once rendered. The
decoder charges every element (list item, map entry, struct field) and every
string/bytes length to a budget, a cache reference the full weight of what
it stands for, and fails past ``max_elements`` or ``max_bytes``; containers
nest at most ``max_depth`` levels.
The decoder is a set of closures over the input (cell variables are the
fastest state CPython has); one call decodes one top-level value.

This module is the reference. ``decode`` runs the compiled twin of
``decode_pure`` (tuiaudit/codec/_fressian_reader.pyx, DESIGN §5.3) when it is
built and the limits are in its range, else ``decode_pure``;
``TUIAUDIT_PURE_PYTHON=1`` in the environment forces the pure one.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any
from uuid import UUID, SafeUUID
from zlib import adler32

from tuiaudit.codec import codes as C
from tuiaudit.codec.handlers import ARRAY_TAGS, BUILDERS, MAP_TAGS, BadFields, describe
from tuiaudit.codec.java_text import java_utf8 as _text
from tuiaudit.codec.types import DecodeError, Tagged, freeze

compiled: ModuleType | None
"""The compiled decoder in use, or None (not built, or TUIAUDIT_PURE_PYTHON=1)."""
if os.environ.get("TUIAUDIT_PURE_PYTHON") == "1":
    compiled = None
else:
    try:
        from tuiaudit.codec import _fressian_reader as compiled
    except ImportError:  # a source checkout without the build: the pure reader serves
        compiled = None

_unpack_double = struct.Struct(">d").unpack_from
_unpack_float = struct.Struct(">f").unpack_from
_unpack_i64 = struct.Struct(">q").unpack_from
_unpack_u32 = struct.Struct(">I").unpack_from
_new_object = object.__new__
_set_slot = object.__setattr__
_UNKNOWN_SAFETY = SafeUUID.unknown
_BUILDING = object()  # a priority-cache slot whose value is still being read
_INT32_MAX = 2**31 - 1

DEFAULT_MAX_OUTPUT_BYTES = 64 * 2**20
"""Total string and bytes length a decoded value may hold, cache re-uses included."""
DEFAULT_MAX_ELEMENTS = 1_000_000
"""List items, map entries and struct fields a decoded value may hold."""
DEFAULT_MAX_DEPTH = 100
"""Nested containers (a telemetry event needs a handful)."""


def _uuid(n: int) -> UUID:
    """UUID(int=n) without its argument checks (n is 16 bytes by construction): 4x faster."""
    u: UUID = _new_object(UUID)
    _set_slot(u, "int", n)
    _set_slot(u, "is_safe", _UNKNOWN_SAFETY)
    return u


def implementation() -> str:
    """``"compiled"`` or ``"pure"``: which decoder ``decode`` runs with the default limits."""
    return "compiled" if compiled is not None else "pure"


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """The one top-level value in ``data``; an optional footer may follow it.

    The compiled decoder when built, else (or for limits beyond its range:
    containers deeper than 100, budgets beyond 2**61) ``decode_pure``.
    """
    if compiled is not None and compiled.accepts(max_bytes, max_elements, max_depth):
        return compiled.decode(
            data, max_bytes=max_bytes, max_elements=max_elements, max_depth=max_depth
        )
    return decode_pure(data, max_bytes=max_bytes, max_elements=max_elements, max_depth=max_depth)


def decode_pure(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """``decode`` in pure Python: the reference the compiled decoder mirrors."""
    data = bytes(data)
    end = len(data)
    pos = 0
    base = 0  # start of the current footer frame (footer lengths count from here)
    resets = 0  # how many times the caches were cleared
    pcache: list[Any] = []
    pweight: list[tuple[int, int]] = []  # (elements, bytes) each pcache value stands for
    elements = 1  # the top-level value
    out_bytes = 0
    depth = 0
    scache: list[tuple[Any, int, Callable[[], Any] | None]] = []

    def fail(reason: str) -> DecodeError:
        return DecodeError(f"{reason} (at byte {pos} of {end})")

    def charge(n_elements: int, n_bytes: int = 0) -> None:
        nonlocal elements, out_bytes
        elements += n_elements
        out_bytes += n_bytes
        if elements > max_elements:
            raise fail(f"decoded value exceeds the budget of {max_elements} elements")
        if out_bytes > max_bytes:
            raise fail(f"decoded value exceeds the budget of {max_bytes} bytes of text")

    def enter() -> None:
        nonlocal depth
        depth += 1
        if depth > max_depth:
            raise fail(f"input nested too deeply: containers deeper than {max_depth} levels")

    def take(n: int) -> bytes:
        nonlocal pos
        p = pos
        q = p + n
        if q > end:
            raise fail(f"truncated input: {n} bytes needed, {end - p} left")
        pos = q
        return data[p:q]

    def read_int() -> int:
        value = read()
        if type(value) is not int:
            raise fail(f"expected an int, got {describe(value)}")
        return value

    def read_count(what: str) -> int:
        n = read_int()
        if n < 0 or n > _INT32_MAX:
            raise fail(f"invalid {what} {n}")
        if n > end - pos:  # every item takes at least one byte
            raise fail(f"{what} {n} exceeds the {end - pos} bytes left")
        return n

    def read() -> Any:
        nonlocal pos
        p = pos
        if p >= end:
            raise fail("truncated input: a value is missing")
        code = data[p]
        pos = p + 1
        if code < 0x40:
            return code
        if 0x80 <= code < 0xA0:
            return cache_get(code - C.PRIORITY_CACHE_PACKED_START)
        if 0xA0 <= code < 0xB0:
            return struct_ref(code - C.STRUCT_CACHE_PACKED_START)
        if code == C.UUID and data[p + 1 : p + 3] == b"\xd9\x10" and p + 19 <= end:
            pos = p + 19  # the usual uuid layout: BYTES, length 16, 16 bytes
            return _uuid(int.from_bytes(data[p + 3 : p + 19]))
        return dispatch[code](code)

    # ------------------------------------------------------------- numbers
    def packed_int(code: int) -> int:
        nonlocal pos
        if code == 0xFF:
            return -1
        if code < 0x60:
            if pos >= end:
                raise fail("truncated input in an int")
            pos += 1
            return ((code - C.INT_PACKED_2_ZERO) << 8) | data[pos - 1]
        if code < 0x70:
            return ((code - C.INT_PACKED_3_ZERO) << 16) | int.from_bytes(take(2))
        if code < 0x74:
            return ((code - C.INT_PACKED_4_ZERO) << 24) | int.from_bytes(take(3))
        if code < 0x78:
            return ((code - C.INT_PACKED_5_ZERO) << 32) | int.from_bytes(take(4))
        if code < 0x7C:
            return ((code - C.INT_PACKED_6_ZERO) << 40) | int.from_bytes(take(5))
        return ((code - C.INT_PACKED_7_ZERO) << 48) | int.from_bytes(take(6))

    def int64(code: int) -> int:
        result: int = _unpack_i64(take(8))[0]
        return result

    def double(code: int) -> float:
        if code == C.DOUBLE_0:
            return 0.0
        if code == C.DOUBLE_1:
            return 1.0
        result: float = _unpack_double(take(8))[0]
        return result

    def float32(code: int) -> float:
        result: float = _unpack_float(take(4))[0]
        return result

    def constant(code: int) -> Any:
        return True if code == C.TRUE else False if code == C.FALSE else None

    # ------------------------------------------------------------- caches
    def cache_get(index: int) -> Any:
        if not 0 <= index < len(pcache):
            raise fail(f"priority cache reference {index} beyond its {len(pcache)} entries")
        value = pcache[index]
        if value is _BUILDING:
            raise fail("circular priority cache reference")
        charge(*pweight[index])  # a re-use costs what it stands for
        return value

    def get_cache(code: int) -> Any:
        return cache_get(read_int())

    def put_cache(code: int) -> Any:
        index = len(pcache)
        pcache.append(_BUILDING)  # reserve the slot: nested PUTs come after it
        pweight.append((0, 0))
        generation = resets
        before_elements, before_bytes = elements, out_bytes
        value = read()
        if resets != generation:  # a reset or footer inside the value: the slot is gone
            raise fail("caches reset inside a cached value")
        pcache[index] = value
        # +1: the reference itself is one element where the value was one.
        pweight[index] = (elements - before_elements + 1, out_bytes - before_bytes)
        return value

    def reset(code: int) -> Any:
        nonlocal resets
        resets += 1
        pcache.clear()
        pweight.clear()
        scache.clear()
        return read()

    def footer_at(p: int) -> None:
        """Validate the footer whose code byte is at ``p`` (magic, length, Adler-32)."""
        nonlocal base, resets
        body = take(11)
        if data[p : p + 4] != b"\xcf\xcf\xcf\xcf":
            raise fail("invalid footer magic")
        length = _unpack_u32(body, 3)[0]
        if length != p - base:
            raise fail(f"footer says {length} bytes, the frame has {p - base}")
        if _unpack_u32(body, 7)[0] != adler32(data[base : p + 8]):
            raise fail("footer checksum mismatch")
        base = pos
        resets += 1
        pcache.clear()
        pweight.clear()
        scache.clear()

    def footer(code: int) -> Any:
        footer_at(pos - 1)
        return read()

    # ------------------------------------------------------------- bytes, strings
    def packed_bytes(code: int) -> bytes:
        return take(code - C.BYTES_PACKED_LENGTH_START)

    def counted_bytes(code: int) -> bytes:
        n = read_count("byte length")
        charge(0, n)
        return take(n)

    def chunked_bytes(code: int) -> bytes:
        nonlocal pos
        chunks = [take(read_count("byte chunk length"))]
        while True:
            code = data[pos] if pos < end else -1
            pos += 1
            if code == C.BYTES_CHUNK:
                chunks.append(take(read_count("byte chunk length")))
            elif code == C.BYTES:
                chunks.append(take(read_count("byte chunk length")))
                charge(0, sum(map(len, chunks)))
                return b"".join(chunks)
            else:
                raise fail("chunked bytes end without their final chunk")

    def packed_string(code: int) -> str:
        n = code - C.STRING_PACKED_LENGTH_START
        charge(0, n)
        return _text(take(n))

    def counted_string(code: int) -> str:
        n = read_count("string length")
        charge(0, n)
        return _text(take(n))

    def chunked_string(code: int) -> str:
        nonlocal pos
        chunks = [take(read_count("string chunk length"))]
        while True:
            code = data[pos] if pos < end else -1
            pos += 1
            if C.STRING_PACKED_LENGTH_START <= code < C.STRING_CHUNK:
                chunks.append(take(code - C.STRING_PACKED_LENGTH_START))
                break
            if code == C.STRING or code == C.STRING_CHUNK:
                chunks.append(take(read_count("string chunk length")))
                if code == C.STRING:
                    break
            else:
                raise fail("chunked string ends without its final chunk")
        charge(0, sum(map(len, chunks)))
        return _text(b"".join(chunks))

    # ------------------------------------------------------------- lists
    def read_n(n: int) -> list[Any]:
        nonlocal depth
        charge(n)  # before anything is allocated
        enter()
        items = [read() for _ in range(n)]
        depth -= 1
        return items

    def packed_list(code: int) -> list[Any]:
        return read_n(code - C.LIST_PACKED_LENGTH_START)

    def counted_list(code: int) -> list[Any]:
        return read_n(read_count("list length"))

    def closed_list(code: int) -> list[Any]:
        nonlocal pos, depth
        items: list[Any] = []
        enter()
        while True:
            if pos >= end:
                raise fail("truncated input: a closed list has no end")
            if data[pos] == C.END_COLLECTION:
                pos += 1
                depth -= 1
                return items
            charge(1)
            items.append(read())

    def open_list(code: int) -> list[Any]:
        nonlocal pos, depth
        items = []
        enter()
        while pos < end:  # an open list may also end with the input
            if data[pos] == C.END_COLLECTION:
                pos += 1
                break
            charge(1)
            items.append(read())
        depth -= 1
        return items

    # ------------------------------------------------------------- structs
    def struct_type(code: int) -> Any:
        tag = read()
        fields = read_count("struct field count")
        try:
            handler = handlers.get(tag)
        except TypeError:  # an unhashable tag can have no handler
            handler = None
        scache.append((tag, fields, handler))
        return handler() if handler is not None else tagged(tag, fields)

    def struct_ref(index: int) -> Any:
        if not 0 <= index < len(scache):
            raise fail(f"struct cache reference {index} beyond its {len(scache)} entries")
        tag, fields, handler = scache[index]
        return handler() if handler is not None else tagged(tag, fields)

    def packed_struct(code: int) -> Any:
        return struct_ref(code - C.STRUCT_CACHE_PACKED_START)

    def counted_struct(code: int) -> Any:
        return struct_ref(read_int())

    def builtin_struct(code: int) -> Any:
        tag, fields = C.CODE_TAGS[code]
        handler = handlers.get(tag)
        return handler() if handler is not None else tagged(tag, fields)

    def tagged(tag: Any, fields: int) -> Tagged:
        nonlocal depth
        if fields > end - pos:
            raise fail(f"struct field count {fields} exceeds the {end - pos} bytes left")
        charge(fields)
        enter()
        value = Tagged(tag, tuple(read() for _ in range(fields)))
        depth -= 1
        return value

    def invalid(code: int) -> Any:
        if code == C.END_COLLECTION:
            raise fail("end of list outside a list")
        raise fail(f"unknown code 0x{code:02X}")

    # ------------------------------------------------------------- tag handlers
    def map_handler() -> dict[Any, Any]:
        nonlocal pos, depth
        result: dict[Any, Any] = {}
        if pos < end and data[pos] == C.BEGIN_CLOSED_LIST:  # the usual layout: no list built
            pos += 1
            enter()
            # Keys re-used from the cache are charged once the map ends: a map
            # holds each key once, so they cannot inflate it before that. It
            # fails sooner when that charge is already bound to fail, so hashing
            # a heavy key over and over is bounded by the budget.
            key_elements = key_bytes = 0
            # ...but an unhashable one is frozen before that charge: its twin is
            # made once per map and cache slot, or a map repeating one heavy
            # cached key would cost keys x its weight before the budget fails.
            twins: dict[int, tuple[Any, Any]] = {}  # cache index -> (key, twin)
            while True:
                if pos >= end:
                    raise fail("truncated input: a map has no end")
                code = data[pos]
                if code == C.END_COLLECTION:
                    pos += 1
                    depth -= 1
                    charge(key_elements + 2 * len(result), key_bytes)
                    return result
                cached = -1
                if 0x80 <= code < 0xA0:  # a cached key (the usual case)
                    try:
                        k = pcache[code - 0x80]
                        w = pweight[code - 0x80]
                    except IndexError:  # beyond the cache: read() says so
                        k = read()
                    else:
                        cached = code - 0x80
                        if k is _BUILDING:
                            raise fail("circular priority cache reference")
                        key_elements += w[0] - 1  # -1: the entry itself is charged at the end
                        key_bytes += w[1]
                        pos += 1
                        if (
                            elements + key_elements > max_elements
                            or out_bytes + key_bytes > max_bytes
                        ):  # the charge at the end must fail: fail before hashing more keys
                            charge(key_elements, key_bytes)
                else:
                    k = read()
                if pos >= end:
                    raise fail("truncated input: a map key has no value")
                v: Any
                code = data[pos]
                if C.STRING_PACKED_LENGTH_START <= code < C.STRING_CHUNK:  # a short string
                    p = pos + 1
                    q = p + code - C.STRING_PACKED_LENGTH_START
                    if q > end:
                        raise fail("truncated input in a string")
                    pos = q
                    key_bytes += q - p
                    try:
                        v = data[p:q].decode()
                    except UnicodeDecodeError:
                        v = _text(data[p:q])
                elif code == C.UUID and data[pos + 1 : pos + 3] == b"\xd9\x10" and pos + 19 <= end:
                    v = _uuid(int.from_bytes(data[pos + 3 : pos + 19]))
                    pos += 19
                elif code == C.STRING and pos + 1 < end and data[pos + 1] < 0x40:
                    # A string of 8..63 bytes (names, sources): its length is one packed int.
                    p = pos + 2
                    q = p + data[pos + 1]
                    if q > end:
                        raise fail("truncated input in a string")
                    pos = q
                    key_bytes += q - p
                    try:
                        v = data[p:q].decode()
                    except UnicodeDecodeError:
                        v = _text(data[p:q])
                elif code == C.END_COLLECTION:
                    raise fail("map has a key without a value")
                elif 0xA0 <= code < 0xB0:
                    # A cached struct: a nested map (props, context), an instant,
                    # read here without going through read() and struct_ref().
                    pos += 1
                    try:
                        handler = scache[code - 0xA0][2]
                    except IndexError:  # struct_ref says what is wrong
                        handler = None
                    v = handler() if handler is not None else struct_ref(code - 0xA0)
                else:
                    v = read()
                try:
                    result[k] = v
                except TypeError:  # e.g. a vector key: store its hashable twin
                    twin = twins.get(cached)
                    if twin is None or twin[0] is not k:  # (a reset may refill the slot)
                        twin = (k, freeze(k))
                        if cached >= 0:
                            twins[cached] = twin
                    result[twin[1]] = v
        kvs = read()
        if type(kvs) is not list:
            raise fail(f"map expects a list, got {describe(kvs)}")
        if len(kvs) % 2:
            raise fail("map has a key without a value")
        for i in range(0, len(kvs), 2):
            k = kvs[i]
            try:
                result[k] = kvs[i + 1]
            except TypeError:
                result[freeze(k)] = kvs[i + 1]
        return result

    def array_handler() -> list[Any]:
        return read_n(read_count("array length"))

    def built(arity: int, build: Callable[..., Any]) -> Callable[[], Any]:
        """A handler that reads a tag's fields, then lets its builder make the value."""

        def one() -> Any:
            try:
                return build(read())
            except BadFields as exc:
                raise fail(str(exc)) from None

        def two() -> Any:
            first = read()
            try:
                return build(first, read())
            except BadFields as exc:
                raise fail(str(exc)) from None

        return one if arity == 1 else two

    handlers: dict[str, Callable[[], Any]] = {t: built(*b) for t, b in BUILDERS.items()}
    handlers.update(dict.fromkeys(MAP_TAGS, map_handler))
    handlers.update(dict.fromkeys(ARRAY_TAGS, array_handler))

    dispatch: list[Callable[[int], Any]] = [invalid] * 256
    for c in range(0x40, 0x80):
        dispatch[c] = packed_int
    dispatch[0xFF] = packed_int
    for c in range(C.STRUCT_CACHE_PACKED_START, C.STRUCT_CACHE_PACKED_END):
        dispatch[c] = packed_struct
    for c in C.CODE_TAGS:
        dispatch[c] = builtin_struct
    for c in range(8):
        dispatch[C.BYTES_PACKED_LENGTH_START + c] = packed_bytes
        dispatch[C.STRING_PACKED_LENGTH_START + c] = packed_string
        dispatch[C.LIST_PACKED_LENGTH_START + c] = packed_list
    dispatch[C.GET_PRIORITY_CACHE] = get_cache
    dispatch[C.PUT_PRIORITY_CACHE] = put_cache
    dispatch[C.FOOTER] = footer
    dispatch[C.BYTES_CHUNK] = chunked_bytes
    dispatch[C.BYTES] = counted_bytes
    dispatch[C.STRING_CHUNK] = chunked_string
    dispatch[C.STRING] = counted_string
    dispatch[C.LIST] = counted_list
    dispatch[C.BEGIN_CLOSED_LIST] = closed_list
    dispatch[C.BEGIN_OPEN_LIST] = open_list
    dispatch[C.STRUCTTYPE] = struct_type
    dispatch[C.STRUCT] = counted_struct
    dispatch[C.TRUE] = dispatch[C.FALSE] = dispatch[C.NULL] = constant
    dispatch[C.INT] = int64
    dispatch[C.FLOAT] = float32
    dispatch[C.DOUBLE] = dispatch[C.DOUBLE_0] = dispatch[C.DOUBLE_1] = double
    dispatch[C.RESET_CACHES] = reset

    try:
        value = read()
        while pos < end:  # only footers may follow the value
            if data[pos] != C.FOOTER:
                raise fail("trailing bytes after the value")
            pos += 1
            footer_at(pos - 1)
    except RecursionError:
        raise DecodeError("input nested too deeply") from None
    return value


def fressian_loads(
    data: bytes | bytearray | memoryview,
    *,
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """The value encoded in ``data``; raises DecodeError (only) on bad input or past the budget."""
    try:
        return decode(data, max_bytes=max_bytes, max_elements=max_elements, max_depth=max_depth)
    except DecodeError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
        # A safety net: every known failure is checked above with its own message.
        raise DecodeError(f"corrupt Fressian data ({type(exc).__name__}: {exc})") from None
