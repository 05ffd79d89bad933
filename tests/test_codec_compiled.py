"""The compiled Fressian reader (tuiaudit/codec/_fressian_reader.pyx) against the
pure one (reader.decode_pure), its reference: on every input both give the same
value (type-exact) or the same DecodeError with the same text.

Inputs: random values (the property tests' strategy), the 60 reference vectors,
telemetry batches cut at every byte and damaged at random, random bytes,
cache bombs past the budget, deep nesting and footers. The byte-layout tests of
test_codec_fressian.py, test_codec_blob.py and test_codec_vectors.py run here
once more with the pure reader forced (they run with the compiled one where
they live), so both implementations pass the same suite without a copy of it.
"""

from __future__ import annotations

import gc
import os
import struct
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import test_codec_blob
import test_codec_fressian
import test_codec_vectors
from fuzz_support import FUZZ
from hostile_support import amplified_fressian, deep_fressian, empty_lists_fressian
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec_fressian import framed
from test_codec_properties import INTERESTING, values

from tuiaudit.codec import CljList, DecodeError, FrozenMap, Tagged, fressian_dumps, kw, reader
from tuiaudit.codec import codes as C
from tuiaudit.codec.blob import blob_unframe

try:
    from tuiaudit.codec import _fressian_reader as compiled
except ImportError:  # a checkout without the build: outside CI these tests skip
    compiled = None

LIMITS = {
    "max_bytes": reader.DEFAULT_MAX_OUTPUT_BYTES,
    "max_elements": reader.DEFAULT_MAX_ELEMENTS,
    "max_depth": reader.DEFAULT_MAX_DEPTH,
}
needs_compiled = pytest.mark.skipif(compiled is None, reason="the compiled reader is not built")


# --------------------------------------------------------------------- the build


def test_ci_has_the_compiled_reader() -> None:
    """Under CI=true the extension must be built: CI cannot silently lose it."""
    if os.environ.get("CI") != "true":
        pytest.skip("only CI requires the build (a plain checkout may lack a compiler)")
    assert compiled is not None, "tuiaudit.codec._fressian_reader is not built (pip install -e .)"
    assert compiled.__file__.endswith((".so", ".pyd")), compiled.__file__


@needs_compiled
def test_decode_uses_the_compiled_reader_unless_told_not_to() -> None:
    probe = "from tuiaudit.codec import reader; print(reader.implementation())"
    env = {k: v for k, v in os.environ.items() if k != "TUIAUDIT_PURE_PYTHON"}
    default = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert default.stdout.strip() == "compiled"
    forced = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "TUIAUDIT_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert forced.stdout.strip() == "pure"


@needs_compiled
def test_limits_beyond_the_compiled_range_use_the_pure_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert compiled is not None
    assert compiled.accepts(**LIMITS)
    assert not compiled.accepts(LIMITS["max_bytes"], LIMITS["max_elements"], 101)
    assert not compiled.accepts(2**70, 10, 10)
    assert not compiled.accepts(True, 10, 10)  # a bool is not a budget
    calls: list[int] = []
    monkeypatch.setattr(reader, "decode_pure", lambda data, **limits: calls.append(1) or "pure")
    assert reader.decode(b"\x01", max_depth=101) == "pure"
    assert reader.decode(b"\x01") == 1
    assert calls == [1]


# --------------------------------------------------------------------- the oracle


def exact(value: Any) -> Any:
    """A type-exact, comparable rendering: 1 vs True vs 1.0, list vs tuple, NaN bits."""
    t = type(value)
    if t is dict or t is FrozenMap:
        return (t.__name__, [(exact(k), exact(v)) for k, v in value.items()])
    if t is list or t is tuple or t is CljList:
        return (t.__name__, [exact(v) for v in value])
    if t is frozenset:
        return (t.__name__, sorted(repr(exact(v)) for v in value))
    if t is Tagged:
        return (t.__name__, exact(value.tag), exact(value.values))
    if t is float:
        return (t.__name__, struct.pack(">d", value))
    return (t.__name__, repr(value))


def outcome(decode: Callable[..., Any], data: bytes, limits: dict[str, int]) -> Any:
    try:
        return ("value", exact(decode(data, **limits)))
    except DecodeError as exc:
        return ("DecodeError", str(exc))
    except Exception as exc:  # compared, and then refused below
        return ("other", type(exc).__name__, str(exc))


def same(data: bytes, **limits: int) -> Any:
    """Both readers' outcome on ``data``, asserted equal; only DecodeError may be raised."""
    assert compiled is not None
    lim = {**LIMITS, **limits}
    pure = outcome(reader.decode_pure, data, lim)
    fast = outcome(compiled.decode, data, lim)
    assert fast == pure, f"compiled {fast!r:.300} != pure {pure!r:.300} on {data[:80].hex(' ')}"
    assert pure[0] != "other", pure
    return pure


# --------------------------------------------------------------------- valid input


@needs_compiled
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_random_values_decode_the_same(value: Any) -> None:
    assert same(fressian_dumps(value))[0] == "value"


def test_the_reference_vectors_are_all_here() -> None:
    assert len(VECTOR_BLOBS) >= 60


VECTOR_BLOBS = [case["blob"] for case in test_codec_vectors.CASES]


@needs_compiled
@pytest.mark.parametrize("blob", VECTOR_BLOBS, ids=[c["name"] for c in test_codec_vectors.CASES])
def test_reference_vectors_decode_the_same(blob: str) -> None:
    assert same(blob_unframe(blob))[0] == "value"


def telemetry(n: int) -> bytes:
    """A batch shaped like bench/codec.py's: keyword maps, uuids, instants, nested maps."""
    day = datetime(2025, 11, 30, tzinfo=UTC)
    return fressian_dumps(
        [
            {
                kw("name"): ["navigate", "create-file", "a-rather-long-event-name"][i % 3],
                kw("type"): "action",
                kw("source"): "telemetry:frontend",
                kw("tracked-at"): day,
                kw("profile-id"): uuid.UUID(int=i * 7919),
                kw("props"): {
                    kw("file-id"): uuid.UUID(int=i),
                    kw("n"): i * 1001,
                    kw("ok"): i % 2 == 0,
                },
                kw("context"): {kw("version"): "2.4.3", kw("os"): "linux", kw("ü"): "ñ"},
            }
            for i in range(n)
        ]
    )


@needs_compiled
def test_telemetry_batches_decode_the_same() -> None:
    for raw in (telemetry(1), telemetry(40)):
        assert same(raw)[0] == "value"


@needs_compiled
def test_memoised_strings_and_uuids_are_the_values_their_bytes_make() -> None:
    """The compiled reader shares repeated short strings and UUIDs (direct-mapped
    memos): thousands of distinct ones, evicting each other, stay exact."""
    texts = [f"{i:x}"[: i % 17] + "é" * (i % 3) for i in range(3000)]
    texts += ["", "a", "a\x00", "\x00", "ab" * 8, "ab" * 8 + "c", "abababababababac"]
    ids = [uuid.UUID(int=i * 0x9E3779B97F4A7C15 % 2**128) for i in range(3000)]
    ids += [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    value = [texts, ids, texts[::-1], ids[::-1], {kw("t"): texts[:50], kw("u"): ids[:50]}]
    assert same(fressian_dumps(value))[0] == "value"
    assert compiled is not None
    assert compiled.decode(fressian_dumps(value), **LIMITS) == value


# --------------------------------------------------------------------- hostile input


@needs_compiled
def test_every_truncation_of_a_batch_fails_the_same() -> None:
    for raw in (telemetry(1), telemetry(6)):
        for cut in range(len(raw)):
            assert same(raw[:cut])[0] == "DecodeError"


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A telemetry batch with random byte flips, sets and inserts of interesting codes."""
    data = bytearray(draw(st.sampled_from([telemetry(1), telemetry(5)])))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "set", "insert"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        else:
            data[at:at] = bytes(draw(st.lists(st.sampled_from(INTERESTING), max_size=6)))
    return bytes(data)


@needs_compiled
@FUZZ
@given(damaged())
def test_damaged_batches_fail_or_decode_the_same(data: bytes) -> None:
    same(data)


@needs_compiled
@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200) | st.lists(st.sampled_from(INTERESTING), max_size=60).map(bytes))
def test_random_bytes_fail_or_decode_the_same(data: bytes) -> None:
    same(data)


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(values, st.data())
def test_bit_flipped_values_fail_or_decode_the_same(value: Any, data: st.DataObject) -> None:
    raw = bytearray(fressian_dumps(value))
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, 2**24)) % (len(raw) * 8)
        raw[bit // 8] ^= 1 << (bit % 8)
    same(bytes(raw))


@needs_compiled
@settings(max_examples=100, deadline=None)
@given(
    size=st.integers(0, 4096),
    refs=st.integers(0, 300),
    budget=st.integers(0, 200_000),
    elements=st.integers(0, 400),
)
def test_cache_bombs_hit_the_same_budget(size: int, refs: int, budget: int, elements: int) -> None:
    result = same(amplified_fressian(size, refs), max_bytes=budget, max_elements=elements)
    if size * (refs + 1) > budget or refs + 2 > elements:
        assert result[0] == "DecodeError" and "budget" in result[1]


@needs_compiled
def test_big_bombs_fail_the_same() -> None:
    assert "budget" in same(amplified_fressian(2**20, 1000))[1]
    assert "budget" in same(empty_lists_fressian(2 * 2**20))[1]
    assert "budget" in same(doubling_chain(80))[1]
    assert "budget" in same(doubling_chain(80), max_elements=2**61)[1]  # the compiled range's edge


def doubling_chain(levels: int, first_index: int = 0) -> bytes:
    """A list of cached pairs, each of two references to the one before it (level 0
    at cache index ``first_index``): every level doubles what a reference stands
    for, in two to four bytes."""
    data = bytes([C.LIST]) + fressian_dumps(levels)
    data += bytes([C.PUT_PRIORITY_CACHE, C.LIST_PACKED_LENGTH_START + 2, 0, 0])
    for level in range(1, levels):
        index = first_index + level - 1
        ref = (
            bytes([0x80 + index])
            if index < 32
            else bytes([C.GET_PRIORITY_CACHE]) + fressian_dumps(index)
        )
        data += bytes([C.PUT_PRIORITY_CACHE, C.LIST_PACKED_LENGTH_START + 2]) + ref * 2
    return data


def heavy_key_map(width: int, repeats: int, *, reset: bool = False, seq: bool = False) -> bytes:
    """A cached vector of ``width`` zeros, then a map using it ``repeats`` times as a key
    (a map key must be hashable: each use needs its frozen twin). With ``reset``, the
    caches are cleared after the first entry and slot 0 refilled with another vector.
    With ``seq``, the key is a clj/seq (a hashable CljList) instead."""
    head = bytes([0xE6, C.PUT_PRIORITY_CACHE])
    if seq:
        head += bytes([C.STRUCTTYPE, 0xE1]) + b"clj/seq" + bytes([1])
    head += bytes([C.LIST]) + fressian_dumps(width) + bytes(width)
    entries = bytes([0x80, 0])
    if reset:
        entries += bytes([0x80, C.RESET_CACHES, C.PUT_PRIORITY_CACHE, 0xE5, 7])
    entries += bytes([0x80, 0]) * (repeats - 1)
    struct_map = bytes([C.STRUCTTYPE, 0xE1]) + b"clj/map" + bytes([1, C.BEGIN_CLOSED_LIST])
    return head + struct_map + entries + bytes([C.END_COLLECTION])


@needs_compiled
@pytest.mark.parametrize("reset", [False, True], ids=["same-key", "slot-refilled"])
def test_a_repeated_unhashable_cached_key_is_frozen_once_per_map(
    monkeypatch: pytest.MonkeyPatch, reset: bool
) -> None:
    """Found while writing this file: a map repeating one cached vector key froze it
    at every use, before the key's deferred charge; 12 KB of input cost 1.2 s of
    CPU and the work grew as width x repeats. Both readers now freeze it once."""
    assert compiled is not None
    data = heavy_key_map(1000, 200, reset=reset)
    for module in (reader, compiled):
        frozen: list[Any] = []
        real = module.freeze  # type: ignore[attr-defined]

        def counting(value: Any, real: Any = real, frozen: list[Any] = frozen) -> Any:
            frozen.append(value)
            return real(value)

        monkeypatch.setattr(module, "freeze", counting)
        result = same(data, max_elements=10**7)
        assert frozen and len(frozen) == (2 if reset else 1), module
        monkeypatch.undo()
    assert result[0] == "value"
    value = reader.decode(data, max_elements=10**7)
    expected = {tuple([0] * 1000): 0} if not reset else {tuple([0] * 1000): [7], (7,): 0}
    assert value == [[0] * 1000, expected]
    # Hashable or not, re-using a key of 10,000 elements 1,000 times fails
    # inside the map, once the charge due at its end is bound to fail.
    for data in (heavy_key_map(10_000, 1_000), heavy_key_map(10_000, 1_000, seq=True)):
        outcome = same(data)
        assert "budget of 1000000 elements" in outcome[1]
        at = int(outcome[1].split("at byte ")[1].split(" ")[0])
        assert at < len(data) - 1_000


@needs_compiled
@pytest.mark.parametrize("depth", [1, 99, 100, 101, 5_000])
def test_deep_nesting_fails_the_same(depth: int) -> None:
    result = same(deep_fressian(depth))
    assert (result[0] == "value") is (depth <= 100)
    maps = (
        b"".join(
            [bytes([C.STRUCTTYPE, 0xE3, 7]) + b"clj/map" + bytes([1, C.BEGIN_CLOSED_LIST, 0])]
            + [bytes([0xA0, C.BEGIN_CLOSED_LIST, 0])] * (depth - 1)
        )
        + bytes([1])
        + bytes([C.END_COLLECTION]) * depth
    )
    assert (same(maps)[0] == "value") is (depth <= 100)
    assert same(deep_fressian(depth), max_depth=7)[0] == ("value" if depth <= 7 else "DecodeError")


@needs_compiled
@pytest.mark.parametrize(
    "head",
    [
        bytes([C.PUT_PRIORITY_CACHE]),  # a cache PUT around a cache PUT around ...
        bytes([C.RESET_CACHES]),
        bytes([C.STRUCTTYPE]),  # a struct whose tag is a struct whose tag is ...
        bytes([C.INST]),  # an instant whose field is an instant ...
    ],
    ids=["put", "reset", "struct-tag", "instant"],
)
def test_reads_nested_without_containers_fail_the_same(head: bytes) -> None:
    assert same(head * 50_000 + b"\x00") == ("DecodeError", "input nested too deeply")


@needs_compiled
def test_footers_and_resets_decode_and_fail_the_same() -> None:
    body = fressian_dumps({kw("a"): [1, 2], kw("b"): "x" * 40})
    good = framed(body)
    assert same(good)[0] == "value"
    assert same(good + framed(b""))[0] == "value"
    for bad in (
        framed(body, magic=b"\xcf\xcf\xcf\x00"),
        framed(body, length=3),
        good[:-1] + bytes([good[-1] ^ 1]),
        good[:-3],
        good + b"\x01",
    ):
        assert same(bad)[0] == "DecodeError"
    head = bytes([0xE6, C.PUT_PRIORITY_CACHE, C.STRING, 8]) + b"abcdefgh"
    assert same(framed(head) + bytes([0xDB]) + b"z")[0] == "value"
    assert same(framed(head) + bytes([0x80]))[0] == "DecodeError"
    assert same(bytes([0xE6, C.PUT_PRIORITY_CACHE, C.RESET_CACHES, 1, 0x80]))[0] == "DecodeError"


@needs_compiled
def test_the_collector_is_paused_only_while_decoding() -> None:
    assert compiled is not None
    assert gc.isenabled()
    compiled.decode(telemetry(3), **LIMITS)
    assert gc.isenabled()
    with pytest.raises(DecodeError):
        compiled.decode(telemetry(3)[:-5], **LIMITS)
    assert gc.isenabled()
    gc.disable()
    try:
        compiled.decode(telemetry(3), **LIMITS)
        assert not gc.isenabled()  # a program's choice is kept
    finally:
        gc.enable()


# --------------------------------------------------------------------- the suite, pure


@pytest.fixture(autouse=True)
def _pure_for_the_borrowed_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The tests borrowed below run with reader.decode forced to the pure reader."""
    if request.function.__module__ != __name__:
        monkeypatch.setattr(reader, "compiled", None)
        assert reader.implementation() == "pure"
    yield


for _module in (test_codec_fressian, test_codec_blob, test_codec_vectors):
    for _name, _test in list(vars(_module).items()):
        if _name.startswith("test_") and callable(_test):
            globals()[f"test_pure_{_module.__name__.removeprefix('test_')}_{_name[5:]}"] = _test
