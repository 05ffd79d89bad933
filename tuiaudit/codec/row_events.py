"""Telemetry events from audit rows, and their Fressian encoding (DESIGN §5.1).

:func:`row_to_event` is the event a row becomes; :func:`encode_events` is
``encode([row_to_event(r) for r in rows])`` byte for byte, written straight
from the rows (the shipper's hot path). :mod:`tuiaudit.batch` wraps them into
POST bodies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tuiaudit.codec import Keyword, kw
from tuiaudit.codec import codes as C
from tuiaudit.codec.writer import (
    _DOUBLE_0,
    _DOUBLE_1,
    _SMALL_INTS,
    _UUID_PREFIX,
    _pack_double,
    encode,
    inst_millis,
    int_bytes,
    str_bytes,
)
from tuiaudit.ids import is_uuid_string
from tuiaudit.policy import ships_strings
from tuiaudit.storage.base import AuditRow

_K_NAME = kw("name")
_K_TYPE = kw("type")
_K_SOURCE = kw("source")
_K_TRACKED_AT = kw("tracked-at")
_K_PROFILE_ID = kw("profile-id")
_K_PROPS = kw("props")
_K_CONTEXT = kw("context")
_K_ID = kw("id")

_kw_cache: dict[str, Keyword] = {}
_uuid_new = object.__new__
_set = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _key(k: Any) -> Keyword:
    """A map key as a keyword (props keys are strings in the store)."""
    found = _kw_cache.get(k)
    if found is None:
        found = kw(str(k))
        if len(_kw_cache) < 4096:  # keys are a small vocabulary; stay bounded anyway
            _kw_cache[k] = found
    return found


def _uuid(s: str) -> uuid.UUID:
    """``uuid.UUID(s)`` for a string already checked canonical, without its slow parsing
    (this runs for every UUID-valued prop of every event of a batch)."""
    u = _uuid_new(uuid.UUID)
    _set(u, "int", int(s.replace("-", ""), 16))
    _set(u, "is_safe", _SAFE_UNKNOWN)
    return u


def _str(v: str) -> Any:
    return _uuid(v) if len(v) == 36 and is_uuid_string(v) else v


def _value(v: Any) -> Any:
    """JSON value → Clojure-shaped value: keyword-keyed maps, UUID strings as UUIDs."""
    t = type(v)
    if t is str:
        return _str(v)
    if t is dict:
        return _map(v)
    if t is list:
        return [_value(x) for x in v if x is not None]
    return v


def _map(d: dict[str, Any]) -> dict[Keyword, Any]:
    """Keyword-keyed copy of ``d`` without null values (the wire has no nulls)."""
    out: dict[Keyword, Any] = {}
    keys = _kw_cache
    for k, v in d.items():
        t = type(v)
        if t is str:
            v = _uuid(v) if len(v) == 36 and is_uuid_string(v) else v
        elif v is None:
            continue
        elif not (t is bool or t is int or t is float):
            v = _value(v)
        out[keys.get(k) or _key(k)] = v
    return out


def _text_map(d: dict[str, Any]) -> dict[Keyword, Any]:
    """``_map`` whose strings stay strings, UUID-shaped ones too (navigate, DESIGN §3)."""
    keys = _kw_cache
    return {keys.get(k) or _key(k): _value(v) if type(v) is not str else v for k, v in d.items()}


def _props(row: AuditRow) -> dict[Keyword, Any]:
    if not row.props:
        return {}
    if ships_strings(row.source, row.type, row.name):
        return _text_map({k: v for k, v in row.props.items() if v is not None})
    return _map(row.props)


def row_to_event(row: AuditRow) -> dict[Keyword, Any]:
    """``{name, type, source, tracked-at, profile-id, props, context, id}`` of one row.

    ``props`` and ``context`` are always maps (``{}`` when empty); ``id`` lets a
    receiver de-duplicate; ``ip-addr`` and ``created-at`` are never sent.
    """
    return {
        _K_NAME: row.name,
        _K_TYPE: row.type,
        _K_SOURCE: row.source,
        _K_TRACKED_AT: row.tracked_at,
        _K_PROFILE_ID: row.profile_id,
        _K_PROPS: _props(row),
        _K_CONTEXT: _map(row.context) if row.context else {},
        _K_ID: row.id,
    }


# Batches are built in a worker thread. A thread that never waits keeps the GIL
# for a whole switch interval (5 ms) each time another thread asks for it, and
# every SQLite call and loop wake-up of the shipper's pipeline asks: give it
# away every few hundred rows instead (a 10,000-row page: 6 ms -> ~0.3 ms a hop).
_YIELD_MASK = 127
_yield_gil = time.sleep


class _Slow(Exception):
    """A value the event fast path does not cover: the batch takes the generic way."""


def encode_events(rows: Sequence[AuditRow]) -> bytearray:
    """The Fressian bytes of ``[row_to_event(r) for r in rows]``.

    Byte for byte what the generic encoder writes (same caches, same order),
    but straight from the rows: no event dicts, no ``UUID`` objects for UUID
    strings, the top-level keys written as their cache references. A row with
    anything JSON cannot hold (rows built in memory may) takes the generic way.
    """
    try:
        return _encode_rows(rows)
    except Exception:  # _Slow, or an error the generic encoder words with a path
        return encode([row_to_event(r) for r in rows])


def _encode_rows(rows: Sequence[AuditRow]) -> bytearray:
    """:func:`encode_events`' fast path: mirrors ``tuiaudit.codec.writer.encode``
    for maps, keywords, strings, ints, floats, bools, lists, UUIDs and instants."""
    out = bytearray()
    ext = out.extend
    app = out.append
    refs: dict[Any, bytes] = {}  # priority cache, as the writer's
    tags: dict[str, bytes] = {}  # struct cache (one field count per tag here)
    smemo: dict[str, bytes] = {}  # top-level strings (never UUID-converted)
    pmemo: dict[str, bytes] = {}  # props/context strings (UUID strings as UUIDs)
    dmemo: dict[datetime, bytes] = {}
    krefs: dict[str, bytes] = {}  # props/context key -> its keyword's reference
    next_ref = 0
    next_struct = 0
    map_begin = b""  # clj/map tag reference + BEGIN_CLOSED_LIST, once written

    def ref_bytes(index: int) -> bytes:
        if index < 32:
            return bytes((C.PRIORITY_CACHE_PACKED_START + index,))
        return b"\xcc" + int_bytes(index)

    def tag(name: str, fields: int) -> bytes:
        nonlocal next_struct
        ref = tags.get(name)
        if ref is not None:
            ext(ref)
            return ref
        code = C.TAG_CODES.get(name)
        if code is not None:
            ref = bytes((code,))
            ext(ref)
        else:
            index = next_struct
            next_struct += 1
            app(C.STRUCTTYPE)
            ext(str_bytes(name))
            ext(int_bytes(fields))
            ref = (
                bytes((C.STRUCT_CACHE_PACKED_START + index,))
                if index < 16
                else b"\xf0" + int_bytes(index)
            )
        tags[name] = ref
        return ref

    def cached_str(s: str) -> None:
        nonlocal next_ref
        ref = refs.get(s)
        if ref is not None:
            ext(ref)
        elif not s:
            app(C.STRING_PACKED_LENGTH_START)
        else:
            refs[s] = ref_bytes(next_ref)
            next_ref += 1
            app(C.PUT_PRIORITY_CACHE)
            ext(str_bytes(s))

    def key(k: Keyword) -> bytes:
        """Write keyword ``k``; return its reference bytes (valid from now on)."""
        nonlocal next_ref
        ref = refs.get(k)
        if ref is not None:
            ext(ref)
            return ref
        ref = refs[k] = ref_bytes(next_ref)
        next_ref += 1
        app(C.PUT_PRIORITY_CACHE)
        tag("clj/keyword", 2)
        if k.namespace is None:
            app(C.NULL)
        else:
            cached_str(k.namespace)
        cached_str(k.name)
        return ref

    def begin_map() -> None:
        nonlocal map_begin
        if map_begin:
            ext(map_begin)
        else:
            map_begin = tag("clj/map", 1) + bytes((C.BEGIN_CLOSED_LIST,))
            app(C.BEGIN_CLOSED_LIST)

    def pstr(v: str) -> bytes:
        """A props string's bytes: a canonical UUID string is written as a UUID."""
        b = None
        if len(v) == 36 and v[8] == "-" and v[13] == "-" and v[18] == "-" and v[23] == "-":
            # is_uuid_string without the regex: 32 hex digits besides those dashes
            # (fromhex skips spaces, so 16 bytes from 32 characters means none).
            h = v.replace("-", "")
            if len(h) == 32:
                try:
                    raw = fromhex(h)
                except ValueError:
                    raw = b""
                if len(raw) == 16:
                    b = _UUID_PREFIX + raw
        if b is None:
            b = str_bytes(v)
        if len(v) <= 64:
            pmemo[v] = b
        return b

    def pvalue(v: Any) -> None:
        """A props/context value, as ``_map``/``_value`` convert it and the writer writes it."""
        t = type(v)
        if t is str:
            b = pmemo.get(v)
            ext(b if b is not None else pstr(v))
        elif t is bool:
            app(C.TRUE if v else C.FALSE)
        elif t is int:
            if 0 <= v < 64:
                app(v)
            else:
                ext(int_bytes(v))
        elif t is dict:
            ext(map_begin)
            pmap(v)
        elif t is list:
            items = [x for x in v if x is not None]
            tag("clj/vector", 1)
            n = len(items)
            if n < 8:
                app(C.LIST_PACKED_LENGTH_START + n)
            else:
                app(C.LIST)
                ext(int_bytes(n))
            for x in items:
                pvalue(x)
        elif t is float:
            b = _pack_double(v)
            if b == _DOUBLE_0:
                app(C.DOUBLE_0)
            elif b == _DOUBLE_1:
                app(C.DOUBLE_1)
            else:
                app(C.DOUBLE)
                ext(b)
        else:
            raise _Slow

    def smap(d: dict[Any, Any]) -> None:
        """``pmap`` for props that ship as text, UUID-shaped strings too (navigate)."""
        for k, v in d.items():
            if v is None:
                continue
            ref = krefs.get(k)
            if ref is None:
                if type(k) is not str:
                    raise _Slow
                krefs[k] = key(_kw_cache.get(k) or _key(k))
            else:
                ext(ref)
            if type(v) is str:
                ext(sget(v) or top_str(v))
            else:
                pvalue(v)
        app(end)

    def pmap(d: dict[Any, Any]) -> None:
        """A props/context map's entries and its end (the caller wrote its beginning)."""
        for k, v in d.items():
            if v is None:
                continue
            ref = krefs.get(k)
            if ref is None:  # the key's first appearance defines its keyword
                if type(k) is not str:
                    raise _Slow
                krefs[k] = key(_kw_cache.get(k) or _key(k))
            else:
                ext(ref)
            t = type(v)
            if t is str:
                b = pmemo.get(v)
                ext(b if b is not None else pstr(v))
            elif t is int:
                if 0 <= v < 64:
                    app(v)
                elif -4096 <= v < 4096:
                    ext(small_ints[v + 4096])
                else:
                    ext(int_bytes(v))
            elif t is bool:
                app(true if v else false)
            else:
                pvalue(v)
        app(end)

    def top_str(v: Any) -> bytes:
        if type(v) is not str:
            raise _Slow
        b = smemo[v] = str_bytes(v)
        return b

    def instant(v: Any) -> bytes:
        if type(v) is not datetime:
            raise _Slow
        millis = int_bytes(inst_millis(v))
        ref = tags.get("java/instant")
        if ref is None:  # the first instant defines the tag: written here, not returned
            tag("java/instant", 1)
            ext(millis)
            dmemo[v] = tags["java/instant"] + millis
            return b""
        b = dmemo[v] = ref + millis
        return b

    def uuid_bytes(v: Any) -> bytes:
        if type(v) is not uuid.UUID:
            raise _Slow
        return _UUID_PREFIX + v.int.to_bytes(16)

    tag("clj/vector", 1)
    n = len(rows)
    if n < 8:
        app(C.LIST_PACKED_LENGTH_START + n)
    else:
        app(C.LIST)
        ext(int_bytes(n))
    k_name = k_type = k_source = k_tracked = k_profile = k_props = k_context = k_id = b""
    sget, dget = smemo.get, dmemo.get
    heads: dict[tuple[Any, ...], bytes] = {}  # (name, type, source, tracked-at) -> bytes
    texts: dict[tuple[str, str, str], bool] = {}  # (name, type, source) -> ships_strings
    uid = uuid.UUID
    small_ints = _SMALL_INTS
    fromhex = bytes.fromhex
    true, false = C.TRUE, C.FALSE
    end = C.END_COLLECTION
    for i, r in enumerate(rows):
        if not i & _YIELD_MASK and i:
            _yield_gil(0)
        name, typ, source, tracked = r.name, r.type, r.source, r.tracked_at
        profile, props, context, rid = r.profile_id, r.props, r.context, r.id
        if i:
            # Everything up to the profile id repeats (a few names, one day): one lookup.
            head = heads.get((name, typ, source, tracked))
            if head is None:
                head = heads[(name, typ, source, tracked)] = b"".join(
                    (
                        k_name,
                        sget(name) or top_str(name),
                        k_type,
                        sget(typ) or top_str(typ),
                        k_source,
                        sget(source) or top_str(source),
                        k_tracked,
                        dget(tracked) or instant(tracked),
                        k_profile,
                    )
                )
            ext(head)
        else:
            # The first event defines the cached keys; the rest refer to them.
            begin_map()
            k_name = map_begin + key(_K_NAME)
            ext(top_str(name))
            k_type = key(_K_TYPE)
            ext(sget(typ) or top_str(typ))
            k_source = key(_K_SOURCE)
            ext(sget(source) or top_str(source))
            k_tracked = key(_K_TRACKED_AT)
            ext(instant(tracked))
            k_profile = key(_K_PROFILE_ID) + _UUID_PREFIX
            ext(_UUID_PREFIX)
        if type(profile) is not uid or type(rid) is not uid:
            raise _Slow
        ext(profile.int.to_bytes(16))
        if k_props:
            ext(k_props)
        else:
            k_props = key(_K_PROPS) + map_begin
            ext(map_begin)
        if not props:
            app(end)
        elif type(props) is not dict:
            raise _Slow
        else:
            text = texts.get((name, typ, source))
            if text is None:
                text = texts[(name, typ, source)] = ships_strings(source, typ, name)
            if text:
                smap(props)
            else:
                pmap(props)
        if k_context:
            ext(k_context)
        else:
            k_context = key(_K_CONTEXT) + map_begin
            ext(map_begin)
        if not context:
            app(end)
        elif type(context) is dict:
            pmap(context)
        else:
            raise _Slow
        if k_id:
            ext(k_id)
        else:
            k_id = key(_K_ID) + _UUID_PREFIX
            ext(_UUID_PREFIX)
        ext(rid.int.to_bytes(16))
        app(end)
    return out
