"""The Python side of Clojure data: keywords, symbols and the few other types
that have no exact Python counterpart, plus the codec's two errors.

Keywords and symbols are interned, so equality is identity and hashing is the
default object hash: a dict lookup keyed by a keyword never calls Python code,
which matters on the writer's hot path (every map key is a keyword).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar
from weakref import WeakValueDictionary

_STRONG_INTERN_CAP = 10_000


class DecodeError(ValueError):
    """The input is not a valid blob / Fressian value; the message says why."""


class EncodeError(ValueError):
    """A value cannot be encoded; ``path`` locates it, e.g. ``[3][:props][:n]``."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        self.parts: list[Any] = []  # innermost first, filled while unwinding
        super().__init__(f"{reason} at {path}" if path else reason)


class _Named:
    """Shared machinery of Keyword and Symbol: (namespace, name), interned."""

    __slots__ = ("__weakref__", "_str", "name", "namespace")
    _interned: ClassVar[dict[tuple[str | None, str], Any]]
    _overflow: ClassVar[WeakValueDictionary[tuple[str | None, str], Any]]
    _prefix: ClassVar[str]
    namespace: str | None
    name: str
    _str: str

    def __new__(cls, namespace: str | None, name: str | None = None) -> Any:
        if name is None:  # Keyword("name") is the simple keyword :name
            namespace, name = None, namespace
        if not isinstance(name, str) or not (namespace is None or isinstance(namespace, str)):
            raise TypeError(f"{cls.__name__} needs str parts, got {namespace!r}, {name!r}")
        key = (namespace, name)
        found = cls._interned.get(key)
        if found is not None:
            return found
        found = cls._overflow.get(key)
        if found is not None:
            return found
        self = object.__new__(cls)
        object.__setattr__(self, "namespace", namespace)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_str", name if namespace is None else f"{namespace}/{name}")
        # The first names live forever (plain dict: the fastest lookup); past the
        # cap, untrusted input could mint names without end, so those are held
        # weakly. Each name lives in one table only, so identity stays exact;
        # setdefault keeps it exact when two threads race on a new name.
        if len(cls._interned) < _STRONG_INTERN_CAP:
            return cls._interned.setdefault(key, self)
        return cls._overflow.setdefault(key, self)

    @classmethod
    def parse(cls, text: str) -> Any:
        """``"ns/name"`` or ``"name"``, split at the first ``/`` as Clojure does."""
        i = text.find("/")
        if i <= 0 or text == "/":
            return cls(None, text)
        return cls(text[:i], text[i + 1 :])

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, attr: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, tuple[str | None, str]]:
        return (type(self), (self.namespace, self.name))

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: object) -> Any:
        return self

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return self._prefix + self._str

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Named)
        return (self.namespace or "", self.name) < (other.namespace or "", other.name)


class Keyword(_Named):
    """A Clojure keyword: ``Keyword("ns", "name")``, ``Keyword("name")``, ``kw("ns/name")``."""

    __slots__ = ()
    _interned: ClassVar[dict[tuple[str | None, str], Any]] = {}  # the intern tables
    _overflow: ClassVar[WeakValueDictionary[tuple[str | None, str], Any]] = WeakValueDictionary()
    _prefix = ":"


class Symbol(_Named):
    """A Clojure symbol (tag ``clj/symbol``); rare in telemetry, kept for completeness."""

    __slots__ = ()
    _interned: ClassVar[dict[tuple[str | None, str], Any]] = {}  # the intern tables
    _overflow: ClassVar[WeakValueDictionary[tuple[str | None, str], Any]] = WeakValueDictionary()
    _prefix = "'"


def kw(text: str) -> Keyword:
    """The keyword written ``text`` (``"name"`` or ``"ns/name"``)."""
    result: Keyword = Keyword.parse(text)
    return result


@dataclass(frozen=True, slots=True)
class Tagged:
    """A value under a tag this codec has no handler for; re-encodes as it came."""

    tag: str
    values: tuple[Any, ...]


class Char(str):
    """A Clojure/Java character (tag ``char``): a one-character string."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Char({str.__repr__(self)})"


class BigInt(int):
    """An arbitrary-size integer written as ``clj/bigint`` (plain ints are 64-bit)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"BigInt({int.__repr__(self)})"


class CljList(tuple[Any, ...]):
    """A Clojure list/seq (tag ``clj/seq``), distinct from a vector (Python list)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"CljList({list(self)!r})"


class FrozenMap(dict[Any, Any]):
    """A hashable read-only dict: decoded maps used as map keys or set members."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def _readonly(self, *args: object, **kwargs: object) -> Any:
        raise TypeError("FrozenMap is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly


def freeze(value: Any) -> Any:
    """A hashable equivalent of ``value`` (vectors → tuples, maps → FrozenMap)."""
    t = type(value)
    if t is list or t is tuple:
        return tuple(freeze(v) for v in value)
    if t is dict:
        return FrozenMap((freeze(k), freeze(v)) for k, v in value.items())
    if t is set:
        return frozenset(freeze(v) for v in value)
    if t is Tagged:
        return Tagged(freeze(value.tag), tuple(freeze(v) for v in value.values))
    if t is CljList:
        return CljList(freeze(v) for v in value)
    if t is bytearray:
        return bytes(value)
    return value
