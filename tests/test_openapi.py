"""The OpenAPI document: current, complete, and what a live daemon really answers.

- the committed docs/openapi.json is what ``daemon.openapi`` generates now;
- the daemon's routes are exactly the document's operations;
- every route's real answers (each documented status, problems included) match
  the document: status, media type, headers, body schema;
- schemathesis drives a live ``tuiaudit daemon`` subprocess on loopback from the
  document (a fixed number of examples per operation, derandomized, with a
  deadline per test): no 5xx, every answer conforming.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from live_daemon import LiveDaemon, live_daemon

from tuiaudit.audit import AuditLog
from tuiaudit.config import Settings
from tuiaudit.daemon.ingest import IngestContext, build_app
from tuiaudit.daemon.metrics import Metrics
from tuiaudit.daemon.openapi import DOC_PATH, document, document_bytes
from tuiaudit.daemon.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES, TYPE_BASE
from tuiaudit.daemon.service import running_daemon
from tuiaudit.storage import open_store

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "openapi-test-token"
DOC = document()


def test_committed_document_is_current() -> None:
    assert (ROOT / DOC_PATH).read_bytes() == document_bytes(), (
        "run `python -m tuiaudit.daemon.openapi --write`"
    )


def test_document_is_openapi_3_1_and_loads_in_schemathesis() -> None:
    assert DOC["openapi"] == "3.1.0"
    loaded = schemathesis.openapi.from_dict(DOC)
    ops = {(r.ok().method.upper(), r.ok().path) for r in loaded.get_all_operations()}
    assert ops == {(m.upper(), p) for p, item in DOC["paths"].items() for m in item}


def test_routes_are_exactly_the_documented_operations() -> None:
    settings = Settings(store="unused.db")
    app = build_app(IngestContext(store=None, audit=None, settings=settings, metrics=Metrics()))  # type: ignore[arg-type]
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    assert routes == {(m.upper(), p) for p, item in DOC["paths"].items() for m in item}


def test_every_problem_type_is_documented() -> None:
    described = DOC["components"]["schemas"]["Problem"]["properties"]["type"]["description"]
    assert all(TYPE_BASE + family in described for family in PROBLEM_TYPES)


# ------------------------------------------------- real answers vs the document


def _validator(schema: dict[str, Any]) -> Any:
    return jsonschema_rs.Draft202012Validator({**schema, "components": DOC["components"]})


def check_conforms(
    path: str, method: str, status: int, headers: Any, body: bytes
) -> dict[str, Any] | None:
    """Assert one real answer matches the document; return its JSON body (if any)."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    spec = responses.get(str(status)) or responses.get("default")
    assert spec is not None, f"{method} {path} answered {status}, not documented"
    for name in spec.get("headers", {}):
        assert name in headers, f"{method} {path} {status}: header {name} missing"
    content = spec.get("content")
    if not content:
        assert body == b"", f"{method} {path} {status}: a body where none is documented"
        return None
    media = headers["Content-Type"].split(";")[0].strip()
    assert media in content, f"{method} {path} {status}: {media} not in {list(content)}"
    if media == "text/plain":
        return None
    value = json.loads(body)
    _validator(content[media]["schema"]).validate(value)
    return value  # type: ignore[no-any-return]


def assert_problem(value: dict[str, Any] | None, status: int, family: str) -> None:
    """RFC 9457 fields: type a URI of the family, title fixed per type, the status echoed."""
    assert value is not None
    assert value["type"] == TYPE_BASE + family
    assert value["title"] == PROBLEM_TYPES[family]
    assert value["status"] == status
    assert value["detail"] and value["code"]
    assert all(e["path"] and e["reason"] for e in value["errors"])


def event(**kw: Any) -> dict[str, Any]:
    return {"name": "update-profile", "type": "action", "props": {"n": 1}, **kw}


def front(**kw: Any) -> dict[str, Any]:
    return {"name": "open-file", "type": "action", "timestamp": "2024-05-01T12:30:00Z", **kw}


async def test_every_route_answers_as_documented(tmp_path: Path) -> None:
    settings = Settings(
        store=str(tmp_path / "s.db"),
        listen="127.0.0.1:0",
        token=TOKEN,
        max_body=4096,
        jitter=0,
        flags=("audit-log", "telemetry"),
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    json_ct = {"Content-Type": "application/json"}
    dup = str(uuid.uuid4())
    # (method, path, headers, body, expected status, problem family or None)
    ok_event = json.dumps(event()).encode()
    dup_event = json.dumps(event(id=dup)).encode()
    ok_batch = json.dumps({"events": [event()]}).encode()
    front_batch = json.dumps({"events": [front()]}).encode()
    big_event = json.dumps(event(props={"pad": "x" * 5000})).encode()
    cases: list[tuple[str, str, dict[str, str], bytes | None, int, str | None]] = [
        ("POST", "/api/audit/submit", auth | json_ct, dup_event, 204, None),
        ("POST", "/api/audit/submit", auth | json_ct, ok_batch, 204, None),
        ("POST", "/api/audit/events", auth | json_ct, front_batch, 204, None),
        ("POST", "/api/audit/submit", auth | json_ct, dup_event, 409, "conflict"),
        ("POST", "/api/audit/submit", auth | json_ct, b'{"name": 1}', 400, "validation"),
        ("POST", "/api/audit/events", auth | json_ct, b"{", 400, "validation"),
        ("POST", "/api/audit/submit", json_ct, ok_event, 401, "authentication"),
        ("GET", "/api/audit/flags", {}, None, 401, "authentication"),
        ("POST", "/api/audit/submit", auth | json_ct | {"Origin": "https://evil.example"},
         ok_event, 403, "forbidden"),
        ("POST", "/api/audit/submit", auth | {"Content-Type": "text/plain"},
         ok_event, 415, "unsupported-media-type"),
        ("POST", "/api/audit/submit", auth | json_ct, big_event, 413, "too-large"),
        ("GET", "/api/audit/flags", auth, None, 200, None),
        ("GET", "/healthz", {}, None, 200, None),
        ("GET", "/metrics", {}, None, 200, None),
        ("GET", "/openapi.json", {}, None, 200, None),
    ]  # fmt: skip
    async with running_daemon(settings, components=[]) as daemon, aiohttp.ClientSession() as c:
        base = f"http://127.0.0.1:{daemon.port}"
        for method, path, headers, body, status, family in cases:
            async with c.request(method, base + path, headers=headers, data=body) as r:
                raw = await r.read()
                assert r.status == status, (method, path, status, raw)
                value = check_conforms(path, method, r.status, r.headers, raw)
                if family is not None:
                    assert r.headers["Content-Type"].startswith(PROBLEM_CONTENT_TYPE)
                    assert_problem(value, status, family)
                if path == "/openapi.json":
                    assert raw == document_bytes()


async def test_store_unavailable_is_a_documented_503(store_url: str) -> None:
    async with open_store(store_url):
        pass  # create and migrate
    settings = Settings(store=store_url, listen="127.0.0.1:0")
    async with open_store(store_url, read_only=True) as ro:
        ctx = IngestContext(
            store=ro, audit=AuditLog(ro, settings.flags), settings=settings, metrics=Metrics()
        )
        runner = web.AppRunner(build_app(ctx))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with aiohttp.ClientSession() as c:
                async with c.post(base + "/api/audit/submit", json=event()) as r:
                    raw = await r.read()
                    assert r.status == 503
                    value = check_conforms("/api/audit/submit", "POST", 503, r.headers, raw)
                    assert_problem(value, 503, "unavailable")
        finally:
            await runner.cleanup()


# --------------------------------------------------------- schemathesis, live

SCHEMA = schemathesis.openapi.from_dict(DOC)
# Bounded for the normal run; SCHEMATHESIS_EXAMPLES=500 digs deeper by hand.
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def daemon_for_schemathesis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    store = tmp_path_factory.mktemp("schemathesis") / "store.db"
    with live_daemon(store, "--token", TOKEN, "--flags", "audit-log,telemetry") as d:
        yield d


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_live_daemon_conforms_to_the_document(
    case: schemathesis.Case, daemon_for_schemathesis: LiveDaemon
) -> None:
    case.call_and_validate(
        base_url=daemon_for_schemathesis.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert daemon_for_schemathesis.proc.poll() is None, "the daemon died"
