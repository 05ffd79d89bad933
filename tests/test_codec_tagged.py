"""Tagged JSON (the notation of the reference codec and the vectors)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from uuid import UUID

import orjson
import pytest

from tuiaudit.codec import (
    BigInt,
    Char,
    CljList,
    Keyword,
    Symbol,
    Tagged,
    from_tagged_json,
    kw,
    to_tagged_json,
)

U = "4b1a3c1e-8e2f-4d3a-9c5b-0f1e2d3c4b5a"

PAIRS = [
    (None, None),
    (True, True),
    (-7, -7),
    (2.5, 2.5),
    ("s", "s"),
    (kw("telemetry-events"), {"$kw": "telemetry-events"}),
    (kw("penpot/utm-source"), {"$kw": "penpot/utm-source"}),
    (UUID(U), {"$uuid": U}),
    (datetime(2026, 4, 20, tzinfo=UTC), {"$inst": 1776643200000}),
    (frozenset({1}), {"$set": [1]}),
    (CljList([1, kw("a")]), {"$list": [1, {"$kw": "a"}]}),
    (Symbol("ns", "f"), {"$sym": "ns/f"}),
    (Char("c"), {"$char": "c"}),
    (BigInt(5), {"$bigint": "5"}),
    (2**70, {"$bigint": str(2**70)}),
    (b"\x00\xff", {"$bytes": "AP8"}),
    (Fraction(1, 3), {"$ratio": ["1", "3"]}),
    (Decimal("1.50"), {"$bigdec": "1.50"}),
    (Tagged("my/tag", (1, "x")), {"$tagged": ["my/tag", [1, "x"]]}),
    ([1, [2]], [1, [2]]),
    ({kw("a"): {kw("b"): [1]}}, {"a": {"b": [1]}}),
    ({"route": "x", kw("n"): 1}, {"$map": [["route", "x"], [{"$kw": "n"}, 1]]}),
    ({kw("ns/k"): 1}, {"$map": [[{"$kw": "ns/k"}, 1]]}),
]


@pytest.mark.parametrize(("value", "tagged"), PAIRS, ids=[repr(t)[:40] for _, t in PAIRS])
def test_to_and_from_tagged_json(value: object, tagged: object) -> None:
    assert to_tagged_json(value) == tagged
    back = from_tagged_json(tagged)
    assert back == value
    assert type(back) is type(value) or isinstance(value, int | bytes)
    orjson.dumps(to_tagged_json(value))  # always serialisable


def test_plain_objects_have_simple_keyword_keys_even_with_a_slash() -> None:
    value = from_tagged_json({"a/b": 1, "c": {"d": None}})
    assert value == {Keyword(None, "a/b"): 1, kw("c"): {kw("d"): None}}
    assert next(iter(value)).namespace is None
    assert to_tagged_json(value) == {"a/b": 1, "c": {"d": None}}


def test_tagged_keys_of_maps_and_sets_are_made_hashable() -> None:
    value = from_tagged_json({"$map": [[[1, 2], "v"], [{"a": 1}, "w"]]})
    assert value[(1, 2)] == "v" and value[next(k for k in value if k != (1, 2))] == "w"
    assert from_tagged_json({"$set": [[1], [1]]}) == frozenset({(1,)})


def test_sets_print_in_a_stable_order() -> None:
    assert to_tagged_json(frozenset({"b", 3, "a"})) == {"$set": ["a", "b", 3]}


def test_unknown_tag_and_untaggable_value() -> None:
    with pytest.raises(ValueError, match=r"unknown tag '\$nope'"):
        from_tagged_json({"$nope": 1})
    with pytest.raises(TypeError, match="object"):
        to_tagged_json(object())


def test_out_of_range_instants_stay_lossless() -> None:
    far = 400_000_000_000_000
    assert from_tagged_json({"$inst": far}) == Tagged("java/instant", (far,))
    assert to_tagged_json(Tagged("java/instant", (far,))) == {"$inst": far}
