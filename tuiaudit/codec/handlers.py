"""What each Fressian tag means: the builders that turn a tag's already-read
fields into a Python value (the read handlers of org.fressian, data.fressian
and Penpot's backend). How the fields are read is the reader's business.

A builder raises ``BadFields`` with a reason when the fields cannot make the
value; the reader turns it into a DecodeError that says where.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any
from uuid import UUID

from tuiaudit.codec.types import BigInt, Char, CljList, Keyword, Symbol, Tagged, freeze

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class BadFields(Exception):
    """The fields of a tagged value are not what its tag needs."""


def describe(value: Any) -> str:
    return type(value).__name__ if value is not None else "nil"


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise BadFields(f"{what} needs an int, got {describe(value)}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise BadFields(f"{what} expects a list, got {describe(value)}")
    return value


def keyword(ns: Any, name: Any) -> Keyword:
    if type(name) is not str or not (ns is None or type(ns) is str):
        raise BadFields("keyword parts must be strings")
    result: Keyword = Keyword(ns, name)
    return result


def symbol(ns: Any, name: Any) -> Symbol:
    if type(name) is not str or not (ns is None or type(ns) is str):
        raise BadFields("symbol parts must be strings")
    result: Symbol = Symbol(ns, name)
    return result


def vector(items: Any) -> list[Any]:
    return _list(items, "vector")


def set_(items: Any) -> frozenset[Any]:
    items = _list(items, "set")
    try:
        return frozenset(items)
    except TypeError:  # e.g. a vector member: use its hashable twin
        return frozenset(freeze(v) for v in items)


def seq(items: Any) -> CljList:
    return CljList(_list(items, "list"))


@lru_cache(maxsize=4096)  # telemetry instants repeat (day-truncated); bounded for hostile input
def _instant(millis: int) -> Any:
    try:
        return _EPOCH + timedelta(milliseconds=millis)
    except OverflowError:  # beyond datetime's years 1..9999: keep it lossless
        return Tagged("java/instant", (millis,))


def instant(millis: Any) -> Any:
    return _instant(_int(millis, "an instant"))


def uuid(raw: Any) -> UUID:
    if type(raw) is not bytes or len(raw) != 16:
        raise BadFields("a uuid needs 16 bytes")
    return UUID(bytes=raw)


def char(code: Any) -> Char:
    n = _int(code, "a char")
    if not 0 <= n <= 0xFFFF:
        raise BadFields(f"invalid char code {n}")
    return Char(chr(n))


def bigint(raw: Any) -> BigInt:
    if type(raw) is not bytes or not raw:
        raise BadFields("a bigint needs its bytes")
    return BigInt(int.from_bytes(raw, "big", signed=True))


def bigdec(raw: Any, scale: Any) -> Decimal:
    unscaled = bigint(raw)
    digits = tuple(int(d) for d in str(abs(unscaled)))
    return Decimal((int(unscaled < 0), digits, -_int(scale, "a bigdec scale")))


def ratio(num: Any, den: Any) -> Fraction:
    if not isinstance(num, int) or not isinstance(den, int) or isinstance(num, bool) or not den:
        raise BadFields("a ratio needs two ints, the second not zero")
    return Fraction(int(num), int(den))


# tag -> (fields the builder takes, builder). "map" and the typed arrays need
# the reader itself (a fast path, a counted loop), so the reader adds those.
BUILDERS: dict[str, tuple[int, Callable[..., Any]]] = {
    "clj/keyword": (2, keyword),
    "key": (2, keyword),
    "clj/symbol": (2, symbol),
    "sym": (2, symbol),
    "clj/vector": (1, vector),
    "clj/set": (1, set_),
    "set": (1, set_),
    "linked/set": (1, set_),
    "clj/seq": (1, seq),
    "clj/list": (1, seq),
    "java/instant": (1, instant),
    "inst": (1, instant),
    "uuid": (1, uuid),
    "char": (1, char),
    "clj/bigint": (1, bigint),
    "bigint": (1, bigint),
    "bigdec": (2, bigdec),
    "clj/ratio": (2, ratio),
    "ratio": (2, ratio),
}
MAP_TAGS = ("clj/map", "map", "linked/map")
ARRAY_TAGS = ("int[]", "long[]", "float[]", "double[]", "boolean[]", "Object[]")
