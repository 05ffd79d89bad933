"""Tagged JSON: Fressian values as plain JSON, in the notation of the reference
codec and the test vectors (shared/reference/README.md).

``{"$kw": "ns/name"}`` keyword, ``{"$uuid": "…"}``, ``{"$inst": epoch_ms}``,
``{"$set": […]}``, ``{"$sym": "…"}``, ``{"$char": "c"}``, ``{"$bigint": "123"}``,
``{"$map": [[k, v], …]}`` (a map whose keys are not all simple keywords),
``{"$list": […]}`` (a seq). A plain object is a map with simple-keyword keys,
an array a vector. Beyond the README, as the reference prints them:
``{"$bytes": base64url}`` and ``{"$ratio": ["n", "d"]}``; and for values this
codec alone produces: ``{"$bigdec": "1.50"}``, ``{"$tagged": [tag, [values…]]}``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from uuid import UUID

from tuiaudit.codec import codes as C
from tuiaudit.codec.blob import b64url_encode
from tuiaudit.codec.types import BigInt, Char, CljList, Keyword, Symbol, Tagged, freeze

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _millis(dt: datetime) -> int:
    d = dt - _EPOCH if dt.tzinfo is not None else dt.replace(tzinfo=UTC) - _EPOCH
    return (d.days * 86400 + d.seconds) * 1000 + d.microseconds // 1000


def _sort_key(item: Any) -> str:
    # json, not orjson: a Java string may hold a lone surrogate, which orjson refuses.
    return json.dumps(item, sort_keys=True)


def to_tagged_json(value: Any) -> Any:
    """A JSON-ready rendering of a decoded value (sets sorted, so output is stable)."""
    t = type(value)
    if value is None or t is str or t is bool or t is float:
        return value
    if t is int:
        return value if C.INT64_MIN <= value <= C.INT64_MAX else {"$bigint": str(value)}
    if isinstance(value, Keyword):
        return {"$kw": str(value)}
    if isinstance(value, dict):
        if all(type(k) is Keyword and k.namespace is None for k in value):
            return {k.name: to_tagged_json(v) for k, v in value.items()}
        return {"$map": [[to_tagged_json(k), to_tagged_json(v)] for k, v in value.items()]}
    if t is list or t is tuple:
        return [to_tagged_json(v) for v in value]
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    if isinstance(value, datetime):
        return {"$inst": _millis(value)}
    if isinstance(value, set | frozenset):
        return {"$set": sorted((to_tagged_json(v) for v in value), key=_sort_key)}
    if isinstance(value, CljList):
        return {"$list": [to_tagged_json(v) for v in value]}
    if isinstance(value, Symbol):
        return {"$sym": str(value)}
    if isinstance(value, Char):
        return {"$char": str(value)}
    if isinstance(value, BigInt):
        return {"$bigint": str(int(value))}
    if isinstance(value, int):  # IntEnum and friends
        return to_tagged_json(int(value))
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": b64url_encode(bytes(value))}
    if isinstance(value, Tagged):
        if value.tag == "java/instant" and len(value.values) == 1:  # outside datetime's range
            return {"$inst": value.values[0]}
        return {"$tagged": [to_tagged_json(value.tag), [to_tagged_json(v) for v in value.values]]}
    if isinstance(value, Decimal):
        return {"$bigdec": str(value)}
    if isinstance(value, Fraction):
        return {"$ratio": [str(value.numerator), str(value.denominator)]}
    if isinstance(value, list | tuple):
        return [to_tagged_json(v) for v in value]
    raise TypeError(f"no tagged JSON for a value of type {t.__name__}")


def _key(obj: Any) -> Any:
    return freeze(from_tagged_json(obj))


def from_tagged_json(obj: Any) -> Any:
    """The value a tagged JSON document stands for (inverse of to_tagged_json)."""
    t = type(obj)
    if t is dict:
        if len(obj) == 1:
            ((tag, arg),) = obj.items()
            if tag.startswith("$"):
                return _from_tag(tag, arg)
        return {Keyword(None, k): from_tagged_json(v) for k, v in obj.items()}
    if t is list:
        return [from_tagged_json(v) for v in obj]
    if t is int and not C.INT64_MIN <= obj <= C.INT64_MAX:
        return BigInt(obj)
    return obj


def _from_tag(tag: str, arg: Any) -> Any:
    if tag == "$kw":
        return Keyword.parse(arg)
    if tag == "$uuid":
        return UUID(arg)
    if tag == "$inst":
        try:
            return _EPOCH + timedelta(milliseconds=int(arg))
        except OverflowError:  # beyond datetime's years, as the reader keeps it
            return Tagged("java/instant", (int(arg),))
    if tag == "$set":
        return frozenset(_key(v) for v in arg)
    if tag == "$map":
        return {_key(k): from_tagged_json(v) for k, v in arg}
    if tag == "$list":
        return CljList(from_tagged_json(v) for v in arg)
    if tag == "$sym":
        return Symbol.parse(arg)
    if tag == "$char":
        return Char(arg)
    if tag == "$bigint":
        return BigInt(int(arg))
    if tag == "$bytes":
        return base64.urlsafe_b64decode(arg + "=" * (-len(arg) % 4))
    if tag == "$ratio":
        return Fraction(int(arg[0]), int(arg[1]))
    if tag == "$bigdec":
        return Decimal(arg)
    if tag == "$tagged":
        return Tagged(from_tagged_json(arg[0]), tuple(from_tagged_json(v) for v in arg[1]))
    raise ValueError(f"unknown tag {tag!r} in tagged JSON")
