"""The ingest API described as OpenAPI 3.1 (``GET /openapi.json``, docs/openapi.json).

The document is built from the tables the handlers validate with: the event
field tables and limits of ``tuiaudit.events`` (``BACKEND_FIELDS``,
``MAX_NAME_LENGTH``, ``FRONTEND_TYPES`` ...), the control-character rule of
``tuiaudit.safe_text``, the epoch range of ``tuiaudit.timeutil`` and the
problem families of ``daemon.problems``; the route paths live here and
``daemon.ingest`` registers its handlers on them. Nothing is written twice, so
the description cannot drift from the code; ``tests/test_openapi.py``
regenerates the committed file and compares, and checks every route's real
answers against it (schemathesis on a live daemon included).

``python -m tuiaudit.daemon.openapi --write`` refreshes docs/openapi.json.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from tuiaudit import __version__
from tuiaudit.daemon.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES, TYPE_BASE
from tuiaudit.events import (
    BACKEND_FIELDS,
    FRONTEND_FIELDS,
    FRONTEND_NAME_PATTERN,
    FRONTEND_TYPES,
    MAX_JSON_DEPTH,
    MAX_NAME_LENGTH,
    RESERVED_PROPS,
    SERVER_FIELDS,
    WEBHOOK_FIELDS,
)
from tuiaudit.ids import UUID_PATTERN
from tuiaudit.safe_text import CONTROL_CHARS
from tuiaudit.timeutil import EPOCH_MS_RANGE

EVENTS_PATH = "/api/audit/events"
SUBMIT_PATH = "/api/audit/submit"
FLAGS_PATH = "/api/audit/flags"
HEALTHZ_PATH = "/healthz"
METRICS_PATH = "/metrics"
OPENAPI_PATH = "/openapi.json"

DOC_PATH = Path("docs") / "openapi.json"
"""Where the committed copy lives, relative to the repository root."""

_REF = "#/components/schemas/"
_NO_CONTROLS = "^[^" + CONTROL_CHARS.pattern[1:-1] + "]*$"
_UUID = {"type": "string", "pattern": f"^{UUID_PATTERN.pattern}$", "format": "uuid"}
# What parse_rfc3339 takes: a real calendar date (leap days included), T (or
# t, or a space), a time with seconds 00-59, an optional fraction and a
# required offset (Z or ±HH:MM).
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_DATE = (
    f"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
    f"|02-(0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)"
)
_RFC3339 = (
    f"^{_DATE}[Tt ]"
    r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


_NOT_NULL = {"not": {"type": "null"}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """A field whose ``null`` means "absent" (the validators drop null fields)."""
    return {"anyOf": [schema, {"type": "null"}]}


def _schemas() -> dict[str, Any]:
    lo, hi = EPOCH_MS_RANGE
    timestamp = {
        "description": "RFC 3339 with an offset (2024-05-01T12:30:00Z) or epoch milliseconds.",
        "anyOf": [
            {"type": "string", "pattern": _RFC3339, "minLength": 19, "maxLength": 40},
            {"type": "number", "minimum": lo, "maximum": hi},
        ],
    }
    key_rule = {"pattern": _NO_CONTROLS}
    json_value = {
        "description": f"Any JSON value: no integer from 2^63 to 2^64-1 (the events' integers "
        f"are signed 64-bit), no control characters in object keys, nested at most "
        f"{MAX_JSON_DEPTH} levels.",
        "anyOf": [
            {"type": ["string", "boolean", "null"]},
            # orjson reads an integer past 64 bits as a float, except 2**63..2**64-1
            # (an unsigned 64-bit int) which the checks refuse: Fressian has int64.
            {"type": "number", "not": {"type": "integer", "minimum": 2**63, "maximum": 2**64 - 1}},
            {"type": "array", "items": {"$ref": _REF + "JsonValue"}},
            {
                "type": "object",
                "propertyNames": key_rule,
                "additionalProperties": {"$ref": _REF + "JsonValue"},
            },
        ],
    }
    json_object = {
        "type": "object",
        "propertyNames": key_rule,
        "additionalProperties": {"$ref": _REF + "JsonValue"},
    }
    props_text = (
        "Event properties. Null values and the secret keys "
        + ", ".join(sorted(RESERVED_PROPS))
        + " are dropped before storing."
    )
    text = {"type": "string", "minLength": 1, "pattern": _NO_CONTROLS}
    canonical = [k for k, v in BACKEND_FIELDS.items() if k == v]
    webhook_types = {
        "batch-key": _nullable({"type": "string"}),
        "batch-timeout-ms": _nullable({"type": "integer", "minimum": 0, "maximum": 2**63 - 1}),
    }
    backend_types: dict[str, Any] = {
        "id": _UUID | {"description": "Client-chosen event id (default: a new UUIDv7)."},
        "name": text | {"maxLength": MAX_NAME_LENGTH},
        "type": text,
        "profile-id": _UUID | {"description": "The acting user (default: the zero UUID)."},
        "props": json_object | {"description": props_text},
        "context": json_object,
        "ip-addr": {
            "type": "string",
            "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}],
            "description": "The user's address (default 0.0.0.0).",
        },
        "tracked-at": {"$ref": _REF + "Timestamp"},
        "webhook": {
            "description": "Deliver this event to webhooks too (DESIGN §6).",
            "anyOf": [
                {"type": "boolean"},
                {
                    "type": "object",
                    "properties": {k: webhook_types[v] for k, v in WEBHOOK_FIELDS.items()},
                    "additionalProperties": False,
                },
            ],
        },
    }
    assert set(backend_types) == set(canonical), "a field of events.BACKEND_FIELDS lacks a schema"
    properties: dict[str, Any] = {}
    for spelling, canon in BACKEND_FIELDS.items():
        properties[spelling] = _nullable(backend_types[canon])
    synonyms = [(canon, k) for k, canon in BACKEND_FIELDS.items() if k != canon]
    backend_event: dict[str, Any] = {
        "type": "object",
        "description": "A backend event (DESIGN §1.1). Server fields ("
        + ", ".join(sorted(SERVER_FIELDS))
        + ") and unknown fields are refused unless null; snake_case synonyms are accepted, "
        "but not both spellings of one field.",
        "required": ["name", "type"],
        "properties": properties,
        "additionalProperties": {"type": "null"},
        "allOf": [
            {
                "not": {
                    "required": [canon, alias],
                    "properties": {
                        canon: {"not": {"type": "null"}},
                        alias: {"not": {"type": "null"}},
                    },
                }
            }
            for canon, alias in synonyms
        ],
    }
    # name and type must be non-null strings even though other fields may be null
    backend_event["properties"]["name"] = backend_types["name"]
    backend_event["properties"]["type"] = backend_types["type"]
    frontend_types: dict[str, Any] = {
        "name": {"type": "string", "pattern": f"^{FRONTEND_NAME_PATTERN}$"},
        "type": {"type": "string", "enum": sorted(FRONTEND_TYPES)},
        "timestamp": {"$ref": _REF + "Timestamp"},
        "props": _nullable(json_object | {"description": props_text}),
        "context": _nullable(json_object),
    }
    assert set(frontend_types) == set(FRONTEND_FIELDS), "a frontend field lacks a schema"
    frontend_event = {
        "type": "object",
        "description": "A browser event (DESIGN §1.2). A timestamp more than an hour old or "
        "in the future is replaced by the request time (the client's kept in "
        "context.original-tracked-at).",
        "required": ["name", "type", "timestamp"],
        "properties": frontend_types,
        "additionalProperties": {"type": "null"},
    }
    problem = {
        "type": "object",
        "description": "RFC 9457 problem details; `code` and `errors` are extensions.",
        "required": ["type", "title", "status", "detail", "code", "errors"],
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": "The family a client branches on: "
                + ", ".join(TYPE_BASE + f for f in PROBLEM_TYPES),
            },
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "What to do next."},
            "code": {"type": "string", "description": "The precise condition."},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["path", "reason"],
                    "properties": {"path": {"type": "string"}, "reason": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    }
    return {
        "JsonValue": json_value,
        "Timestamp": timestamp,
        "BackendEvent": backend_event,
        "BackendBatch": {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "items": {"$ref": _REF + "BackendEvent"}}},
            "additionalProperties": False,
        },
        "FrontendEvent": frontend_event,
        "FrontendBatch": {
            "type": "object",
            "required": ["events"],
            "properties": {
                "profile-id": _nullable(_UUID),
                "profile_id": _nullable(_UUID),
                "events": {"type": "array", "items": {"$ref": _REF + "FrontendEvent"}},
            },
            "additionalProperties": False,
            "not": {
                "required": ["profile-id", "profile_id"],
                "properties": {
                    "profile-id": {"not": {"type": "null"}},
                    "profile_id": {"not": {"type": "null"}},
                },
            },
        },
        "Flags": {
            "type": "object",
            "required": ["audit-log", "telemetry"],
            "properties": {"audit-log": {"type": "boolean"}, "telemetry": {"type": "boolean"}},
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
            "additionalProperties": False,
        },
        "Problem": problem,
        "Warnings": {
            "type": "object",
            "required": ["warnings"],
            "properties": {
                "warnings": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["path", "reason"],
                        "properties": {"path": {"type": "string"}, "reason": {"type": "string"}},
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    }


def _problem_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF + "Problem"}}},
    }
    out["headers"].update(headers or {})
    return out


_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
}


def _responses(ok: dict[str, Any], *, api: bool, write: bool) -> dict[str, Any]:
    out = dict(ok)
    out["400" if write else "default"] = _problem_response(
        "The body is not an acceptable batch: `errors` names every bad field; nothing was stored."
        if write
        else "An unexpected failure."
    )
    if api:
        out["401"] = _problem_response(
            "A token is configured and the request lacks `Authorization: Bearer <token>`.",
            {"WWW-Authenticate": {"schema": {"type": "string"}}},
        )
        out["403"] = _problem_response(
            "A browser request from an origin not in --allowed-origins, or a cross-site one."
        )
    if write:
        out["408"] = _problem_response("The body did not arrive within the time limit.")
        out["409"] = _problem_response(
            "An event id of the batch is already stored (a retried request?) or repeated in it; "
            "nothing was stored: `errors` names each such event's id."
        )
        out["413"] = _problem_response("The body is larger than --max-body (1 MiB by default).")
        out["415"] = _problem_response(
            "The body is not sent as `Content-Type: application/json`.",
            {"Accept-Post": {"schema": {"type": "string"}}},
        )
        out["500"] = _problem_response("The store refused the write; nothing was stored.")
    if write or api or ok.keys() == {"200"}:
        out["503"] = _problem_response(
            "The store cannot answer right now; nothing was stored: retry later.", _RETRY_AFTER
        )
    return out


def _write_op(
    summary: str, description: str, body: dict[str, Any], *, warns: bool = False
) -> dict[str, Any]:
    ok: dict[str, Any] = {
        "204": {
            "description": "Every event was valid and is stored (one transaction).",
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        }
    }
    if warns:
        ok["200"] = {
            "description": "Every event was valid and is stored (one transaction), with "
            "something to say: `warnings` names each field the daemon stored but will not act "
            "on (a `webhook` mark on a daemon without the webhooks flag).",
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
            "content": {"application/json": {"schema": {"$ref": _REF + "Warnings"}}},
        }
    return {
        "summary": summary,
        "description": description,
        "security": [{"bearer": []}, {}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": _responses(ok, api=True, write=True),
    }


def _json_ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "200": {
            "description": description,
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
            "content": {"application/json": {"schema": schema}},
        }
    }


@cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the ingest API (the same for every daemon)."""
    text_ok = {
        "200": {
            "description": "Prometheus text exposition 0.0.4 (see docs/OPERATIONS.md).",
            "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tuiaudit ingest API",
            "version": __version__,
            "description": "Audit events in, over HTTP on the daemon's --listen address "
            "(DESIGN §8.2). A request's events are validated as a whole and stored in one "
            "transaction: any answer but 204 or 200 stores nothing (200: stored, with "
            "warnings). Failures are RFC 9457 problems.",
            "license": {"name": "MPL-2.0", "identifier": "MPL-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:6061", "description": "the default --listen"}],
        "paths": {
            EVENTS_PATH: {
                "post": _write_op(
                    "Store a batch of browser events",
                    "Frontend events of one user; the client IP is the peer's (or the "
                    "right-most untrusted X-Forwarded-For address).",
                    {"$ref": _REF + "FrontendBatch"},
                )
                | {"operationId": "postEvents"}
            },
            SUBMIT_PATH: {
                "post": _write_op(
                    "Store one backend event or a batch",
                    "From the application server: one event object, or {events: [...]}.",
                    {"anyOf": [{"$ref": _REF + "BackendBatch"}, {"$ref": _REF + "BackendEvent"}]},
                    warns=True,
                )
                | {"operationId": "postSubmit"}
            },
            FLAGS_PATH: {
                "get": {
                    "operationId": "getFlags",
                    "summary": "Which of audit-log and telemetry are on",
                    "security": [{"bearer": []}, {}],
                    "responses": _responses(
                        _json_ok("The flags.", {"$ref": _REF + "Flags"}), api=True, write=False
                    ),
                }
            },
            HEALTHZ_PATH: {
                "get": {
                    "operationId": "getHealth",
                    "summary": "Liveness: the store answers",
                    "security": [],
                    "responses": _responses(
                        _json_ok("The store answered.", {"$ref": _REF + "Health"}),
                        api=False,
                        write=False,
                    ),
                }
            },
            METRICS_PATH: {
                "get": {
                    "operationId": "getMetrics",
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": _responses(text_ok, api=False, write=False),
                }
            },
            OPENAPI_PATH: {
                "get": {
                    "operationId": "getOpenapi",
                    "summary": "This document",
                    "security": [],
                    "responses": _responses(
                        _json_ok("OpenAPI 3.1.", {"type": "object"}), api=False, write=False
                    ),
                }
            },
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required on /api/ when the daemon runs with --token or "
                    "--token-file; /healthz, /metrics and /openapi.json are open.",
                }
            },
            "headers": {
                "X-Request-Id": {
                    "description": "The request's id, also in the daemon log and the stored "
                    "events' context.request-id.",
                    "schema": {"type": "string", "format": "uuid"},
                }
            },
        },
    }


@cache
def document_bytes() -> bytes:
    """The document as served and committed: sorted keys, indented, one final newline."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        root = Path(__file__).resolve().parent.parent
        (root / DOC_PATH).write_bytes(document_bytes())
    else:
        sys.stdout.buffer.write(document_bytes())
