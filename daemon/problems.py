"""RFC 9457 problem responses (``application/problem+json``), DESIGN §8.2.

Every answer that is not a success carries::

    {"type": "https://tuiaudit.invalid/problems/validation",   # the family, a URI
     "title": "Invalid request",                               # fixed per type
     "status": 400,
     "detail": "fix the fields listed in errors",              # what to do next
     "code": "invalid-events",                                 # extension: the precise condition
     "errors": [{"path": "events[0].name", "reason": "required"}]}  # extension

``type`` is what a client branches on; ``code`` names the precise condition
within it; ``errors`` names each bad field of a rejected body. The families
are listed once in ``PROBLEM_TYPES`` (the OpenAPI document reads it too).
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://tuiaudit.invalid/problems/"
"""``.invalid`` (RFC 2606): the type is an identifier, never fetched."""

PROBLEM_TYPES: dict[str, str] = {
    "validation": "Invalid request",
    "authentication": "Authentication required",
    "forbidden": "Forbidden",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "conflict": "Conflict",
    "too-large": "Request body too large",
    "unsupported-media-type": "Unsupported media type",
    "unavailable": "Service unavailable",
    "internal": "Internal error",
}
"""Family -> title. A family not listed gets the HTTP status phrase as its title."""


def type_uri(family: str) -> str:
    return TYPE_BASE + family


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status http.HTTPStatus does not name (e.g. a receiver's 599)
        return f"HTTP {status}"


def family_for(status: int) -> str:
    """The family of a status with no more precise one: ``validation`` for 400, else its phrase."""
    for family, known in _STATUS_FAMILIES.items():
        if status == known:
            return family
    return "-".join(_phrase(status).lower().split())


_STATUS_FAMILIES = {
    "validation": 400,
    "authentication": 401,
    "forbidden": 403,
    "not-found": 404,
    "conflict": 409,
    "too-large": 413,
    "unsupported-media-type": 415,
    "unavailable": 503,
    "internal": 500,
}


def problem_body(
    status: int,
    type_: str,
    code: str,
    detail: str,
    errors: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    title = PROBLEM_TYPES.get(type_) or _phrase(status)
    return {
        "type": type_uri(type_),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "errors": [{"path": path, "reason": reason} for path, reason in errors],
    }


def problem(
    status: int,
    type_: str,
    code: str,
    detail: str,
    errors: Iterable[tuple[str, str]] = (),
    *,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A problem response; ``type_`` is the family word (``validation``), made a URI here."""
    return web.Response(
        status=status,
        body=orjson.dumps(problem_body(status, type_, code, detail, errors)),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def bad_request(code: str, detail: str, errors: Iterable[tuple[str, str]] = ()) -> web.Response:
    return problem(400, "validation", code, detail, errors)


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
        "too-large",
        "request-body-too-large",
        f"the body limit is {limit} bytes: send smaller batches (or raise --max-body)",
    )


def unavailable(detail: str) -> web.Response:
    return problem(503, "unavailable", "store-unavailable", detail, headers={"Retry-After": "5"})


def conflict(detail: str, errors: Iterable[tuple[str, str]] = ()) -> web.Response:
    """409: ``errors`` names each event whose id is already stored or repeated."""
    return problem(409, "conflict", "duplicate-event", detail, errors)


def not_found(path: str) -> web.Response:
    return problem(
        404,
        "not-found",
        "no-such-route",
        "routes: POST /api/audit/events, POST /api/audit/submit, GET /api/audit/flags, "
        "GET /healthz, GET /metrics, GET /openapi.json",
        [("path", f"no route for {path}")],
    )


def method_not_allowed(method: str, allowed: Iterable[str]) -> web.Response:
    allowed = sorted(allowed)
    return problem(
        405,
        "method-not-allowed",
        "method-not-allowed",
        f"use {' or '.join(allowed)} on this route",
        [("method", f"{method} is not allowed here")],
        headers={"Allow": ", ".join(allowed)},
    )


def internal(
    detail: str = "the daemon failed unexpectedly: see its log", reason: str | None = None
) -> web.Response:
    return problem(500, "internal", "internal-error", detail, [("$", reason)] if reason else ())
