"""The frontend ingest path in one pass is the two steps it replaces (issue 20).

``prepare_and_anonymise_frontend`` validates a frontend batch and makes the
telemetry copies in one walk of each event. Whatever the batch, it must give
exactly what ``prepare_frontend_events`` then ``anonymise_many`` give: the
same full rows and copies (every field, key order and value type; ids drawn
by the same calls), the same rule counts, or the same ``ValidationError``
with the same errors in the same order and nothing counted.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
from fuzz_support import FUZZ
from hypothesis import given
from hypothesis import strategies as st

from tuiaudit import events as events_module
from tuiaudit import policy_apply, policy_frontend
from tuiaudit.events import ValidationError, prepare_frontend_events
from tuiaudit.policy import POLICY, anonymise_many, prepare_and_anonymise_frontend
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy, site_policy_from_table
from tuiaudit.storage.base import AuditRow

NOW = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)
SITES = {
    "default": DEFAULT_SITE,
    "rules": site_policy_from_table(
        {
            "keep": {
                "*": {"count-k": "count", "enum-k": "enum"},
                "update-file": {"id-k": "identifier"},
            },
            "drop": {"*": ["drop-k"], "navigate": ["route"]},
            "drop-events": ["dropped-event"],
        }
    ),
    "strict": site_policy_from_table({"strict": True, "keep": {"update-file": {"revn": "count"}}}),
    "profile-drop": site_policy_from_table({"profile-id": "drop"}),
}

LONG = 10 ** (POLICY.long_int_digits - 1)  # the shortest integer the policy removes
LONG_EDGES = [LONG, LONG - 1, -LONG, -LONG + 1]
UUIDS = [str(uuid.UUID(int=i * 0x1234567890ABCDEF1234567)) for i in range(1, 4)]
TEXTS = st.sampled_from(
    [
        "",
        "Quarterly plan",
        "ana@example.com",
        "Ana <ana@example.com>",
        "https://user:pw@host.example/p?q=1",
        "workspace",
        "2.1.0",
        "124.0.6367.91",
        "10.0.0.1",
        "+44 20 7946 0958",
        "zh_CN",
        "en",
        "firefox",
        "x\x00y",
        "ｆｕｌｌ",
        "a" * 70,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2lnbmF0dXJl",
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        *UUIDS,
        UUIDS[0].upper(),
    ]
)
GOOD_SCALARS = st.one_of(
    TEXTS,
    st.booleans(),
    st.none(),
    st.sampled_from([0, 1, -1, 42, 2**63 - 1, -(2**63), *LONG_EDGES]),
    st.sampled_from([0.0, -0.0, 1.5, 52.520008, 1e300, 1 / 3]),
    st.floats(allow_nan=False, allow_infinity=False),
)
BAD_VALUES = st.one_of(
    st.sampled_from([2**63, -(2**63) - 1, float("nan"), float("inf"), uuid.UUID(UUIDS[0]), (1, 2)]),
    st.lists(GOOD_SCALARS, max_size=2),
    st.dictionaries(st.sampled_from(["a", "b\x01"]), GOOD_SCALARS, max_size=2),
    st.integers(),
)
# Mostly what validation accepts, sometimes not (the whole batch is then rejected).

GOOD_PROP_KEYS = st.sampled_from(
    [
        "file-id",
        "project-id",
        "team-id",
        "revn",
        "title",
        "is-shared",
        "email",
        "email-domain",
        "lang",
        "auth-backend",
        "route",
        "page-id",
        "password",
        "token",
        "session-id",
        "count-k",
        "enum-k",
        "id-k",
    ]
)
ODD_PROP_KEYS = st.sampled_from(
    ["drop-k", "a/b", "bad\x07key", "bad\u0085key", "no\u00a0break", "ｋｅｙ", "a@b.example", "-x"]
)
GOOD_CONTEXT_KEYS = st.sampled_from(
    [
        "initiator",
        "version",
        "browser",
        "browser-version",
        "locale",
        "screen-width",
        "os",
        "event-origin",
        "x/y",
    ]
)
ODD_CONTEXT_KEYS = st.sampled_from(["request-id", "original-tracked-at", "ctl\x1fkey", "ｏｓ"])
GOOD_NAMES = st.sampled_from(
    ["update-file", "navigate", "login", "dropped-event", "create_file", "instance-start", "X"]
)
BAD_NAMES = st.sampled_from(["bad name", "", "x" * 51, "ｆｕｌｌ", "ana@example.com", 3, None])
GOOD_TYPES = st.sampled_from(["action", "identify", "trigger"])
BAD_TYPES = st.sampled_from(["other", "", "Action", None, 1])
UTC_MS = st.sampled_from(
    [
        (NOW - timedelta(milliseconds=5)).isoformat(timespec="milliseconds"),
        (NOW - timedelta(seconds=30)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        (NOW - timedelta(hours=2)).isoformat(timespec="milliseconds"),  # before the window
        (NOW + timedelta(minutes=5)).isoformat(timespec="milliseconds"),  # after it
    ]
)
OTHER_TIMESTAMPS = st.sampled_from(
    [
        (NOW - timedelta(seconds=1)).isoformat(),  # microseconds: truncated by the full check
        "2026-12-06T13:00:00.000+01:00",
        "2026-12-06t11:59:59.5z",
        1_765_000_000_000,
    ]
)
BAD_TIMESTAMPS = st.sampled_from(["2026-12-06T11:59:59.000", "2026-12-06", "not a time", True])


def _rare(draw: Any) -> bool:
    """True now and then (hypothesis favours small integers: the top one is rare)."""
    return bool(draw(st.integers(0, 12)) == 12)


def _pick(draw: Any, common: Any, rare: Any) -> Any:
    return draw(rare) if _rare(draw) else draw(common)


def _value(draw: Any) -> Any:
    return _pick(draw, GOOD_SCALARS, BAD_VALUES)


def _entries(draw: Any, keys: Any, odd_keys: Any) -> dict[str, Any]:
    return {_pick(draw, keys, odd_keys): _value(draw) for _ in range(draw(st.integers(0, 6)))}


def _event(draw: Any) -> Any:
    if _rare(draw) and _rare(draw):
        return draw(st.sampled_from([None, "event", [1], 3]))
    event: dict[Any, Any] = {}
    for field, good, bad in (
        ("name", GOOD_NAMES, BAD_NAMES),
        ("type", GOOD_TYPES, BAD_TYPES),
        (
            "timestamp",
            st.one_of(UTC_MS, OTHER_TIMESTAMPS) if _rare(draw) else UTC_MS,
            BAD_TIMESTAMPS,
        ),
    ):
        if not (_rare(draw) and _rare(draw)):
            event[field] = draw(good) if not (_rare(draw) and _rare(draw)) else draw(bad)
    if not _rare(draw):
        event["props"] = (
            _entries(draw, GOOD_PROP_KEYS, ODD_PROP_KEYS)
            if not (_rare(draw) and _rare(draw))
            else draw(st.sampled_from([[], "props", None, {1: "x"}]))
        )
    if not _rare(draw):
        event["context"] = (
            _entries(draw, GOOD_CONTEXT_KEYS, ODD_CONTEXT_KEYS)
            if not (_rare(draw) and _rare(draw))
            else draw(st.sampled_from([[], "ctx", None, {2: 3}]))
        )
    if _rare(draw) and _rare(draw):
        event[draw(st.sampled_from(["extra", "id", 7]))] = _value(draw)
    return event


@st.composite
def batches(draw: Any) -> list[Any]:
    # Mostly runs of one kind of event, as clients send them (the same name, keys and
    # context, other values), with odd ones mixed in.
    common = _event(draw)
    out = []
    for _ in range(draw(st.integers(0, 12))):
        if isinstance(common, dict) and not _rare(draw):
            event = dict(common)
            props = event.get("props")
            if isinstance(props, dict) and props and draw(st.booleans()):
                key = draw(st.sampled_from(sorted(props, key=repr)))
                event["props"] = {**props, key: _value(draw)}
            context = event.get("context")
            if isinstance(context, dict) and context and draw(st.booleans()):
                key = draw(st.sampled_from(sorted(context, key=repr)))
                event["context"] = {**context, key: _value(draw)}
            if draw(st.booleans()):
                event["timestamp"] = draw(UTC_MS)
            out.append(event)
        else:
            out.append(_event(draw))
    return out


@contextmanager
def counted_ids(*more: ModuleType) -> Iterator[None]:
    """Ids from a counter (the same on both sides when drawn by the same calls), in
    every module that draws them (``more``: another copy of the one pass)."""
    state = {"n": 0}

    def uuid7_many(now: datetime, n: int) -> list[uuid.UUID]:
        start = state["n"]
        state["n"] += n
        ms = int(now.timestamp() * 1000)
        return [uuid.UUID(int=(ms << 64) | i) for i in range(start, start + n)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(events_module, "uuid7_many", uuid7_many)
        mp.setattr(policy_apply, "uuid7_many", uuid7_many)
        for module in (policy_frontend, *more):
            mp.setattr(module, "uuid7_many", uuid7_many)
        yield


def _shown(rows: list[AuditRow | None]) -> list[str]:
    # repr tells 1 from 1.0 from True and -0.0 from 0.0, and keeps key order.
    return [repr(r) for r in rows]


def two_steps(batch: list[Any], site: SitePolicy, rid: uuid.UUID | None) -> Any:
    before = Counter(policy_apply.COUNTS)
    with counted_ids():
        try:
            rows = prepare_frontend_events(
                batch, profile_id=UUIDS[1], ip_addr="10.1.2.3", now=NOW, request_id=rid
            )
        except ValidationError as exc:
            return ("error", exc.errors, Counter(policy_apply.COUNTS) - before)
        shared = anonymise_many(rows, site=site)
    return (_shown(list(rows)), _shown(shared), Counter(policy_apply.COUNTS) - before)


def one_pass(batch: list[Any], site: SitePolicy, rid: uuid.UUID | None) -> Any:
    before = Counter(policy_apply.COUNTS)
    with counted_ids():
        try:
            rows, shared = prepare_and_anonymise_frontend(
                batch, profile_id=UUIDS[1], ip_addr="10.1.2.3", now=NOW, request_id=rid, site=site
            )
        except ValidationError as exc:
            return ("error", exc.errors, Counter(policy_apply.COUNTS) - before)
    return (_shown(list(rows)), _shown(shared), Counter(policy_apply.COUNTS) - before)


@FUZZ
@given(
    batch=batches(),
    site=st.sampled_from(["default", "default", *sorted(SITES)]),
    rid=st.sampled_from([None, uuid.UUID(UUIDS[2])]),
)
def test_one_pass_is_the_two_steps(batch: list[Any], site: str, rid: uuid.UUID | None) -> None:
    # Twice each: the second run meets the memos and plans the first one filled.
    for _ in range(2):
        assert one_pass(batch, SITES[site], rid) == two_steps(batch, SITES[site], rid)


def test_the_benchmark_body_takes_the_one_pass_path() -> None:
    """The wrk body's events (bench/ingest_wrk.py) after the first: no event falls back."""
    batch = [
        {
            "name": "update-file",
            "type": "action",
            "timestamp": (NOW - timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "props": {
                "file-id": str(uuid.uuid4()),
                "project-id": str(uuid.uuid4()),
                "revn": i,
                "title": "Quarterly plan",
                "is-shared": True,
            },
            "context": {"initiator": "app", "version": "2.1.0", "browser": "firefox"},
        }
        for i in range(20)
    ]
    fallbacks = []
    slow = policy_frontend._slow

    def counting(*args: Any) -> None:
        fallbacks.append(args[2])
        slow(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(policy_frontend, "_slow", counting)
        rid = uuid.UUID(UUIDS[2])
        assert one_pass(batch, DEFAULT_SITE, rid) == two_steps(batch, DEFAULT_SITE, rid)
    assert fallbacks == [0]  # the first event of a name is checked in full


EDGE_VALUES = [
    *LONG_EDGES,
    2**63 - 1,
    -(2**63),
    2**63,
    0,
    True,
    False,
    None,
    0.0,
    -0.0,
    1 / 3,
    52.520008,
    1e300,
    float("nan"),
    "",
    "Quarterly plan",
    "x\x00y",
    UUIDS[0],
    UUIDS[0].upper(),
    UUIDS[0] + " ",
    "ana@example.com",
    "124.0.6367.91",
    "10.0.0.1",
    "zh_CN",
    "ｆｕｌｌ",
    [1],
    {"a": 1},
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
@pytest.mark.parametrize("site", ["default", "rules"])
@pytest.mark.parametrize("type_", ["action", "identify"])
def test_one_pass_is_the_two_steps_for_each_edge_value(value: Any, site: str, type_: str) -> None:
    """Each edge value under keys of every kind, in events the one-pass path takes."""
    keys = ["revn", "title", "file-id", "count-k", "enum-k", "lang", "email"]
    context_keys = ["browser", "screen-width", "os", "locale", "x/y", "initiator"]
    batch = [
        {
            "name": "update-file",
            "type": type_,
            "timestamp": (NOW - timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "props": dict.fromkeys(keys, value),
            "context": dict.fromkeys(context_keys, value),
        }
        for i in range(3)
    ]
    rid = uuid.UUID(UUIDS[2])
    assert one_pass(batch, SITES[site], rid) == two_steps(batch, SITES[site], rid)


class Text(str):
    """A str subclass: equal to its text, not a JSON string (validation converts it)."""


class Key(str):
    """A str subclass as a key: validation rejects it."""


@pytest.mark.parametrize(
    "contexts",
    [
        # equal, but not the same values: each must be checked on its own
        [{"screen-width": 0.0}, {"screen-width": -0.0}, {"screen-width": 0.0}],
        [{"screen-width": 1}, {"screen-width": True}, {"screen-width": 1.0}, {"screen-width": 1}],
        [{"browser": "a", "os": "b"}, {"os": "b", "browser": "a"}, {"browser": "a", "os": "b"}],
        [{"browser": "a"}, {"browser": Text("a")}, {"browser": "a"}],
        [{"browser": "a"}, {Key("browser"): "a"}],
        [{"browser": "a"}, {"browser": None}, {"browser": "a"}, {}, {"browser": "a"}],
        [{"os": "a"}, {"os": "a", "request-id": "x"}, {"os": "a"}],
    ],
    ids=repr,
)
def test_one_pass_tells_contexts_apart_that_are_only_equal(contexts: list[Any]) -> None:
    """The context of the previous event is reused only for the very same entries."""
    batch = [
        {
            "name": "update-file",
            "type": "action",
            "timestamp": (NOW - timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "props": {"revn": i},
            "context": context,
        }
        for i, context in enumerate([contexts[0], *contexts])
    ]
    rid = uuid.UUID(UUIDS[2])
    assert one_pass(batch, DEFAULT_SITE, rid) == two_steps(batch, DEFAULT_SITE, rid)
    assert one_pass(batch, DEFAULT_SITE, None) == two_steps(batch, DEFAULT_SITE, None)


def test_the_key_memos_stay_bounded_under_ever_new_keys() -> None:
    """Keys a client invents (valid or rejected) never pile up in the plans' memos."""

    def event(props: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
        timestamp = NOW.isoformat(timespec="milliseconds")
        return {
            "name": "update-file",
            "type": "action",
            "timestamp": timestamp,
            "props": props,
            "context": context,
        }

    for n in range(60):
        batch = [event({}, {})]  # the first of a name takes the full check
        if n % 2:  # new keys the policy plans for
            batch += [event({f"k{n}-{i}": 1}, {f"c{n}-{i}": "x"}) for i in range(200)]
        batch += [event({f"bad{n}-{i}\x07": 1}, {}) for i in range(200)]  # rejected keys
        with pytest.raises(ValidationError):
            prepare_and_anonymise_frontend(
                batch, profile_id=UUIDS[1], ip_addr=None, now=NOW, request_id=None
            )
    plan = policy_apply.plan_for(POLICY, DEFAULT_SITE, "frontend", "action", "update-file", False)
    assert len(plan.raw_keys) <= 4096 + 400
    assert len(plan.keys) <= 4096 + 400
    memos = policy_apply.compiled(POLICY).raw_context_keys
    assert all(len(memo) <= 4096 + 400 for memo in memos.values())
