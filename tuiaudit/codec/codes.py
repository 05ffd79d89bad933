"""Fressian byte codes (org.fressian.impl.Codes) and the ranges that go with them.

The layout of the format in one place, so the reader and the writer cannot
disagree about a number.
"""

from __future__ import annotations

PRIORITY_CACHE_PACKED_START = 0x80  # 0x80..0x9F: priority cache index 0..31
PRIORITY_CACHE_PACKED_END = 0xA0
STRUCT_CACHE_PACKED_START = 0xA0  # 0xA0..0xAF: struct cache index 0..15
STRUCT_CACHE_PACKED_END = 0xB0
LONG_ARRAY = 0xB0
DOUBLE_ARRAY = 0xB1
BOOLEAN_ARRAY = 0xB2
INT_ARRAY = 0xB3
FLOAT_ARRAY = 0xB4
OBJECT_ARRAY = 0xB5
MAP = 0xC0
SET = 0xC1
UUID = 0xC3
REGEX = 0xC4
URI = 0xC5
BIGINT = 0xC6
BIGDEC = 0xC7
INST = 0xC8
SYM = 0xC9
KEY = 0xCA
GET_PRIORITY_CACHE = 0xCC
PUT_PRIORITY_CACHE = 0xCD
PRECACHE = 0xCE
FOOTER = 0xCF
FOOTER_MAGIC = 0xCFCFCFCF
BYTES_PACKED_LENGTH_START = 0xD0  # 0xD0..0xD7: bytes of length 0..7
BYTES_CHUNK = 0xD8
BYTES = 0xD9
STRING_PACKED_LENGTH_START = 0xDA  # 0xDA..0xE1: string of 0..7 UTF-8 bytes
STRING_CHUNK = 0xE2
STRING = 0xE3
LIST_PACKED_LENGTH_START = 0xE4  # 0xE4..0xEB: list of 0..7 items
LIST = 0xEC
BEGIN_CLOSED_LIST = 0xED
BEGIN_OPEN_LIST = 0xEE
STRUCTTYPE = 0xEF
STRUCT = 0xF0
META = 0xF1
ANY = 0xF4
TRUE = 0xF5
FALSE = 0xF6
NULL = 0xF7
INT = 0xF8
FLOAT = 0xF9
DOUBLE = 0xFA
DOUBLE_0 = 0xFB
DOUBLE_1 = 0xFC
END_COLLECTION = 0xFD
RESET_CACHES = 0xFE

# Packed ints: code = ZERO + (value >> shift), followed by `shift // 8` bytes.
INT_PACKED_2_ZERO = 0x50  # codes 0x40..0x5F, 1 more byte, values -4096..4095
INT_PACKED_3_ZERO = 0x68  # 0x60..0x6F, 2 bytes, -2**19..2**19-1
INT_PACKED_4_ZERO = 0x72  # 0x70..0x73, 3 bytes, -2**25..2**25-1
INT_PACKED_5_ZERO = 0x76  # 0x74..0x77, 4 bytes, -2**33..2**33-1
INT_PACKED_6_ZERO = 0x7A  # 0x78..0x7B, 5 bytes, -2**41..2**41-1
INT_PACKED_7_ZERO = 0x7E  # 0x7C..0x7F, 6 bytes, -2**49..2**49-1

# Tags with a one-byte shortcut code (Handlers.tagToCode).
TAG_CODES = {
    "map": MAP,
    "set": SET,
    "uuid": UUID,
    "regex": REGEX,
    "uri": URI,
    "bigint": BIGINT,
    "bigdec": BIGDEC,
    "inst": INST,
    "sym": SYM,
    "key": KEY,
    "int[]": INT_ARRAY,
    "float[]": FLOAT_ARRAY,
    "double[]": DOUBLE_ARRAY,
    "long[]": LONG_ARRAY,
    "boolean[]": BOOLEAN_ARRAY,
    "Object[]": OBJECT_ARRAY,
}
# Shortcut code -> (tag, declared field count), as FressianReader.read has them.
CODE_TAGS = {
    MAP: ("map", 1),
    SET: ("set", 1),
    UUID: ("uuid", 2),
    REGEX: ("regex", 1),
    URI: ("uri", 1),
    BIGINT: ("bigint", 1),
    BIGDEC: ("bigdec", 2),
    INST: ("inst", 1),
    SYM: ("sym", 2),
    KEY: ("key", 2),
    INT_ARRAY: ("int[]", 2),
    LONG_ARRAY: ("long[]", 2),
    FLOAT_ARRAY: ("float[]", 2),
    BOOLEAN_ARRAY: ("boolean[]", 2),
    DOUBLE_ARRAY: ("double[]", 2),
    OBJECT_ARRAY: ("Object[]", 2),
}

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
BYTE_CHUNK_SIZE = 65535
