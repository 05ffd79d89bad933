"""RFC 9457 problem bodies: the receiver's answers, and the shipper quoting a problem's detail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest

from tuiaudit.daemon.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES, TYPE_BASE, problem_body
from tuiaudit.daemon.receiver import make_receiver_app, serve
from tuiaudit.daemon.retry import ShipError
from tuiaudit.daemon.sinks import HttpSink

RFC9457 = {"type", "title", "status", "detail"}


@asynccontextmanager
async def receiver(**kw: Any) -> AsyncIterator[str]:
    runner, port = await serve(make_receiver_app(None, **kw), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/api/telemetry"
    finally:
        await runner.cleanup()


def assert_rfc9457(raw: bytes, content_type: str, status: int) -> dict[str, Any]:
    assert content_type.split(";")[0] == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = orjson.loads(raw)
    assert RFC9457 <= body.keys(), body
    assert body["type"].startswith(TYPE_BASE) and body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and isinstance(body["errors"], list)
    return body


@pytest.mark.parametrize(
    ("kw", "body", "status", "family"),
    [
        ({}, b"not json", 400, "validation"),
        ({}, b'{"type": "other"}', 400, "validation"),
        ({"status": 503}, b"{}", 503, "unavailable"),
        ({"status": 429}, b"{}", 429, "too-many-requests"),
    ],
)
async def test_receiver_answers_problems(
    kw: dict[str, Any], body: bytes, status: int, family: str
) -> None:
    async with receiver(**kw) as url, aiohttp.ClientSession() as c:
        async with c.post(url, data=body) as r:
            assert r.status == status
            got = assert_rfc9457(await r.read(), r.headers["Content-Type"], status)
    assert got["type"] == TYPE_BASE + family
    assert got["title"] == PROBLEM_TYPES.get(family, "Too Many Requests")


def test_title_is_fixed_per_type_and_unknown_statuses_still_have_one() -> None:
    a = problem_body(400, "validation", "x", "one detail")
    b = problem_body(400, "validation", "y", "another detail")
    assert a["title"] == b["title"] == "Invalid request"
    odd = problem_body(599, "upstream", "z", "d")
    assert odd["title"] == "HTTP 599" and odd["type"] == TYPE_BASE + "upstream"


async def test_shipper_error_quotes_the_problem_detail() -> None:
    async with receiver(status=503) as url, aiohttp.ClientSession() as session:
        sink = HttpSink(session, url)
        with pytest.raises(ShipError) as err:
            await sink.send(b"{}", idempotency_key="k1")
    text = str(err.value)
    assert "this receiver answers 503 on purpose" in text
    assert TYPE_BASE not in text  # the detail, not the raw JSON
