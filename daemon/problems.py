"""JSON problem responses: ``{type, code, hint, errors: [{path, reason}]}``.

``type`` is the family a client branches on (``validation``, ``authentication``,
``restriction``, ``unavailable``, ``not-found``, ``internal``); ``code`` is the
precise condition; ``hint`` is one sentence saying what to do next; ``errors``
names each bad field of a rejected body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(
    type_: str, code: str, hint: str, errors: Iterable[tuple[str, str]] = ()
) -> dict[str, Any]:
    return {
        "type": type_,
        "code": code,
        "hint": hint,
        "errors": [{"path": path, "reason": reason} for path, reason in errors],
    }


def problem(
    status: int,
    type_: str,
    code: str,
    hint: str,
    errors: Iterable[tuple[str, str]] = (),
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(problem_body(type_, code, hint, errors)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def bad_request(code: str, hint: str, errors: Iterable[tuple[str, str]] = ()) -> web.Response:
    return problem(400, "validation", code, hint, errors)


def unauthorized() -> web.Response:
    return problem(
        401,
        "authentication",
        "missing-or-invalid-token",
        "send `Authorization: Bearer <token>` with the daemon's configured token",
        headers={"WWW-Authenticate": 'Bearer realm="tuiaudit"'},
    )


def too_large(limit: int) -> web.Response:
    return problem(
        413,
        "restriction",
        "request-body-too-large",
        f"the body limit is {limit} bytes: send smaller batches (or raise --max-body)",
    )


def unavailable(hint: str) -> web.Response:
    return problem(503, "unavailable", "store-unavailable", hint, headers={"Retry-After": "5"})


def conflict(hint: str) -> web.Response:
    return problem(409, "conflict", "duplicate-event", hint)


def not_found(path: str) -> web.Response:
    return problem(
        404,
        "not-found",
        "no-such-route",
        "routes: POST /api/audit/events, POST /api/audit/submit, GET /api/audit/flags, "
        "GET /healthz, GET /metrics",
        [("path", f"no route for {path}")],
    )


def method_not_allowed(method: str, allowed: Iterable[str]) -> web.Response:
    allowed = sorted(allowed)
    return problem(
        405,
        "not-found",
        "method-not-allowed",
        f"use {' or '.join(allowed)} on this route",
        [("method", f"{method} is not allowed here")],
        headers={"Allow": ", ".join(allowed)},
    )


def internal(
    hint: str = "the daemon failed unexpectedly: see its log", reason: str | None = None
) -> web.Response:
    return problem(500, "internal", "internal-error", hint, [("$", reason)] if reason else ())
