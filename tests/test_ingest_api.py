"""The ingest HTTP API against a real daemon on 127.0.0.1 port 0 and real stores."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tuiaudit.audit import AuditLog
from tuiaudit.config import ConfigError, Settings
from tuiaudit.daemon.clientip import client_ip, parse_proxies
from tuiaudit.daemon.ingest import IngestContext, build_app
from tuiaudit.daemon.metrics import Metrics
from tuiaudit.daemon.problems import TYPE_BASE
from tuiaudit.daemon.service import Daemon, running_daemon
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter, Store, StoreUnavailable
from tuiaudit.timeutil import to_rfc3339, utcnow

MODES = {
    "A": ("audit-log",),
    "B": ("audit-log", "telemetry"),
    "C": ("telemetry",),
}


def settings_for(store_url: str, **kw: Any) -> Settings:
    return replace(Settings(store=store_url, listen="127.0.0.1:0", jitter=0), **kw)


class Api:
    """A running daemon plus a client session aimed at it."""

    def __init__(self, daemon: Daemon, client: aiohttp.ClientSession) -> None:
        self.daemon = daemon
        self.client = client
        self.base = f"http://127.0.0.1:{daemon.port}"

    async def post(
        self,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        async with self.client.post(self.base + path, data=data, headers=hdrs) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text else None)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with self.client.get(self.base + path, headers=headers) as resp:
            return resp.status, await resp.text()

    async def rows(self, **flt: Any) -> list[Any]:
        rows = await self.daemon.store.fetch_rows(AuditFilter(**flt), limit=10_000)
        return [r for r in rows if r.name != "instance-start"]


async def _api(settings: Settings) -> AsyncIterator[Api]:
    async with running_daemon(settings, components=[]) as daemon, aiohttp.ClientSession() as c:
        yield Api(daemon, c)


@pytest.fixture
async def api(store_url: str) -> AsyncIterator[Api]:
    async for a in _api(settings_for(store_url)):
        yield a


def backend_event(**kw: Any) -> dict[str, Any]:
    return {
        "name": "update-profile",
        "type": "action",
        "profile-id": str(uuid.uuid4()),
        "props": {"email": "Ann@Example.com", "count": 3, "lang": "en"},
        "context": {"version": "2.0", "session": "secret-session"},
        **kw,
    }


def frontend_event(**kw: Any) -> dict[str, Any]:
    return {
        "name": "navigate",
        "type": "action",
        "props": {"route": "dashboard", "file-id": str(uuid.uuid4()), "note": "x"},
        "timestamp": to_rfc3339(utcnow()),
        "context": {"browser": "firefox", "external-session-id": "abc"},
        **kw,
    }


# -------------------------------------------------------------- happy paths


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_submit_stores_the_rows_of_each_mode(store_url: str, mode: str) -> None:
    async for api in _api(settings_for(store_url, flags=MODES[mode])):
        events = [backend_event(), backend_event(name="login-with-password")]
        status, body = await api.post("/api/audit/submit", {"events": events})
        assert status == 204, body
        full = await api.rows(source="backend")
        tele = await api.rows(source="telemetry:backend")
        assert len(full) == (2 if mode in "AB" else 0)
        assert len(tele) == (2 if mode in "BC" else 0)
        for row in full:
            assert row.props["email"] == "Ann@Example.com"
            assert row.context["session"] == "secret-session"
        # One request id per request, the same on every row of it.
        assert len({r.context["request-id"] for r in full}) == (1 if full else 0)
        for row in tele:
            assert "email" not in row.props and "request-id" not in row.context
            assert row.ip_addr == "0.0.0.0"
            assert row.created_at == row.created_at.replace(
                hour=0, minute=0, second=0, microsecond=0
            )


async def test_submit_accepts_one_bare_event(api: Api) -> None:
    status, _ = await api.post("/api/audit/submit", backend_event(name="export-file"))
    assert status == 204
    [row] = await api.rows(source="backend")
    assert row.name == "export-file" and row.ip_addr == "0.0.0.0"


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_frontend_batch_stores_the_rows_of_each_mode(store_url: str, mode: str) -> None:
    async for api in _api(settings_for(store_url, flags=MODES[mode])):
        pid = str(uuid.uuid4())
        old = to_rfc3339(utcnow().replace(year=2020))
        body = {"profile-id": pid, "events": [frontend_event(), frontend_event(timestamp=old)]}
        status, resp = await api.post("/api/audit/events", body)
        assert status == 204, resp
        full = await api.rows(source="frontend")
        tele = await api.rows(source="telemetry:frontend")
        assert len(full) == (2 if mode in "AB" else 0)
        assert len(tele) == (2 if mode in "BC" else 0)
        for row in full:
            assert str(row.profile_id) == pid and row.ip_addr == "127.0.0.1"
            assert "request-id" in row.context
        if full:
            adjusted = [r for r in full if "original-tracked-at" in r.context]
            assert len(adjusted) == 1 and adjusted[0].tracked_at == adjusted[0].created_at
        for row in tele:
            assert set(row.props) == {"route", "file-id"}
            assert row.context == {"browser": "firefox"}


async def test_a_batch_with_one_bad_event_stores_nothing(api: Api) -> None:
    events = [backend_event(), backend_event(name=""), backend_event(type=5)]
    status, body = await api.post("/api/audit/submit", {"events": events})
    assert status == 400
    paths = {e["path"] for e in body["errors"]}
    assert {"events[1].name", "events[2].type"} <= paths
    assert await api.rows() == []


# ---------------------------------------------------------------- bad bodies

DEEP: Any = 1
for _ in range(70):
    DEEP = {"k": DEEP}

BAD_BODIES: list[tuple[str, str, bytes, str]] = [
    ("empty", "/api/audit/submit", b"", "$"),
    ("truncated", "/api/audit/submit", b'{"name": "x"', "$"),
    ("not an object", "/api/audit/submit", b"[1, 2]", "$"),
    ("NaN", "/api/audit/submit", b'{"name":"a","type":"b","props":{"v":NaN}}', "$"),
    (
        "Infinity",
        "/api/audit/events",
        b'{"events":[{"name":"a","type":"action","timestamp":-Infinity}]}',
        "$",
    ),
    ("invalid utf-8", "/api/audit/submit", b'{"name":"\xff\xfe","type":"b"}', "$"),
    ("lone surrogate", "/api/audit/submit", b'{"name":"\\ud800","type":"b"}', "$"),
    (
        "too deep",
        "/api/audit/submit",
        json.dumps({"name": "a", "type": "b", "props": DEEP}).encode(),
        "props.k.k…",
    ),
    (
        "too deep for the parser",
        "/api/audit/submit",
        b'{"name": "a", "type": "b", "props": {"x": ' + b"[" * 2000 + b"]" * 2000 + b"}}",
        "$",
    ),
    (
        "frontend too deep",
        "/api/audit/events",
        json.dumps({"events": [frontend_event(context={"x": DEEP})]}).encode(),
        "events[0].context.x.k…",
    ),
    ("events not a list", "/api/audit/events", b'{"events": {"name": "x"}}', "events"),
    ("event not an object", "/api/audit/events", b'{"events": [1]}', "events[0]"),
    ("unknown top-level field", "/api/audit/events", b'{"events": [], "evnts": []}', "evnts"),
    ("bad profile-id", "/api/audit/events", b'{"profile-id": "nope", "events": []}', "profile-id"),
    (
        "frontend bad name",
        "/api/audit/events",
        json.dumps({"events": [frontend_event(name="has space")]}).encode(),
        "events[0].name",
    ),
    (
        "frontend bad type",
        "/api/audit/events",
        json.dumps({"events": [frontend_event(type="click")]}).encode(),
        "events[0].type",
    ),
    (
        "frontend no timestamp",
        "/api/audit/events",
        json.dumps({"events": [{"name": "a", "type": "action"}]}).encode(),
        "events[0].timestamp",
    ),
    (
        "frontend bad timestamp",
        "/api/audit/events",
        json.dumps({"events": [frontend_event(timestamp="yesterday")]}).encode(),
        "events[0].timestamp",
    ),
    ("submit no name", "/api/audit/submit", b'{"type": "action"}', "name"),
    (
        "submit props not object",
        "/api/audit/submit",
        b'{"name":"a","type":"b","props":[1]}',
        "props",
    ),
    (
        "submit bad profile-id",
        "/api/audit/submit",
        b'{"name":"a","type":"b","profile-id":"x"}',
        "profile-id",
    ),
    ("submit server field", "/api/audit/submit", b'{"name":"a","type":"b","source":"x"}', "source"),
    (
        "submit bad ip",
        "/api/audit/submit",
        b'{"name":"a","type":"b","ip-addr":"999.1.1.1"}',
        "ip-addr",
    ),
    (
        "batch names the index",
        "/api/audit/submit",
        b'{"events":[{"name":"a","type":"b"},{"name":"a","type":"b","tracked-at":true}]}',
        "events[1].tracked-at",
    ),
]


@pytest.mark.parametrize(
    ("path", "raw", "field"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
async def test_bad_bodies_are_400_naming_the_field_and_store_nothing(
    api: Api, path: str, raw: bytes, field: str
) -> None:
    before = await api.daemon.store.total_rows()
    status, body = await api.post(path, raw=raw)
    assert status == 400, body
    assert body["type"] == TYPE_BASE + "validation" and body["status"] == 400
    assert body["title"] and body["code"] and body["detail"]
    paths = [e["path"] for e in body["errors"]]
    if field.endswith("…"):  # a prefix: the full path is long (deep nesting)
        assert any(p.startswith(field[:-1]) for p in paths), body
    else:
        assert field in paths, body
    assert all(e["reason"] for e in body["errors"])
    assert await api.daemon.store.total_rows() == before


async def test_oversized_body_is_413(store_url: str) -> None:
    async for api in _api(settings_for(store_url, max_body=2000)):
        big = {"events": [backend_event(props={"pad": "x" * 3000})]}
        status, body = await api.post("/api/audit/submit", big)
        assert status == 413
        assert body["code"] == "request-body-too-large" and "2000" in body["detail"]
        assert await api.rows() == []
        status, _ = await api.post("/api/audit/submit", backend_event())  # still serving
        assert status == 204


# ----------------------------------------------------------------------- auth


async def test_bearer_token_guards_the_api_only(store_url: str) -> None:
    async for api in _api(settings_for(store_url, token="s3cret")):
        ev = backend_event()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            status, body = await api.post("/api/audit/submit", ev, headers=headers)
            assert status == 401 and body["type"] == TYPE_BASE + "authentication"
        status, _ = await api.get("/api/audit/flags")
        assert status == 401
        assert await api.rows() == []
        status, _ = await api.post(
            "/api/audit/submit", ev, headers={"Authorization": "Bearer s3cret"}
        )
        assert status == 204
        status, _ = await api.get("/healthz")
        assert status == 200


async def test_without_a_token_no_auth_is_needed(api: Api) -> None:
    status, _ = await api.post(
        "/api/audit/submit", backend_event(), headers={"Authorization": "Bearer x"}
    )
    assert status == 204


# ------------------------------------------------------------ store failures


class FailingStore:
    """A real store whose writes and pings fail as an unreachable store's would."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def insert_rows(self, *a: Any, **k: Any) -> None:
        raise StoreUnavailable("disk full (test)")

    async def ping(self) -> None:
        raise StoreUnavailable("down (test)")


async def _app_on(store: Store, settings: Settings) -> tuple[web.AppRunner, str]:
    ctx = IngestContext(
        store=store, audit=AuditLog(store, settings.flags), settings=settings, metrics=Metrics()
    )
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_a_duplicate_id_is_refused_whole_with_a_reason(api: Api) -> None:
    dup = backend_event(id=str(uuid.uuid4()))
    assert (await api.post("/api/audit/submit", dup))[0] == 204
    status, body = await api.post("/api/audit/submit", {"events": [backend_event(), dup]})
    assert status == 409 and body["code"] == "duplicate-event" and "nothing" in body["detail"]
    assert len(await api.rows(source="backend")) == 1  # nothing of the second batch


async def test_read_only_store_answers_503_and_stores_nothing(store_url: str) -> None:
    async with open_store(store_url):
        pass  # create and migrate
    settings = settings_for(store_url)
    async with open_store(store_url, read_only=True) as ro:
        runner, base = await _app_on(ro, settings)
        try:
            async with aiohttp.ClientSession() as c:
                async with c.post(
                    base + "/api/audit/submit", json={"events": [backend_event()] * 3}
                ) as r:
                    assert r.status == 503
                    body = await r.json(content_type=None)
                    assert body["code"] == "store-unavailable" and r.headers["Retry-After"]
        finally:
            await runner.cleanup()
        assert await ro.total_rows() == 0


async def test_unavailable_store_gives_503_on_ingest_and_healthz(store_url: str) -> None:
    settings = settings_for(store_url)
    async with open_store(store_url) as real:
        store: Any = FailingStore(real)
        runner, base = await _app_on(store, settings)
        try:
            async with aiohttp.ClientSession() as c:
                async with c.post(
                    base + "/api/audit/events", json={"events": [frontend_event()]}
                ) as r:
                    assert r.status == 503
                async with c.get(base + "/healthz") as r:
                    assert r.status == 503
        finally:
            await runner.cleanup()
        assert await real.total_rows() == 0


# ------------------------------------------------------------------ client ip


def test_client_ip_rule() -> None:
    trusted = parse_proxies(["10.0.0.0/8", "::1"])
    assert client_ip("10.1.2.3", "203.0.113.7, 10.0.0.1", trusted) == "203.0.113.7"
    assert client_ip("192.0.2.1", "203.0.113.7", trusted) == "192.0.2.1"  # untrusted peer
    assert client_ip("::1", "2001:db8::1", trusted) == "2001:db8::1"
    assert client_ip("10.1.2.3", "garbage", trusted) == "10.1.2.3"
    assert client_ip("10.1.2.3", None, trusted) == "10.1.2.3"
    assert client_ip("::ffff:192.0.2.9", None, trusted) == "192.0.2.9"
    assert client_ip(None, "203.0.113.7", trusted) == "0.0.0.0"
    with pytest.raises(ConfigError, match="CIDR"):
        parse_proxies(["not-an-ip"])


@pytest.mark.parametrize(
    ("trusted", "expected"),
    [
        # Issue 13: the right-most hop that is not a trusted proxy (it was the left-most).
        (("127.0.0.1",), "10.9.9.9"),
        (("127.0.0.1", "10.0.0.0/8"), "203.0.113.7"),
        (("10.0.0.0/8",), "127.0.0.1"),
    ],
)
async def test_forwarded_for_is_honoured_only_behind_a_trusted_proxy(
    store_url: str, trusted: tuple[str, ...], expected: str
) -> None:
    async for api in _api(settings_for(store_url, trusted_proxies=trusted, flags=("audit-log",))):
        headers = {"X-Forwarded-For": "203.0.113.7, 10.9.9.9"}
        status, _ = await api.post(
            "/api/audit/events", {"events": [frontend_event()]}, headers=headers
        )
        assert status == 204
        [row] = await api.rows()
        assert row.ip_addr == expected


# ------------------------------------------------- flags, health, metrics, routes


@pytest.mark.parametrize("mode", sorted(MODES))
async def test_flags_endpoint(store_url: str, mode: str) -> None:
    async for api in _api(settings_for(store_url, flags=MODES[mode])):
        status, text = await api.get("/api/audit/flags")
        assert status == 200
        assert json.loads(text) == {"audit-log": mode in "AB", "telemetry": mode in "BC"}


async def test_metrics_counters_move(api: Api) -> None:
    await api.post("/api/audit/submit", {"events": [backend_event(), backend_event()]})
    await api.post(
        "/api/audit/events", {"events": [frontend_event(), frontend_event(name="bad name")]}
    )
    await api.post("/api/audit/submit", raw=b"{")
    api.daemon.metrics.batches_ok += 2  # what the shipper does
    status, text = await api.get("/metrics")
    assert status == 200
    # prometheus_client writes every value as a float ("2.0").
    values = {
        k: float(v)
        for k, v in (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    }
    assert values["tuiaudit_events_accepted_total"] == 2
    assert values["tuiaudit_events_rejected_total"] == 2
    assert values["tuiaudit_rows_stored_total"] == 4  # mode B: two rows per event
    assert values['tuiaudit_http_requests_total{status="204"}'] == 1
    assert values['tuiaudit_http_requests_total{status="400"}'] == 2
    assert values["tuiaudit_batches_ok_total"] == 2
    assert int(values["tuiaudit_telemetry_pending_rows"]) >= 2


async def test_healthz_and_json_404_405(api: Api) -> None:
    status, text = await api.get("/healthz")
    assert status == 200 and json.loads(text) == {"status": "ok"}
    status, text = await api.get("/api/nope")
    assert status == 404 and json.loads(text)["type"] == TYPE_BASE + "not-found"
    status, body = await api.post("/api/audit/flags", {})
    assert status == 405 and body["code"] == "method-not-allowed"
    status, body = await api.post("/healthz", {})
    assert status == 405
