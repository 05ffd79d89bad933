"""An ingest worker's rows, made in the one pass (issue 20: the worker's CPU).

``prepare_and_apply_frontend_columns`` makes the stored rows' column tuples
along with the rows; they must be ``rows_columns`` of the rows mode B stores
(each full row, then its copy unless withheld). A worker sends them packed
(``pack_rows``): the frame the daemon reads holds ``rows_params`` of the rows
one process stores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from fuzz_support import FUZZ
from hypothesis import given
from hypothesis import strategies as st
from test_policy_frontend_pass import (
    NOW,
    SITES,
    UUIDS,
    batches,
    counted_ids,
    one_pass,
    two_steps,
)

from tuiaudit import policy_apply
from tuiaudit.audit import AuditLog
from tuiaudit.daemon.ingest_channel import RemoteStore, pack_rows
from tuiaudit.events import ValidationError
from tuiaudit.policy import POLICY
from tuiaudit.policy_frontend import (
    prepare_and_apply_frontend,
    prepare_and_apply_frontend_columns,
)
from tuiaudit.site_policy import SitePolicy
from tuiaudit.storage.base import AuditRow
from tuiaudit.storage.columns import (
    ColumnRows,
    rows_columns,
    rows_params,
    ts_text,
)

_FORMAT = "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ"


def _stored(rows: list[AuditRow], shared: list[AuditRow | None]) -> list[AuditRow]:
    """Mode B's rows in the order they are stored (AuditLog._store_rows)."""
    out: list[AuditRow] = []
    for row, copy in zip(rows, shared, strict=True):
        out.append(row)
        if copy is not None:
            out.append(copy)
    return out


def _both(batch: list[Any], site: SitePolicy, rid: uuid.UUID | None) -> Any:
    """The one pass without and with the columns, with and without the rows of the
    events it takes (the same ids: a counter; the same rule counts)."""
    kwargs: dict[str, Any] = {
        "profile_id": UUIDS[1],
        "ip_addr": "10.1.2.3",
        "now": NOW,
        "request_id": rid,
        "policy": POLICY,
        "site": site,
    }
    with counted_ids():
        try:
            plain = prepare_and_apply_frontend(batch, **kwargs)
        except ValidationError as exc:
            plain = exc.errors
    before = Counter(policy_apply.COUNTS)
    with counted_ids():
        try:
            rows, shared, columns = prepare_and_apply_frontend_columns(batch, **kwargs)
        except ValidationError as exc:
            return plain, exc.errors, None
    counted = Counter(policy_apply.COUNTS) - before
    before = Counter(policy_apply.COUNTS)
    with counted_ids():
        two_rows, two_shared, only = prepare_and_apply_frontend_columns(batch, **kwargs, rows=False)
    if only is None:  # the caller starts again: nothing was counted
        assert Counter(policy_apply.COUNTS) == before
        assert columns is None
    else:
        assert Counter(policy_apply.COUNTS) - before == counted
        assert only == columns
        # the rows of the events that took the two steps (in order), with their copies
        shown = [repr(r) for r in rows]
        at = [shown.index(repr(r)) for r in two_rows]
        assert at == sorted(at)
        assert repr(two_shared) == repr([shared[k] for k in at])
    return plain, (rows, shared), columns


def _check(batch: list[Any], site: SitePolicy, rid: uuid.UUID | None) -> None:
    plain, made, columns = _both(batch, site, rid)
    if not isinstance(made, tuple):  # a rejected batch: the same errors
        assert made == plain
        return
    rows, shared = made
    assert (repr(rows), repr(shared)) == (repr(plain[0]), repr(plain[1]))
    stored = _stored(rows, shared)
    assert columns == _reference_columns(stored)
    if columns is not None:
        assert ColumnRows(columns).params() == rows_params(stored)


def _reference_columns(rows: list[AuditRow]) -> Any:
    """rows_columns of the stored rows; None where orjson refuses a value."""
    try:
        return rows_columns(rows)
    except (TypeError, ValueError):
        return None


@FUZZ
@given(
    batch=batches(),
    site=st.sampled_from(["default", "default", *sorted(SITES)]),
    rid=st.sampled_from([None, uuid.UUID(UUIDS[2])]),
)
def test_the_one_pass_columns_are_those_of_the_stored_rows(
    batch: list[Any], site: str, rid: uuid.UUID | None
) -> None:
    # Twice each: the second run meets the memos and plans the first one filled.
    for _ in range(2):
        _check(batch, SITES[site], rid)


TIMESTAMPS = [
    (NOW - timedelta(milliseconds=5)).isoformat(timespec="milliseconds"),  # +00:00
    (NOW - timedelta(seconds=1)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    (NOW - timedelta(seconds=2)).isoformat(timespec="milliseconds").replace("+00:00", "-00:00"),
    (NOW - timedelta(seconds=3)).isoformat(timespec="microseconds"),  # whole ms, 6 digits
    (NOW - timedelta(seconds=4)).isoformat(timespec="milliseconds").replace("T", "t"),
    (NOW - timedelta(seconds=5)).isoformat(timespec="milliseconds").replace("T", " "),
    (NOW - timedelta(seconds=6)).isoformat(timespec="milliseconds").replace(".", ","),
    (NOW - timedelta(seconds=7)).isoformat(timespec="seconds"),
    "2026-W49-7T11:59:59.000+00:00",  # an ISO week date of the same length
    "2026-12-06T00:00:00.000Z",
    "2026-12-06T11:00:00.000+01:00",
    (NOW - timedelta(hours=2)).isoformat(timespec="milliseconds"),  # before the window
    (NOW + timedelta(minutes=5)).isoformat(timespec="milliseconds"),  # after it
]


@pytest.mark.parametrize("rid", [None, uuid.UUID(UUIDS[2])])
def test_every_timestamp_form_gives_the_stored_rows_columns(rid: uuid.UUID | None) -> None:
    """The client's timestamp text is taken only when it is ts_text's; the same
    context again (its texts remembered) around each kind of timestamp."""
    context = {"initiator": "app", "version": "2.1.0", "browser": "firefox"}
    batch = [
        {
            "name": "update-file",
            "type": "action",
            "timestamp": ts,
            "props": {"revn": i, "title": "Quarterly plan", "file-id": UUIDS[0]},
            "context": dict(context),
        }
        for i, ts in enumerate([t for ts in TIMESTAMPS for t in (ts, TIMESTAMPS[0])])
    ]
    _check(batch, SITES["default"], rid)
    _, _, columns = _both(batch, SITES["default"], rid)
    assert columns is not None and len(columns) == 2 * len(batch)


def test_a_value_orjson_refuses_gives_no_columns() -> None:
    """A lone surrogate (the direct API; HTTP bodies cannot hold one): no tuples, the
    store's parameters way (then its error), as rows_columns refuses it."""
    batch = [
        {
            "name": "update-file",
            "type": "action",
            "timestamp": NOW.isoformat(timespec="milliseconds"),
            "props": {"title": t},
        }
        for t in ["plan", "x\ud800y", "plan"]
    ]
    _, made, columns = _both(batch, SITES["default"], None)
    assert isinstance(made, tuple)
    assert columns is None
    assert _reference_columns(_stored(*made)) is None


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5, minutes=-30))]),
    )
)
def test_ts_text_is_the_fixed_width_format(dt: datetime) -> None:
    u = dt.astimezone(UTC) if dt.tzinfo not in (None, UTC) else dt
    want = _FORMAT % (u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond)
    assert ts_text(dt) == want
    whole = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    w = whole.astimezone(UTC) if whole.tzinfo not in (None, UTC) else whole
    assert ts_text(whole) == _FORMAT % (
        w.year, w.month, w.day, w.hour, w.minute, w.second, w.microsecond
    )  # fmt: skip


@pytest.mark.parametrize("n", [0, 1, 31, 32, 255, 256, 65535, 65536, 70000])
def test_packed_rows_are_the_rows_params_as_msgpack(n: int) -> None:
    """Every str length msgpack writes differently, NUL and non-ASCII text, NULL."""
    text = ("é\x00" * n)[: max(n - 1, 0)] + ("x" if n else "")
    rows = [(str(uuid.UUID(UUIDS[0])), text, None), ("b", "", "c")]
    data = pack_rows(rows)
    assert data is not None
    assert msgspec.msgpack.decode(data) == [list(r) for r in rows]
    # a UUID (the one pass's id) is written as its canonical text
    assert pack_rows([(uuid.UUID(UUIDS[0]), text, None)]) == pack_rows(rows[:1])


def test_a_value_msgpack_cannot_carry_gives_no_packed_rows() -> None:
    assert pack_rows([("a", "lone \ud800 surrogate", None)]) is None


class _Channel:
    def __init__(self) -> None:
        self.asks: list[Any] = []
        self._encode = msgspec.msgpack.Encoder().encode

    async def ask(self, kind: str, body: Any = None) -> Any:
        # What the daemon reads: the frame decoded.
        self.asks.append(msgspec.msgpack.decode(self._encode([1, kind, body]))[1:])
        return None


@pytest.mark.parametrize("title", ["Quarterly plan", "x\x00y"], ids=repr)
def test_a_worker_sends_packed_what_one_process_stores(title: str) -> None:
    """AuditLog.ingest_frontend into a worker's RemoteStore (the one pass makes the
    column tuples) sends rows_params of the rows a store in one process is given,
    packed (a NUL too)."""

    taken: list[AuditRow] = []

    class Taking:
        async def insert_rows(self, rows: list[AuditRow], jobs: Any = ()) -> None:
            taken[:] = rows

        async def add_drops(self, reason: str, n: int) -> None:
            return None

    batch = [
        {
            "name": "update-file",
            "type": "action",
            "timestamp": (NOW - timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "props": {"revn": i, "title": title, "file-id": UUIDS[0]},
            "context": {"initiator": "app", "version": "2.1.0"},
        }
        for i in range(5)
    ]
    batch.insert(2, {**batch[0], "props": {"revn": 1.5, "x": [1]}})  # the two steps' way
    flags = ["audit-log", "telemetry"]
    channel = _Channel()
    remote = RemoteStore(channel, "sqlite")  # type: ignore[arg-type]
    assert remote.takes_columns
    clock = lambda: NOW  # noqa: E731

    async def both() -> tuple[int, int]:
        with counted_ids():
            one = await AuditLog(Taking(), flags, clock=clock).ingest_frontend(  # type: ignore[arg-type]
                batch, profile_id=UUIDS[1], ip_addr="10.1.2.3", request_id=None
            )
        with counted_ids():
            two = await AuditLog(remote, flags, clock=clock).ingest_frontend(  # type: ignore[arg-type]
                batch, profile_id=UUIDS[1], ip_addr="10.1.2.3", request_id=None
            )
        return one, two

    assert asyncio.run(both()) == (12, 12)
    assert len(channel.asks) == 1
    kind, (data, count, jobs) = channel.asks[0]
    assert (kind, count, jobs) == ("packed", 12, [])
    assert msgspec.msgpack.decode(data) == [list(p) for p in rows_params(taken)]


def test_remote_store_sends_rows_and_column_rows_packed() -> None:
    rows = [
        AuditRow(
            uuid.UUID(UUIDS[0]), "x", "action", "frontend", uuid.UUID(UUIDS[1]), "1.2.3.4",
            {"a": 1}, {}, NOW, NOW,
        )
    ]  # fmt: skip
    channel = _Channel()
    remote = RemoteStore(channel, "sqlite")  # type: ignore[arg-type]
    columns = rows_columns(rows)
    assert columns is not None
    asyncio.run(remote.insert_rows(rows))
    asyncio.run(remote.insert_rows(ColumnRows(columns)))  # type: ignore[arg-type]
    params = [list(p) for p in rows_params(rows)]
    assert [(kind, msgspec.msgpack.decode(body[0]), body[1:]) for kind, body in channel.asks] == [
        ("packed", params, [1, []]),
        ("packed", params, [1, []]),
    ]
    # a value msgpack cannot carry: the parameters (the daemon's store says what is wrong)
    # (which no frame carries either: the worker's ask fails, nothing is stored)
    bad = [dataclasses.replace(rows[0], name="lone \ud800")]
    with pytest.raises(UnicodeEncodeError):
        asyncio.run(RemoteStore(channel, "sqlite").insert_rows(bad))  # type: ignore[arg-type]
    assert not RemoteStore(channel, "postgres").takes_columns  # type: ignore[arg-type]


NUL_TEXTS = ["x\x00y", "\\u0000", "a\\\\u0000", "\\u00000", "\\u0001", "\\", "u0000", "\x01"]


@pytest.mark.parametrize("text", NUL_TEXTS, ids=repr)
@pytest.mark.parametrize("where", ["props", "context", "key", "two steps"])
def test_a_nul_or_its_escape_is_carried_in_the_columns(text: str, where: str) -> None:
    """A NUL (and text that looks like its JSON escape): the columns carry it as it is."""
    batch: list[Any] = [
        {
            "name": "update-file",
            "type": "action",
            "timestamp": (NOW - timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "props": {"title": "plan", "revn": i},
            "context": {"initiator": "app", "version": "2.1.0"},
        }
        for i in range(4)
    ]
    event = batch[2]
    if where == "props":
        event["props"] = {"title": text, "route": text, "revn": 2}
    elif where == "context":
        event["context"] = {"initiator": text, "locale": text}
    elif where == "key":
        event["props"] = {f"k{text}": 1}
    else:  # a float prop: the two steps' way
        event["props"] = {"title": text, "revn": 2.5, "x": [text]}
    for rid in (None, uuid.UUID(UUIDS[2])):
        _check(batch, SITES["default"], rid)


@pytest.mark.parametrize("context", ["ctx", ["ab"], 3, [["k", "v"]]], ids=repr)
def test_a_context_that_is_not_an_object_after_a_good_event_is_a_validation_error(
    context: Any,
) -> None:
    """The one pass met such a context after the event's name was known (not the
    batch's first event) and copied it with dict(): a str raised ValueError (an
    answer 500) where the two steps report the field."""
    good = {
        "name": "update-file",
        "type": "action",
        "timestamp": NOW.isoformat(timespec="milliseconds"),
        "props": {"revn": 1},
        "context": {"initiator": "app"},
    }
    batch = [good, {**good, "context": context}]
    assert one_pass(batch, SITES["default"], None) == two_steps(batch, SITES["default"], None)
    assert one_pass(batch, SITES["default"], None)[0] == "error"
    _check(batch, SITES["default"], None)
