"""Fressian writer and reader: every built-in code, byte layouts, caches, footers, errors."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from uuid import UUID

import pytest

from tuiaudit.codec import (
    BigInt,
    Char,
    CljList,
    DecodeError,
    EncodeError,
    FrozenMap,
    Keyword,
    Symbol,
    Tagged,
    fressian_dumps,
    fressian_loads,
    kw,
)
from tuiaudit.codec.writer import str_bytes

U = UUID("4b1a3c1e-8e2f-4d3a-9c5b-0f1e2d3c4b5a")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def rt(value: object) -> object:
    return fressian_loads(fressian_dumps(value))


# --------------------------------------------------------------------------- ints

INT_LAYOUTS = [
    (0, "00"),
    (63, "3f"),
    (-1, "ff"),
    (64, "50 40"),
    (-2, "4f fe"),
    (-64, "4f c0"),
    (4095, "5f ff"),
    (-4096, "40 00"),
    (4096, "68 10 00"),
    (-(2**19), "60 00 00"),
    (2**19, "72 08 00 00"),
    (2**25 - 1, "73 ff ff ff"),
    (2**25, "76 02 00 00 00"),
    (-(2**33), "74 00 00 00 00"),
    (2**33, "7a 02 00 00 00 00"),
    (2**32, "77 00 00 00 00"),
    (2**40, "7b 00 00 00 00 00"),
    (1776643200000, "7b 9d a8 2f d4 00"),
    (2**48 - 1, "7e ff ff ff ff ff ff"),
    (2**41, "7e 02 00 00 00 00 00"),
    (-(2**49), "7c 00 00 00 00 00 00"),
    (2**49, "f8 00 02 00 00 00 00 00 00"),
    (2**63 - 1, "f8 7f ff ff ff ff ff ff ff"),
    (-(2**63), "f8 80 00 00 00 00 00 00 00"),
]


@pytest.mark.parametrize(("value", "layout"), INT_LAYOUTS)
def test_int_layouts_match_the_java_writer(value: int, layout: str) -> None:
    assert fressian_dumps(value) == h(layout)
    assert fressian_loads(h(layout)) == value


@pytest.mark.parametrize("width", range(1, 64))
def test_ints_round_trip_at_every_bit_width(width: int) -> None:
    for v in (2**width - 1, 2**width, -(2**width), -(2**width) - 1, 2 ** (width - 1) + 7):
        if -(2**63) <= v < 2**63:
            assert rt(v) == v


def test_reader_accepts_non_minimal_ints() -> None:
    # A writer may spend more bytes than needed; the value is what counts.
    assert fressian_loads(h("f8 00 00 00 00 00 00 00 05")) == 5
    assert fressian_loads(h("50 05")) == 5
    assert fressian_loads(h("76 00 00 00 07")) == 7


def test_int_beyond_64_bits_is_an_encode_error_naming_its_path() -> None:
    events = [{}, {}, {}, {kw("props"): {kw("n"): 2**64}}]
    with pytest.raises(EncodeError) as info:
        fressian_dumps(events)
    assert info.value.path == "[3][:props][:n]"
    assert "18446744073709551616" in str(info.value)
    assert "[3][:props][:n]" in str(info.value)
    assert rt(BigInt(2**64)) == 2**64  # the explicit bigint type is fine


# --------------------------------------------------------------------------- floats, constants


def test_doubles_floats_booleans_null() -> None:
    assert fressian_dumps(0.0) == h("fb")
    assert fressian_dumps(1.0) == h("fc")
    assert fressian_dumps(-2.5) == h("fa") + struct.pack(">d", -2.5)
    for v in (0.0, 1.0, -2.5, 1e300, -1e-300, float("inf"), 5e-324):
        assert rt(v) == v and type(rt(v)) is float
    assert str(rt(-0.0)) == "-0.0"  # sign kept (Java's writer would write DOUBLE_0)
    assert fressian_loads(h("f9") + struct.pack(">f", 1.5)) == 1.5  # 4-byte FLOAT
    assert [rt(True), rt(False), rt(None)] == [True, False, None]
    assert fressian_dumps([True, False, None])[-3:] == h("f5 f6 f7")


# --------------------------------------------------------------------------- strings, bytes


def test_string_packing() -> None:
    assert fressian_dumps("") == h("da")
    assert fressian_dumps("abcdefg") == h("e1") + b"abcdefg"
    assert fressian_dumps("abcdefgh") == h("e3 08") + b"abcdefgh"
    assert rt("x" * 100_000) == "x" * 100_000


def test_strings_use_java_utf8_with_surrogate_pairs() -> None:
    # Java's Fressian writes each UTF-16 unit: U+1F600 becomes two 3-byte sequences.
    assert fressian_dumps("😀") == h("e0 ed a0 bd ed b8 80")
    for s in ("ñandú ✓ 日本語", "emoji 😀 outside the BMP", "\x00", "lone \ud800 surrogate"):
        assert rt(s) == s
    assert fressian_loads(h("e3 04") + "😀".encode()) == "😀"  # plain UTF-8 is accepted too


def test_chunked_strings() -> None:
    data = h("e2 03") + b"abc" + h("e2 02") + b"de" + h("dc") + b"fg"
    assert fressian_loads(data) == "abcdefg"
    data = h("e2 03") + b"abc" + h("e3 02") + b"de"
    assert fressian_loads(data) == "abcde"
    # A surrogate pair split across chunks still joins into one character.
    pair = "😀".encode("utf-16-be").decode("utf-16-be")
    cesu = str_bytes(pair)[1:]
    assert fressian_loads(h("e2 03") + cesu[:3] + h("dd") + cesu[3:]) == "😀"
    with pytest.raises(DecodeError, match="chunked string"):
        fressian_loads(h("e2 01") + b"a" + h("00"))


def test_bytes_packed_counted_and_chunked() -> None:
    assert fressian_dumps(b"abc") == h("d3") + b"abc"
    assert fressian_dumps(b"abcdefgh") == h("d9 08") + b"abcdefgh"
    big = bytes(range(256)) * 600  # 153600 bytes: two full chunks and a tail
    enc = fressian_dumps(big)
    assert enc[:4] == h("d8 68 ff ff")  # BYTES_CHUNK, length 65535
    assert fressian_loads(enc) == big
    assert fressian_loads(h("d8 02") + b"ab" + h("d9 01") + b"c") == b"abc"
    with pytest.raises(DecodeError, match="final chunk"):
        fressian_loads(h("d8 02") + b"ab" + h("00"))


# --------------------------------------------------------------------------- uuid, instants


def test_uuid_layout_and_generic_path() -> None:
    assert fressian_dumps(U) == h("c3 d9 10") + U.bytes
    assert fressian_loads(h("c3 d9 10") + U.bytes) == U
    # The same bytes through a priority-cache reference (not the usual layout).
    assert fressian_loads(h("e6 cd c3 d9 10") + U.bytes + h("80")) == [U, U]
    with pytest.raises(DecodeError, match="16 bytes"):
        fressian_loads(h("c3 d3 01 02 03"))


def test_instants_are_utc_milliseconds() -> None:
    t = datetime(2025, 11, 30, 12, 34, 56, 789999, tzinfo=UTC)
    out = rt(t)
    assert out == t.replace(microsecond=789000)
    assert out.tzinfo is UTC
    other_zone = datetime(2025, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    assert rt(other_zone) == datetime(2025, 1, 1, tzinfo=UTC)
    assert rt(datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)).timestamp() == -0.001
    enc = fressian_dumps(datetime(1970, 1, 1, tzinfo=UTC))
    assert enc == h("ef e3 0c") + b"java/instant" + h("01 00")
    with pytest.raises(EncodeError, match="naive datetime"):
        fressian_dumps({kw("tracked-at"): datetime(2025, 1, 1)})


def test_instant_outside_python_years_stays_lossless() -> None:
    far = 400_000_000_000_000  # year ~14645, a valid java.time.Instant
    data = h("ef e3 0c") + b"java/instant" + h("01") + fressian_dumps(far)
    value = fressian_loads(data)
    assert value == Tagged("java/instant", (far,))
    assert fressian_loads(fressian_dumps(value)) == value


# --------------------------------------------------------------------------- keywords, caches


def test_keyword_type() -> None:
    assert Keyword("ns", "name") is kw("ns/name")
    assert Keyword("name") is kw("name") is Keyword(None, "name")
    k = kw("ns/a/b")  # split at the first slash, as Clojure does
    assert (k.namespace, k.name, str(k), repr(k)) == ("ns", "a/b", "ns/a/b", ":ns/a/b")
    assert kw("/").namespace is None and kw("/").name == "/"
    assert kw("a") != "a" and kw("a") != Symbol("a")
    assert {kw("a"): 1}[Keyword("a")] == 1
    assert sorted([kw("b"), kw("z/a"), kw("a")]) == [kw("a"), kw("b"), kw("z/a")]
    with pytest.raises(AttributeError):
        kw("a").name = "b"  # type: ignore[misc]
    import copy
    import pickle

    assert pickle.loads(pickle.dumps(kw("x/y"))) is kw("x/y")
    assert copy.deepcopy(kw("x")) is kw("x")


def test_map_layout_caches_keys_and_their_parts() -> None:
    enc = fressian_dumps({kw("a"): 1, kw("b"): kw("a")})
    expected = (
        h("ef e1") + b"clj/map" + h("01 ed")  # STRUCTTYPE "clj/map" 1, closed list
        + h("cd ef e3 0b") + b"clj/keyword" + h("02 f7 cd db") + b"a"  # PUT :a (PUT "a")
        + h("01")
        + h("cd a1 f7 cd db") + b"b"  # PUT :b, keyword struct from the cache
        + h("80")  # :a again: priority cache index 0
        + h("fd")
    )  # fmt: skip
    assert enc == expected
    assert fressian_loads(enc) == {kw("a"): 1, kw("b"): kw("a")}


def test_priority_cache_beyond_the_packed_range() -> None:
    value = {kw(f"key-{i:02}"): i for i in range(40)}
    enc = fressian_dumps([value, value])
    assert h("cc 50 40") in enc  # GET_PRIORITY_CACHE with index 64
    assert fressian_loads(enc) == [value, value]


def test_struct_cache_beyond_the_packed_range() -> None:
    tags = [Tagged(f"my/tag{i}", (i,)) for i in range(20)]
    enc = fressian_dumps(tags + tags)
    assert h("f0 10") in enc  # STRUCT with index 16
    assert fressian_loads(enc) == tags + tags


def test_cache_errors() -> None:
    with pytest.raises(DecodeError, match="priority cache reference 0"):
        fressian_loads(h("80"))
    with pytest.raises(DecodeError, match="circular"):
        fressian_loads(h("cd 80"))
    with pytest.raises(DecodeError, match="struct cache reference 3"):
        fressian_loads(h("a3"))


def test_reset_caches() -> None:
    # [PUT "abcdefgh", RESET, ref 0] -> the reference after the reset is invalid.
    body = h("cd e3 08") + b"abcdefgh"
    assert fressian_loads(h("e6") + body + h("80")) == ["abcdefgh"] * 2
    assert fressian_loads(h("fe 05")) == 5
    with pytest.raises(DecodeError, match="priority cache reference 0"):
        fressian_loads(h("e6") + body + h("fe 80"))
    with pytest.raises(DecodeError, match="caches reset inside a cached value"):
        fressian_loads(h("cd fe 00"))  # found by fuzzing


# --------------------------------------------------------------------------- lists, sets, maps


def test_list_forms() -> None:
    assert fressian_loads(h("e4")) == []
    assert fressian_loads(h("e7 01 02 03")) == [1, 2, 3]
    assert fressian_loads(h("ec 08") + bytes(range(8))) == list(range(8))
    assert fressian_loads(h("ed 01 02 fd")) == [1, 2]
    assert fressian_loads(h("ee 01 02 fd")) == [1, 2]
    assert fressian_loads(h("ee 01 02")) == [1, 2]  # an open list may end with the input
    enc = fressian_dumps(list(range(10)))
    assert enc == h("ef e3 0a") + b"clj/vector" + h("01 ec 0a") + bytes(range(10))


def test_collections_round_trip() -> None:
    value = {
        kw("vec"): [1, [2, []], ()],
        kw("set"): frozenset({1, "a", kw("k")}),
        kw("seq"): CljList([1, 2]),
        "string key": {U: "uuid key", 5: "int key", (1, 2): "vector key"},
        kw("empty"): {},
    }
    out = rt(value)
    assert out == {**value, kw("vec"): [1, [2, []], []]}
    assert type(out[kw("seq")]) is CljList and type(out[kw("set")]) is frozenset
    assert rt({1, 2}) == {1, 2}


def test_unhashable_keys_and_members_are_frozen() -> None:
    out = rt({frozenset({(1, 2)}): 1})  # a set holding a vector
    assert out == {frozenset({(1, 2)}): 1}
    data = fressian_dumps(Tagged("clj/map", ([[1, {kw("a"): 1}], "v"],)))
    out = fressian_loads(data)
    (key,) = out
    assert key == (1, FrozenMap({kw("a"): 1})) and hash(key)
    with pytest.raises(TypeError):
        key[1][kw("b")] = 2
    # A seq holding a map, as a set member (found by fuzzing).
    out = fressian_loads(fressian_dumps(Tagged("clj/set", ([CljList([{kw("a"): [1]}])],))))
    assert out == frozenset({CljList([FrozenMap({kw("a"): (1,)})])})


def test_builtin_struct_codes_of_plain_fressian() -> None:
    # What org.fressian's own handlers write: map, set, key, sym, inst, bigint, bigdec, arrays.
    assert fressian_loads(h("c0 e6 db") + b"k" + h("01")) == {"k": 1}
    assert fressian_loads(h("c1 e5 01")) == frozenset({1})
    assert fressian_loads(h("ca dc") + b"ns" + h("db") + b"x") is kw("ns/x")
    assert fressian_loads(h("c9 f7 db") + b"s") is Symbol("s")
    assert fressian_loads(h("c8 50 40")) == datetime(1970, 1, 1, 0, 0, 0, 64000, tzinfo=UTC)
    assert fressian_loads(h("c6 d2 01 00")) == BigInt(256)
    assert fressian_loads(h("c7 d2 ff 38 02")) == Decimal("-2.00")
    assert fressian_loads(h("b0 03 01 02 03")) == [1, 2, 3]  # long[]
    assert fressian_loads(h("b2 02 f5 f6")) == [True, False]  # boolean[]
    assert fressian_loads(h("c4 db") + b"a") == Tagged("regex", ("a",))


def test_clojure_extras_round_trip() -> None:
    for value in (
        Symbol("ns", "sym"),
        Char("x"),
        BigInt(-(2**100)),
        BigInt(0),
        Decimal("-12.3400"),
        Decimal("1E+5"),
        Fraction(-3, 7),
        Fraction(2**70, 3),
        CljList([kw("a")]),
    ):
        out = rt(value)
        assert out == value and type(out) is type(value)


def test_unknown_tags_decode_to_tagged_and_re_encode() -> None:
    data = h("ef e3 08") + b"my/point" + h("02 01 02")
    value = fressian_loads(data)
    assert value == Tagged("my/point", (1, 2))
    assert fressian_dumps(value) == data


# --------------------------------------------------------------------------- footers


def framed(body: bytes, *, magic: bytes = b"\xcf\xcf\xcf\xcf", length: int | None = None) -> bytes:
    head = magic + struct.pack(">I", len(body) if length is None else length)
    return body + head + struct.pack(">I", zlib.adler32(body + head))


def test_footer_after_the_value_is_validated() -> None:
    body = fressian_dumps({kw("a"): [1, 2]})
    assert fressian_loads(framed(body)) == {kw("a"): [1, 2]}
    with pytest.raises(DecodeError, match="footer magic"):
        fressian_loads(framed(body, magic=b"\xcf\xcf\xcf\x00"))
    with pytest.raises(DecodeError, match="footer says 3 bytes"):
        fressian_loads(framed(body, length=3))
    bad = bytearray(framed(body))
    bad[-1] ^= 1
    with pytest.raises(DecodeError, match="checksum"):
        fressian_loads(bytes(bad))


def test_footer_in_place_of_a_value_resets_caches_then_reads_on() -> None:
    # FressianReader: a footer where an object is expected is validated, the
    # caches are cleared, and the next object is read in its place.
    head = h("e6 cd e3 08") + b"abcdefgh"  # a list of 2, its first item cached at 0
    assert fressian_loads(framed(head) + h("db") + b"z") == ["abcdefgh", "z"]
    with pytest.raises(DecodeError, match="priority cache reference 0"):
        fressian_loads(framed(head) + h("80"))


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (h("e3 05 61"), "string length 5 exceeds the 1 bytes left"),
        (h("e7 01"), "truncated"),
        (h("ed 01 02"), "closed list has no end"),
        (h("7a 00 00"), "truncated"),
        (h("fd"), "end of list outside a list"),
        (h("c2"), "unknown code 0xC2"),
        (h("01 02"), "trailing bytes"),
        (h("ec f8 7f ff ff ff ff ff ff ff"), "invalid list length"),
        (h("e3 68 ff ff") + b"x", "exceeds the 1 bytes left"),
        (h("e3 ff"), "invalid string length -1"),
        (h("e3 db") + b"a", "expected an int, got str"),
        (h("db 80"), "invalid UTF-8"),
        (h("ef e1") + b"clj/map" + h("01 e5 01"), "map has a key without a value"),
        (h("ef e1") + b"clj/map" + h("01 ed 01 fd"), "map has a key without a value"),
        (h("ef e3 0b") + b"clj/keyword" + h("02 01 db") + b"a", "keyword parts must be strings"),
        (h("ef e3 0a") + b"clj/vector" + h("01 01"), "vector expects a list, got int"),
    ],
)
def test_malformed_input_raises_decode_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        fressian_loads(data)


def test_deep_nesting_is_a_decode_error_not_a_crash() -> None:
    with pytest.raises(DecodeError, match="nested too deeply"):
        fressian_loads(h("e5") * 100_000 + h("00"))


def test_unsupported_and_cyclic_values_are_encode_errors() -> None:
    with pytest.raises(EncodeError, match="type object") as info:
        fressian_dumps({kw("props"): [1, object()]})
    assert info.value.path == "[:props][1]"
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(EncodeError, match="nested too deeply"):
        fressian_dumps(loop)
    with pytest.raises(EncodeError) as info:
        fressian_dumps({"k": {U: 2**70}})
    assert info.value.path == f"['k'][{U!r}]"
