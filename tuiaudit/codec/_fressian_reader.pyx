# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, embedsignature=False
"""The compiled Fressian reader (DESIGN §5.3): the same decoder as
tuiaudit/codec/reader.py, line for line, over a C pointer with C-typed state.

reader.py is the reference: every function here mirrors the one of the same
name there, in the same order of checks, so values, errors and error texts
(with the byte position) are the same. Rare tags go through the same builders
(tuiaudit/codec/handlers.py); text that is not plain UTF-8 goes through the
same java_utf8. reader.decode picks this module when it is importable and
the limits are in its range (see ``accepts``).

Bounds (why ``boundscheck=False`` is safe): the input is one ``bytes`` object
held by the decoder for its whole life, ``buf`` points at its data and ``end``
is its length. Every read of ``buf[i]`` is preceded by a check that ``i <
end`` (a value code: ``pos >= end`` fails first), every multi-byte read goes
through ``advance(n)``, which fails unless ``pos + n <= end``, and every
length comes from ``read_count``, which refuses negative lengths and lengths
beyond the bytes left. Python lists are indexed only below their length
(checked just before). So no read can pass the buffer, whatever the input.

Stack: containers nest at most ``max_depth`` (``accepts`` keeps it within
MAX_DEPTH), checked before recursing; reads that nest without a container (a
chain of cache PUTs, resets, footers, struct tags, builder fields) are counted
too and fail past MAX_NESTED_READS, which keeps the C stack small. The pure
reader meets the same input as a RecursionError, which it reports with the
same text ("input nested too deeply"); only the depth at which that happens
differs (Python's depends on the caller's stack and the recursion limit).
"""

cimport cython
from cpython.long cimport PyLong_FromLongLong
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.object cimport PyObject_GenericSetAttr
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

from uuid import SafeUUID, UUID
from zlib import adler32

from tuiaudit.codec import codes as C
from tuiaudit.codec.handlers import ARRAY_TAGS, BUILDERS, MAP_TAGS, BadFields, describe, instant
from tuiaudit.codec.java_text import java_utf8
from tuiaudit.codec.types import DecodeError, Tagged, freeze


cdef extern from "Python.h":
    # Public since 3.11 (PEP 3118-era struct helpers); big-endian when le == 0.
    double PyFloat_Unpack4(const char* p, int le) except? -1.0
    double PyFloat_Unpack8(const char* p, int le) except? -1.0
    # int.from_bytes in C: present from 3.11 to 3.13 in cpython/longobject.h.
    object _PyLong_FromByteArray(const unsigned char* b, size_t n, int little, int signed)
    # gc.enable()/gc.disable() in C (3.10+): each returns whether it was enabled before.
    int PyGC_Enable()
    int PyGC_Disable()


MAX_DEPTH = 100
"""The deepest container nesting this module decodes (reader.decode uses the pure reader past it)."""
MAX_BUDGET = 2**61
"""Budgets beyond this use the pure reader. Every count stays below 2**63 (no
overflow): a charge is checked at once, so counts and cache weights stay within
a budget plus one charge, and a map's deferred key weights saturate at _SATURATED."""
cdef int _MAX_NESTED_READS = 1000  # a C constant: read() checks it on every nested value
MAX_NESTED_READS = _MAX_NESTED_READS
"""Reads nested inside reads (containers or not): past it, "input nested too deeply"."""

cdef Py_ssize_t _INT32_MAX = 2**31 - 1
cdef long long _SATURATED = 2**62  # beyond any budget this module accepts
cdef uint64_t _MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: the top bits pick a memo slot


cdef enum:
    _TEXT_SLOTS = 256  # per decode: telemetry has a few dozen distinct short strings
    _TEXT_SHIFT = 56  # 64 - log2(_TEXT_SLOTS)
    _MEMO_MAX_TEXT = 16  # strings up to this many bytes are memoised
    _UUID_SLOTS = 1024  # per decode: a batch's profiles, teams and files, among unique event ids
    _UUID_SHIFT = 54  # 64 - log2(_UUID_SLOTS)
cdef object _BUILDING = object()  # a priority-cache slot whose value is still being read
cdef object _UNKNOWN_SAFETY = SafeUUID.unknown
cdef object _UUID = UUID
cdef object _object_new = object.__new__
cdef str _INT_ATTR = "int"
cdef str _SAFE_ATTR = "is_safe"
cdef bytes _FOOTER_MAGIC = b"\xcf\xcf\xcf\xcf"


class _TooDeep(Exception):
    """Raised past MAX_NESTED_READS; decode turns it into the pure reader's DecodeError."""


# How a tag's value is read: the reader's handler kinds (reader.handlers).
cdef enum Kind:
    K_TAGGED = 0  # no handler: a Tagged with the declared field count
    K_MAP = 1
    K_ARRAY = 2
    K_ONE = 3  # a builder of one field
    K_TWO = 4  # a builder of two fields
    K_INSTANT = 5  # handlers.instant: a builder of one field, memoised per decode


cdef class _Struct:
    """A struct cache entry (reader.scache's (tag, fields, handler)) with C-typed fields."""
    cdef object tag
    cdef Py_ssize_t fields
    cdef int kind
    cdef object build

    def __cinit__(self, object tag, Py_ssize_t fields, int kind, object build):
        self.tag = tag
        self.fields = fields
        self.kind = kind
        self.build = build


cdef dict _HANDLERS = {}  # tag -> (kind, builder or None), as reader.decode builds `handlers`
for _tag, (_arity, _build) in BUILDERS.items():
    # instant() is a pure function of an int (handlers caches it too), so a
    # decode may keep what it built: telemetry repeats a handful of instants.
    _HANDLERS[_tag] = (K_INSTANT if _build is instant else K_ONE if _arity == 1 else K_TWO, _build)
for _tag in MAP_TAGS:
    _HANDLERS[_tag] = (K_MAP, None)
for _tag in ARRAY_TAGS:
    _HANDLERS[_tag] = (K_ARRAY, None)

# The one-byte shortcut codes (reader.builtin_struct): code -> (tag, fields, kind, builder).
cdef list _BUILTIN = [None] * 256
for _code, (_tag, _fields) in C.CODE_TAGS.items():
    _kind, _build = _HANDLERS.get(_tag, (K_TAGGED, None))
    _BUILTIN[_code] = _Struct(_tag, _fields, _kind, _build)


def accepts(max_bytes: object, max_elements: object, max_depth: object) -> bool:
    """Whether these limits are in this module's range (C counters, a bounded C stack)."""
    return (
        type(max_bytes) is int
        and type(max_elements) is int
        and type(max_depth) is int
        and -MAX_BUDGET <= max_bytes <= MAX_BUDGET
        and -MAX_BUDGET <= max_elements <= MAX_BUDGET
        and max_depth <= MAX_DEPTH
        and max_depth >= -MAX_BUDGET
    )


cdef object _uuid(const unsigned char* raw):
    """UUID(bytes=raw) without its argument checks (16 bytes by construction), as reader._uuid."""
    u = _object_new(_UUID)
    PyObject_GenericSetAttr(u, _INT_ATTR, _PyLong_FromByteArray(raw, 16, 0, 0))
    PyObject_GenericSetAttr(u, _SAFE_ATTR, _UNKNOWN_SAFETY)
    return u


@cython.final
cdef class _Decoder:
    cdef bytes data
    cdef const unsigned char* buf
    cdef Py_ssize_t pos, end, base
    cdef long long resets
    cdef list pcache
    cdef long long* w_elements  # per pcache entry: the (elements, bytes) it stands for
    cdef long long* w_bytes
    cdef Py_ssize_t w_capacity
    cdef long long elements, out_bytes, max_elements, max_bytes
    cdef long long depth, max_depth
    cdef int nested
    cdef list scache  # of _Struct
    cdef dict instants  # millis -> what instant() built for it
    # Memos of the values telemetry repeats: short strings (names, types,
    # browsers...) and UUIDs (profiles, teams, files). Direct-mapped, keyed by
    # the bytes themselves (compared in full), so a hit is the very value the
    # bytes make; strings and UUIDs are immutable, so sharing one is invisible.
    # A miss (or hostile input aiming at one slot) costs what no memo costs.
    cdef list text_memo
    cdef Py_ssize_t text_len[_TEXT_SLOTS]  # length + 1; 0: empty slot
    cdef uint64_t text_a[_TEXT_SLOTS]
    cdef uint64_t text_b[_TEXT_SLOTS]
    cdef list uuid_memo
    cdef uint64_t uuid_hi[_UUID_SLOTS]
    cdef uint64_t uuid_lo[_UUID_SLOTS]

    def __cinit__(self, bytes data, long long max_bytes, long long max_elements, long long max_depth):
        self.data = data
        self.buf = <const unsigned char*>(<char*>data)
        self.end = len(data)
        self.pos = 0
        self.base = 0
        self.resets = 0
        self.pcache = []
        self.w_elements = NULL
        self.w_bytes = NULL
        self.w_capacity = 0
        self.elements = 1  # the top-level value
        self.out_bytes = 0
        self.max_elements = max_elements
        self.max_bytes = max_bytes
        self.depth = 0
        self.max_depth = max_depth
        self.nested = 0
        self.scache = []
        self.instants = {}
        self.text_memo = None  # made on first use (most decodes of tiny values never need it)
        self.uuid_memo = None

    def __dealloc__(self):
        PyMem_Free(self.w_elements)
        PyMem_Free(self.w_bytes)

    # --------------------------------------------------------- bookkeeping
    cdef object fail(self, str reason):
        return DecodeError(f"{reason} (at byte {self.pos} of {self.end})")

    cdef int charge(self, long long n_elements, long long n_bytes) except -1:
        self.elements += n_elements
        self.out_bytes += n_bytes
        if self.elements > self.max_elements:
            raise self.fail(f"decoded value exceeds the budget of {self.max_elements} elements")
        if self.out_bytes > self.max_bytes:
            raise self.fail(f"decoded value exceeds the budget of {self.max_bytes} bytes of text")
        return 0

    cdef int enter(self) except -1:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self.fail(
                f"input nested too deeply: containers deeper than {self.max_depth} levels"
            )
        return 0

    cdef Py_ssize_t advance(self, Py_ssize_t n) except -1:
        """reader.take without the copy: the start of ``n`` bytes, after the bounds check."""
        cdef Py_ssize_t p = self.pos
        if n > self.end - p:
            raise self.fail(f"truncated input: {n} bytes needed, {self.end - p} left")
        self.pos = p + n
        return p

    cdef bytes take(self, Py_ssize_t n):
        cdef Py_ssize_t p = self.advance(n)
        return self.data[p:p + n]

    cdef object text(self, Py_ssize_t p, Py_ssize_t n):
        """reader._text of buf[p:p+n] (in bounds: the caller advanced past it), memoised."""
        cdef uint64_t a = 0, b = 0
        cdef unsigned int slot
        if n > _MEMO_MAX_TEXT:
            return self.decode_text(p, n)
        if n > 8:
            memcpy(&a, self.buf + p, 8)
            memcpy(&b, self.buf + p + 8, n - 8)
        else:
            memcpy(&a, self.buf + p, n)
        slot = <unsigned int>(((a ^ (b * _MIX) ^ <uint64_t>n) * _MIX) >> _TEXT_SHIFT)
        if self.text_len[slot] == n + 1 and self.text_a[slot] == a and self.text_b[slot] == b:
            return self.text_memo[slot]
        value = self.decode_text(p, n)
        if self.text_memo is None:
            self.text_memo = [None] * _TEXT_SLOTS
        self.text_memo[slot] = value
        self.text_len[slot] = n + 1
        self.text_a[slot] = a
        self.text_b[slot] = b
        return value

    cdef object uuid_at(self, const unsigned char* raw):
        """reader._uuid of the 16 bytes at ``raw`` (in bounds: checked by the caller), memoised."""
        cdef uint64_t hi, lo
        cdef unsigned int slot
        memcpy(&hi, raw, 8)
        memcpy(&lo, raw + 8, 8)
        slot = <unsigned int>(((hi ^ (lo * _MIX)) * _MIX) >> _UUID_SHIFT)
        if self.uuid_memo is None:
            self.uuid_memo = [None] * _UUID_SLOTS
        elif self.uuid_hi[slot] == hi and self.uuid_lo[slot] == lo:
            value = self.uuid_memo[slot]
            if value is not None:
                return value
        value = _uuid(raw)
        self.uuid_memo[slot] = value
        self.uuid_hi[slot] = hi
        self.uuid_lo[slot] = lo
        return value

    cdef object decode_text(self, Py_ssize_t p, Py_ssize_t n):
        try:
            return PyUnicode_DecodeUTF8(<const char*>self.buf + p, n, NULL)
        except UnicodeDecodeError:
            return java_utf8(self.data[p:p + n])

    cdef object read_int(self):
        value = self.read()
        if type(value) is not int:
            raise self.fail(f"expected an int, got {describe(value)}")
        return value

    cdef Py_ssize_t read_count(self, str what) except -1:
        n = self.read_int()
        if n < 0 or n > _INT32_MAX:
            raise self.fail(f"invalid {what} {n}")
        cdef Py_ssize_t count = n
        if count > self.end - self.pos:  # every item takes at least one byte
            raise self.fail(f"{what} {count} exceeds the {self.end - self.pos} bytes left")
        return count

    # --------------------------------------------------------- the value
    cdef object read(self):
        cdef Py_ssize_t p = self.pos
        cdef unsigned int code
        if p >= self.end:
            raise self.fail("truncated input: a value is missing")
        code = self.buf[p]
        self.pos = p + 1
        if code < 0x40:
            return PyLong_FromLongLong(code)
        if code < 0x80:
            return self.packed_int(code)
        if code < 0xA0:
            return self.cache_get(code - 0x80)
        self.nested += 1
        if self.nested > _MAX_NESTED_READS:
            raise _TooDeep()
        if code < 0xB0:
            value = self.struct_ref(code - 0xA0)
        elif code == 0xC3 and p + 19 <= self.end and self.buf[p + 1] == 0xD9 and self.buf[p + 2] == 0x10:
            self.pos = p + 19  # the usual uuid layout: BYTES, length 16, 16 bytes
            value = self.uuid_at(self.buf + p + 3)
        else:
            value = self.dispatch(code)
        self.nested -= 1
        return value

    cdef object dispatch(self, unsigned int code):
        """reader.dispatch[code](code)."""
        cdef Py_ssize_t n, p
        if 0xDA <= code < 0xE2:  # packed_string
            n = code - 0xDA
            self.charge(0, n)
            p = self.advance(n)
            return self.text(p, n)
        if code == 0xE3:
            return self.counted_string()
        if code == 0xED:
            return self.closed_list()
        if code == 0xF5:
            return True
        if code == 0xF6:
            return False
        if code == 0xF7:
            return None
        if code == 0xFF:
            return -1
        if 0xE4 <= code < 0xEC:
            return self.read_n(code - 0xE4)
        if code == 0xCD:
            return self.put_cache()
        if code == 0xEF:
            return self.struct_type()
        if _BUILTIN[code] is not None:
            return self.builtin_struct(code)
        if 0xD0 <= code < 0xD8:  # packed_bytes: not charged, as in reader.py
            return self.take(code - 0xD0)
        if code == 0xCC:
            return self.get_cache()
        if code == 0xCF:
            return self.footer()
        if code == 0xD8:
            return self.chunked_bytes()
        if code == 0xD9:
            return self.counted_bytes()
        if code == 0xE2:
            return self.chunked_string()
        if code == 0xEC:
            return self.read_n(self.read_count("list length"))
        if code == 0xEE:
            return self.open_list()
        if code == 0xF0:
            return self.counted_struct()
        if code == 0xF8:
            return self.int64()
        if code == 0xF9:
            p = self.advance(4)
            return PyFloat_Unpack4(<const char*>self.buf + p, 0)
        if code == 0xFA:
            p = self.advance(8)
            return PyFloat_Unpack8(<const char*>self.buf + p, 0)
        if code == 0xFB:
            return 0.0
        if code == 0xFC:
            return 1.0
        if code == 0xFE:
            return self.reset()
        return self.invalid(code)

    # --------------------------------------------------------- numbers
    cdef object packed_int(self, unsigned int code):
        cdef Py_ssize_t p
        cdef long long v
        if code < 0x60:
            if self.pos >= self.end:
                raise self.fail("truncated input in an int")
            self.pos += 1
            # (zero-based high part) * 256 + low byte == (high << 8) | low, negatives included.
            return PyLong_FromLongLong((<long long>code - 0x50) * 256 + self.buf[self.pos - 1])
        if code < 0x70:
            p = self.advance(2)
            v = (<long long>code - 0x68) * 65536
            return PyLong_FromLongLong(v + (<long long>self.buf[p] << 8 | self.buf[p + 1]))
        if code < 0x74:
            p = self.advance(3)
            return PyLong_FromLongLong((<long long>code - 0x72) * (1 << 24) + self.be(p, 3))
        if code < 0x78:
            p = self.advance(4)
            return PyLong_FromLongLong((<long long>code - 0x76) * (1LL << 32) + self.be(p, 4))
        if code < 0x7C:
            p = self.advance(5)
            return PyLong_FromLongLong((<long long>code - 0x7A) * (1LL << 40) + self.be(p, 5))
        p = self.advance(6)
        return PyLong_FromLongLong((<long long>code - 0x7E) * (1LL << 48) + self.be(p, 6))

    cdef inline long long be(self, Py_ssize_t p, int n):
        """The unsigned big-endian number in buf[p:p+n] (n <= 7; in bounds: advanced past)."""
        cdef unsigned long long v = 0
        cdef int i
        for i in range(n):
            v = (v << 8) | self.buf[p + i]
        return <long long>v

    cdef object int64(self):
        cdef Py_ssize_t p = self.advance(8)
        cdef unsigned long long v = 0
        cdef int i
        for i in range(8):
            v = (v << 8) | self.buf[p + i]
        return PyLong_FromLongLong(<long long>v)  # two's complement, as struct ">q"

    # --------------------------------------------------------- caches
    cdef object cache_get(self, Py_ssize_t index):
        cdef Py_ssize_t n = len(self.pcache)
        if not 0 <= index < n:
            raise self.fail(f"priority cache reference {index} beyond its {n} entries")
        value = self.pcache[index]
        if value is _BUILDING:
            raise self.fail("circular priority cache reference")
        self.charge(self.w_elements[index], self.w_bytes[index])  # a re-use costs what it stands for
        return value

    cdef object get_cache(self):
        index = self.read_int()
        if not 0 <= index < len(self.pcache):
            raise self.fail(f"priority cache reference {index} beyond its {len(self.pcache)} entries")
        return self.cache_get(index)

    cdef int reserve_weight(self, Py_ssize_t index) except -1:
        cdef Py_ssize_t capacity
        cdef long long* grown
        if index >= self.w_capacity:
            capacity = self.w_capacity * 2 if self.w_capacity else 64
            grown = <long long*>PyMem_Realloc(self.w_elements, capacity * sizeof(long long))
            if grown == NULL:
                raise MemoryError()
            self.w_elements = grown
            grown = <long long*>PyMem_Realloc(self.w_bytes, capacity * sizeof(long long))
            if grown == NULL:
                raise MemoryError()
            self.w_bytes = grown
            self.w_capacity = capacity
        self.w_elements[index] = 0
        self.w_bytes[index] = 0
        return 0

    cdef object put_cache(self):
        cdef Py_ssize_t index = len(self.pcache)
        self.reserve_weight(index)
        self.pcache.append(_BUILDING)  # reserve the slot: nested PUTs come after it
        cdef long long generation = self.resets
        cdef long long before_elements = self.elements
        cdef long long before_bytes = self.out_bytes
        value = self.read()
        if self.resets != generation:  # a reset or footer inside the value: the slot is gone
            raise self.fail("caches reset inside a cached value")
        self.pcache[index] = value
        # +1: the reference itself is one element where the value was one.
        self.w_elements[index] = self.elements - before_elements + 1
        self.w_bytes[index] = self.out_bytes - before_bytes
        return value

    cdef int clear_caches(self) except -1:
        self.resets += 1
        del self.pcache[:]
        del self.scache[:]
        return 0

    cdef object reset(self):
        self.clear_caches()
        return self.read()

    cdef int footer_at(self, Py_ssize_t p) except -1:
        """Validate the footer whose code byte is at ``p`` (magic, length, Adler-32)."""
        cdef Py_ssize_t q = self.advance(11)
        cdef unsigned long long length, checksum
        if self.data[p:p + 4] != _FOOTER_MAGIC:
            raise self.fail("invalid footer magic")
        length = self.be(q + 3, 4)
        if <long long>length != p - self.base:
            raise self.fail(f"footer says {length} bytes, the frame has {p - self.base}")
        checksum = self.be(q + 7, 4)
        if checksum != adler32(self.data[self.base:p + 8]):
            raise self.fail("footer checksum mismatch")
        self.base = self.pos
        self.clear_caches()
        return 0

    cdef object footer(self):
        self.footer_at(self.pos - 1)
        return self.read()

    # --------------------------------------------------------- bytes, strings
    cdef object counted_bytes(self):
        cdef Py_ssize_t n = self.read_count("byte length")
        self.charge(0, n)
        return self.take(n)

    cdef object chunked_bytes(self):
        cdef int code
        chunks = [self.take(self.read_count("byte chunk length"))]
        while True:
            code = self.buf[self.pos] if self.pos < self.end else -1
            self.pos += 1
            if code == 0xD8:
                chunks.append(self.take(self.read_count("byte chunk length")))
            elif code == 0xD9:
                chunks.append(self.take(self.read_count("byte chunk length")))
                self.charge(0, sum(map(len, chunks)))
                return b"".join(chunks)
            else:
                raise self.fail("chunked bytes end without their final chunk")

    cdef object counted_string(self):
        cdef Py_ssize_t n = self.read_count("string length")
        self.charge(0, n)
        cdef Py_ssize_t p = self.advance(n)
        return self.text(p, n)

    cdef object chunked_string(self):
        cdef int code
        chunks = [self.take(self.read_count("string chunk length"))]
        while True:
            code = self.buf[self.pos] if self.pos < self.end else -1
            self.pos += 1
            if 0xDA <= code < 0xE2:
                chunks.append(self.take(code - 0xDA))
                break
            if code == 0xE3 or code == 0xE2:
                chunks.append(self.take(self.read_count("string chunk length")))
                if code == 0xE3:
                    break
            else:
                raise self.fail("chunked string ends without its final chunk")
        self.charge(0, sum(map(len, chunks)))
        return java_utf8(b"".join(chunks))

    # --------------------------------------------------------- lists
    cdef list read_n(self, Py_ssize_t n):
        cdef Py_ssize_t i
        self.charge(n, 0)  # before anything is allocated
        self.enter()
        cdef list items = [None] * n
        for i in range(n):
            items[i] = self.read()
        self.depth -= 1
        return items

    cdef list closed_list(self):
        cdef list items = []
        self.enter()
        while True:
            if self.pos >= self.end:
                raise self.fail("truncated input: a closed list has no end")
            if self.buf[self.pos] == 0xFD:
                self.pos += 1
                self.depth -= 1
                return items
            self.charge(1, 0)
            items.append(self.read())

    cdef list open_list(self):
        cdef list items = []
        self.enter()
        while self.pos < self.end:  # an open list may also end with the input
            if self.buf[self.pos] == 0xFD:
                self.pos += 1
                break
            self.charge(1, 0)
            items.append(self.read())
        self.depth -= 1
        return items

    # --------------------------------------------------------- structs
    cdef object struct_type(self):
        tag = self.read()
        cdef Py_ssize_t fields = self.read_count("struct field count")
        try:
            entry = _HANDLERS.get(tag)
        except TypeError:  # an unhashable tag can have no handler
            entry = None
        if entry is None:
            entry = (K_TAGGED, None)
        kind, build = entry
        cdef _Struct s = _Struct(tag, fields, kind, build)
        self.scache.append(s)
        return self.handle(s)

    cdef object struct_ref(self, Py_ssize_t index):
        cdef Py_ssize_t n = len(self.scache)
        if not 0 <= index < n:
            raise self.fail(f"struct cache reference {index} beyond its {n} entries")
        return self.handle(<_Struct>self.scache[index])

    cdef object counted_struct(self):
        index = self.read_int()
        if not 0 <= index < len(self.scache):
            raise self.fail(f"struct cache reference {index} beyond its {len(self.scache)} entries")
        return self.struct_ref(index)

    cdef object builtin_struct(self, unsigned int code):
        return self.handle(<_Struct>_BUILTIN[code])

    cdef object handle(self, _Struct s):
        """The tag's handler (reader.handlers[tag]()), or a Tagged when it has none."""
        cdef int kind = s.kind
        build = s.build
        if kind == K_MAP:
            return self.map_handler()
        if kind == K_INSTANT:
            millis = self.read()
            if type(millis) is int:
                value = self.instants.get(millis)
                if value is not None:
                    return value
            try:
                value = build(millis)
            except BadFields as exc:
                raise self.fail(str(exc)) from None
            if len(self.instants) < 256:  # bounded: hostile input may hold many
                self.instants[millis] = value
            return value
        if kind == K_ONE:
            try:
                return build(self.read())
            except BadFields as exc:
                raise self.fail(str(exc)) from None
        if kind == K_TWO:
            first = self.read()
            try:
                return build(first, self.read())
            except BadFields as exc:
                raise self.fail(str(exc)) from None
        if kind == K_ARRAY:
            return self.read_n(self.read_count("array length"))
        return self.tagged(s.tag, s.fields)

    cdef object tagged(self, object tag, Py_ssize_t fields):
        cdef Py_ssize_t i
        if fields > self.end - self.pos:
            raise self.fail(f"struct field count {fields} exceeds the {self.end - self.pos} bytes left")
        self.charge(fields, 0)
        self.enter()
        cdef list items = [None] * fields
        for i in range(fields):
            items[i] = self.read()
        value = Tagged(tag, tuple(items))
        self.depth -= 1
        return value

    cdef object invalid(self, unsigned int code):
        if code == 0xFD:
            raise self.fail("end of list outside a list")
        raise self.fail(f"unknown code 0x{code:02X}")

    # --------------------------------------------------------- maps
    cdef object map_handler(self):
        cdef dict result
        cdef unsigned int code
        cdef Py_ssize_t p, q, i
        cdef long long key_elements = 0, key_bytes = 0
        cdef Py_ssize_t cached
        cdef dict twins = None  # cache index -> (key, its hashable twin), as in reader.py
        cdef const unsigned char* buf = self.buf
        cdef Py_ssize_t end = self.end
        if self.pos < end and buf[self.pos] == 0xED:  # the usual layout: no list built
            result = {}
            self.pos += 1
            self.enter()
            # Keys re-used from the cache are charged once the map ends: a map
            # holds each key once, so they cannot inflate it before that.
            while True:
                if self.pos >= end:
                    raise self.fail("truncated input: a map has no end")
                code = buf[self.pos]
                if code == 0xFD:
                    self.pos += 1
                    self.depth -= 1
                    self.charge(key_elements + 2 * len(result), key_bytes)
                    return result
                cached = -1
                if 0x80 <= code < 0xA0 and code - 0x80 < len(self.pcache):  # a cached key
                    i = code - 0x80
                    cached = i
                    k = self.pcache[i]
                    if k is _BUILDING:
                        raise self.fail("circular priority cache reference")
                    key_elements += self.w_elements[i] - 1  # -1: the entry is charged at the end
                    key_bytes += self.w_bytes[i]
                    # Saturate (no overflow): past any budget, so the charge at the
                    # end fails as reader.py's unbounded ints make it fail.
                    if key_elements > _SATURATED:
                        key_elements = _SATURATED
                    if key_bytes > _SATURATED:
                        key_bytes = _SATURATED
                    self.pos += 1
                    if (
                        self.elements + key_elements > self.max_elements
                        or self.out_bytes + key_bytes > self.max_bytes
                    ):  # the charge at the end must fail: fail before hashing more keys
                        self.charge(key_elements, key_bytes)
                else:  # beyond the cache, read() says so
                    k = self.read()
                if self.pos >= end:
                    raise self.fail("truncated input: a map key has no value")
                code = buf[self.pos]
                if 0xDA <= code < 0xE2:  # a short string
                    p = self.pos + 1
                    q = p + code - 0xDA
                    if q > end:
                        raise self.fail("truncated input in a string")
                    self.pos = q
                    key_bytes += q - p
                    v = self.text(p, q - p)
                elif code == 0xC3 and self.pos + 19 <= end and buf[self.pos + 1] == 0xD9 and buf[self.pos + 2] == 0x10:
                    v = self.uuid_at(buf + self.pos + 3)
                    self.pos += 19
                elif code == 0xE3 and self.pos + 1 < end and buf[self.pos + 1] < 0x40:
                    # A string of 8..63 bytes (names, sources): its length is one packed int.
                    p = self.pos + 2
                    q = p + buf[self.pos + 1]
                    if q > end:
                        raise self.fail("truncated input in a string")
                    self.pos = q
                    key_bytes += q - p
                    v = self.text(p, q - p)
                elif code == 0xFD:
                    raise self.fail("map has a key without a value")
                elif 0xA0 <= code < 0xB0:
                    # A cached struct: a nested map (props, context), an instant.
                    self.pos += 1
                    self.nested += 1
                    if self.nested > _MAX_NESTED_READS:
                        raise _TooDeep()
                    v = self.struct_ref(code - 0xA0)
                    self.nested -= 1
                elif code == 0xF5:
                    self.pos += 1
                    v = True
                elif code == 0xF6:
                    self.pos += 1
                    v = False
                else:
                    v = self.read()
                try:
                    result[k] = v
                except TypeError:  # e.g. a vector key: store its hashable twin
                    if twins is None:
                        twins = {}
                    twin = twins.get(cached)
                    if twin is None or (<tuple>twin)[0] is not k:  # (a reset may refill the slot)
                        twin = (k, freeze(k))
                        if cached >= 0:
                            twins[cached] = twin
                    result[(<tuple>twin)[1]] = v
        result = {}
        kvs = self.read()
        if type(kvs) is not list:
            raise self.fail(f"map expects a list, got {describe(kvs)}")
        if len(kvs) % 2:
            raise self.fail("map has a key without a value")
        for i in range(0, len(kvs), 2):
            k = kvs[i]
            try:
                result[k] = kvs[i + 1]
            except TypeError:
                result[freeze(k)] = kvs[i + 1]
        return result

    # --------------------------------------------------------- top level
    cdef object top(self):
        value = self.read()
        while self.pos < self.end:  # only footers may follow the value
            if self.buf[self.pos] != 0xCF:
                raise self.fail("trailing bytes after the value")
            self.pos += 1
            self.footer_at(self.pos - 1)
        return value


def decode(data: object, *, max_bytes: int, max_elements: int, max_depth: int) -> object:
    """reader.decode_pure, compiled; the limits must pass ``accepts`` (reader.decode checks)."""
    if not accepts(max_bytes, max_elements, max_depth):
        raise ValueError("limits outside the compiled decoder's range: use the pure reader")
    if type(data) is not bytes:
        data = bytes(data)
    decoder = _Decoder(data, max_bytes, max_elements, max_depth)
    _pause_gc()
    try:
        return decoder.top()
    except (_TooDeep, RecursionError):
        raise DecodeError("input nested too deeply") from None
    finally:
        _resume_gc()


# The cyclic garbage collector is paused while values are built (DESIGN §5.3):
# a batch allocates tens of thousands of containers, each run of the collector
# walks every object the process holds, and a decoded value has no cycles to
# find (priority-cache references to a value still being read fail). That
# was a third of the decode time. The GIL is held across these counters, so
# overlapping decodes in several threads pause it once and the last one out
# restores it; it is restored only if it was enabled when the first came in.
cdef int _decodes_running = 0
cdef int _collector_was_enabled = 0


cdef void _pause_gc():
    global _decodes_running, _collector_was_enabled
    if _decodes_running == 0:
        _collector_was_enabled = PyGC_Disable()
    _decodes_running += 1


cdef void _resume_gc():
    global _decodes_running
    _decodes_running -= 1
    if _decodes_running == 0 and _collector_was_enabled:
        PyGC_Enable()
