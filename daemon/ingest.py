"""The ingest HTTP API (DESIGN §8.2): aiohttp routes and middlewares.

``POST /api/audit/events`` (frontend batch), ``POST /api/audit/submit`` (backend
event or batch), ``GET /api/audit/flags``, ``GET /healthz``, ``GET /metrics``.
Every answer that is not a success is a JSON problem (``daemon.problems``).
A request's events are validated as a whole and stored in one transaction
(``AuditLog.submit_many`` / ``ingest_frontend``): a 400 or 503 stores nothing.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tuiaudit.audit import AuditLog
from tuiaudit.config import Settings
from tuiaudit.daemon import guards, problems
from tuiaudit.daemon.clientip import Network, client_ip
from tuiaudit.daemon.logs import log_event
from tuiaudit.daemon.metrics import CONTENT_TYPE, CachedStats, Metrics, render, store_snapshot
from tuiaudit.daemon.openapi import (
    EVENTS_PATH,
    FLAGS_PATH,
    HEALTHZ_PATH,
    METRICS_PATH,
    OPENAPI_PATH,
    SUBMIT_PATH,
    document_bytes,
)
from tuiaudit.events import ValidationError
from tuiaudit.ids import ZERO_UUID, is_uuid_string
from tuiaudit.storage.base import Store, StoreConflict, StoreError, StoreUnavailable

log = logging.getLogger("tuiaudit.daemon.ingest")

MAX_DEPTH = 64


@dataclass
class IngestContext:
    """What the routes need; built by the service, passed in (tests build their own)."""

    store: Store
    audit: AuditLog
    settings: Settings
    metrics: Metrics
    trusted_proxies: tuple[Network, ...] = ()
    stats: CachedStats | None = None
    exposition: Callable[[], Awaitable[bytes]] | None = None
    """Set in an ingest worker process: /metrics is the whole daemon's, rendered by
    the daemon process (daemon/ingest_workers.py), not this process's alone."""
    stored_ids: Callable[[Sequence[uuid.UUID]], Awaitable[set[uuid.UUID]]] | None = None
    """Which of these ids the store holds (a 409 names them); default: ``store.get_row``.
    An ingest worker asks the daemon process, which owns the store."""


CTX_KEY: web.AppKey[IngestContext] = web.AppKey("ingest", IngestContext)
REQUEST_ID = web.RequestKey("request_id", uuid.UUID)
CLIENT_IP = web.RequestKey("client_ip", str)
EVENT_COUNT = web.RequestKey("event_count", int)


class BodyError(Exception):
    """A body that cannot become events; carries the problem's code, hint and fields."""

    def __init__(self, code: str, hint: str, errors: list[tuple[str, str]]) -> None:
        super().__init__(code)
        self.code = code
        self.hint = hint
        self.errors = errors


# ------------------------------------------------------------------ body parsing

_NON_FINITE = re.compile(rb"(?<![\w\"])-?(?:NaN|Infinity)\b")


def parse_body(body: bytes) -> Any:
    """Strict JSON: UTF-8, finite numbers, no more than orjson's 1024 levels."""
    if not body.strip():
        raise BodyError("empty-body", "send a JSON object", [("$", "the body is empty")])
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as uexc:
            reason = f"invalid UTF-8 at byte {uexc.start}"
        else:
            if _NON_FINITE.search(body):
                reason = "NaN and Infinity are not JSON numbers"
            elif "depth" in str(exc) or "recursion" in str(exc):
                reason = f"nested far more than {MAX_DEPTH} levels"
            elif "surrogate" in str(exc):
                reason = "a string holds a lone UTF-16 surrogate"
            else:
                reason = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise BodyError("invalid-json", "send a UTF-8 JSON object", [("$", reason)]) from None
    # Nesting deeper than MAX_DEPTH inside props/context is reported by the
    # event validation with the exact path; orjson itself stops at 1024 levels.
    return value


def _events_list(body: Mapping[str, Any], allowed: set[str]) -> list[Mapping[str, Any]]:
    errors = [(str(k), "unknown field") for k in body if k not in allowed]
    events = body.get("events")
    if not isinstance(events, list):
        errors.append(("events", "must be a list of event objects"))
    else:
        errors += [
            (f"events[{i}]", "must be a JSON object")
            for i, e in enumerate(events)
            if not isinstance(e, dict)
        ]
    if errors:
        raise BodyError("invalid-events", "fix the fields listed in errors", errors)
    return events  # type: ignore[return-value]


def frontend_batch(body: Any) -> tuple[uuid.UUID, list[Mapping[str, Any]]]:
    """``{"profile-id"?, "events": [...]}`` → (profile id, raw events)."""
    if not isinstance(body, dict):
        raise BodyError(
            "invalid-events",
            'send {"profile-id"?: UUID, "events": [...]}',
            [("$", "must be a JSON object")],
        )
    errors: list[tuple[str, str]] = []
    profile_id = ZERO_UUID
    # Either spelling (null means absent), never both: the one not checked
    # would be silently ignored.
    given = [(k, body[k]) for k in ("profile-id", "profile_id") if body.get(k) is not None]
    if len(given) > 1:
        errors.append(("profile_id", "given twice (as profile-id and profile_id); send one"))
    elif given:
        key, raw_pid = given[0]
        if is_uuid_string(raw_pid):
            profile_id = uuid.UUID(raw_pid)
        else:
            errors.append((key, "must be a UUID string (8-4-4-4-12 hex digits)"))
    try:
        events = _events_list(body, {"events", "profile-id", "profile_id"})
    except BodyError as exc:
        exc.errors = errors + exc.errors
        raise
    if errors:
        raise BodyError("invalid-events", "fix the fields listed in errors", errors)
    return profile_id, events


def backend_events(body: Any) -> tuple[list[Mapping[str, Any]], bool]:
    """One event object or ``{"events": [...]}`` → (raw events, was it a batch)."""
    if not isinstance(body, dict):
        raise BodyError(
            "invalid-events",
            'send one event object or {"events": [...]}',
            [("$", "must be a JSON object")],
        )
    if "events" in body:
        return _events_list(body, {"events"}), True
    return [body], False


def _validation_errors(exc: ValidationError, single: bool) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors:
        path = err.path
        if single and path.startswith("events[0]"):  # the client sent one bare event
            path = path[len("events[0]") :].lstrip(".") or "$"
        out.append((path, err.reason))
    return out


# --------------------------------------------------------------------- handlers


MAX_ID_LOOKUPS = 1000
"""A 409 looks up at most this many of the batch's ids (a conflict is rare; a batch small)."""


async def stored_ids(store: Store, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``ids`` are stored: one primary-key lookup each, only after a conflict."""
    return {i for i in ids[:MAX_ID_LOOKUPS] if await store.get_row(i) is not None}


async def duplicate_ids(
    ctx: IngestContext, events: Sequence[Mapping[str, Any]], *, single: bool
) -> list[tuple[str, str]]:
    """The ``errors`` of a 409: each event whose id repeats in the batch or is stored."""
    out: list[tuple[str, str]] = []
    first: dict[uuid.UUID, int] = {}
    for index, event in enumerate(events):
        raw = event.get("id")
        if is_uuid_string(raw):
            row_id = uuid.UUID(raw)
            if row_id in first:
                out.append((_id_path(index, single), f"{row_id} is also events[{first[row_id]}]"))
            else:
                first[row_id] = index
    if first:
        lookup = ctx.stored_ids or (lambda ids: stored_ids(ctx.store, ids))
        try:
            stored = await lookup(list(first))
        except StoreError:
            stored = set()  # the 409 still stands; it only names fewer ids
        out += [
            (_id_path(index, single), f"{row_id} is already stored")
            for row_id, index in first.items()
            if row_id in stored
        ]
    return sorted(out, key=lambda e: _path_order(e[0]))


def _id_path(index: int, single: bool) -> str:
    return "id" if single else f"events[{index}].id"


def _path_order(path: str) -> int:
    return int(path[7 : path.index("]")]) if path.startswith("events[") else 0


def webhook_warnings(
    settings: Settings, events: Sequence[Mapping[str, Any]], *, single: bool
) -> list[tuple[str, str]]:
    """Webhook marks a daemon without the ``webhooks`` flag stores but never delivers."""
    if settings.has("webhooks"):
        return []
    reason = "ignored: this daemon runs without the webhooks flag (add webhooks to --flags)"
    return [
        ("webhook" if single else f"events[{index}].webhook", reason)
        for index, event in enumerate(events)
        if event.get("webhook") not in (None, False)
    ]


async def _store_events(
    request: web.Request,
    events: Sequence[Mapping[str, Any]],
    call: Callable[[], Awaitable[int]],
    *,
    single: bool = False,
) -> web.Response:
    ctx = request.app[CTX_KEY]
    count = len(events)
    try:
        stored = await call()
    except StoreUnavailable as exc:
        log_event(log, "store-unavailable", logging.WARNING, events=count, error=str(exc))
        return problems.unavailable("the store cannot write right now; retry later")
    except StoreConflict:
        log_event(log, "duplicate-event", logging.INFO, events=count)
        dupes = await duplicate_ids(ctx, events, single=single)
        named = f" ({len(dupes)} listed in errors)" if dupes else ""
        return problems.conflict(
            f"an event id of this batch is already stored (a retried request?){named}; "
            "nothing of this batch was stored: resend it without the ids already accepted",
            dupes,
        )
    ctx.metrics.events_accepted += count
    ctx.metrics.events_stored += stored
    warnings = webhook_warnings(ctx.settings, events, single=single)
    if warnings:
        # Stored, with something to say: 200 and a body (a 204 has none). DESIGN §8.2
        body = {"warnings": [{"path": path, "reason": reason} for path, reason in warnings]}
        return web.json_response(body, dumps=_dumps)
    return web.Response(status=204)


async def post_events(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    body = parse_body(await request.read())
    _note_count(request, body, bare_event=False)
    profile_id, events = frontend_batch(body)
    try:
        return await _store_events(
            request,
            events,
            lambda: ctx.audit.ingest_frontend(
                events,
                profile_id=profile_id,
                ip_addr=request[CLIENT_IP],
                request_id=request[REQUEST_ID],
            ),
        )
    except ValidationError as exc:
        raise BodyError(
            "invalid-events", "fix the fields listed in errors", _validation_errors(exc, False)
        ) from None


async def post_submit(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    body = parse_body(await request.read())
    _note_count(request, body, bare_event=True)
    events, batch = backend_events(body)
    try:
        # The peer of a backend submit is the application server, not the
        # user: the event's own ip-addr (default 0.0.0.0, DESIGN §1.1) is kept.
        return await _store_events(
            request,
            events,
            lambda: ctx.audit.submit_many(events, request_id=request[REQUEST_ID]),
            single=not batch,
        )
    except ValidationError as exc:
        raise BodyError(
            "invalid-events", "fix the fields listed in errors", _validation_errors(exc, not batch)
        ) from None


async def get_flags(request: web.Request) -> web.Response:
    s = request.app[CTX_KEY].settings
    return web.json_response(
        {"audit-log": s.has("audit-log"), "telemetry": s.has("telemetry")}, dumps=_dumps
    )


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[CTX_KEY].store.ping()
    except StoreError as exc:
        log_event(log, "healthz-failed", logging.WARNING, error=str(exc))
        return problems.unavailable("the store is not answering: see the daemon log")
    return web.json_response({"status": "ok"}, dumps=_dumps)


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX_KEY]
    if ctx.exposition is not None:
        try:
            body = await ctx.exposition()
        except StoreError:
            return problems.unavailable("the daemon process is not answering: see its log")
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
    try:
        snapshot = await (ctx.stats.get() if ctx.stats else store_snapshot(ctx.store))
    except StoreError:
        snapshot = None  # counters still render; the store gauges are absent, store_up 0
    response = web.Response(body=render(ctx.metrics, snapshot))
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def openapi(request: web.Request) -> web.Response:
    """The API's description (``daemon.openapi``), the same bytes as docs/openapi.json."""
    return web.Response(body=document_bytes(), content_type="application/json")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ------------------------------------------------------------------ middlewares

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON problem; request id, client IP and status counting."""
    ctx = request.app[CTX_KEY]
    request[REQUEST_ID] = uuid.uuid4()
    # Several X-Forwarded-For headers are one list, in order (RFC 9110 §5.3).
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", ())) or None
    request[CLIENT_IP] = client_ip(request.remote, forwarded, ctx.trusted_proxies)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except BodyError as exc:
        ctx.metrics.events_rejected += _event_count(request)
        log_event(log, "request-rejected", code=exc.code, path=request.path, errors=len(exc.errors))
        response = problems.bad_request(exc.code, exc.hint, exc.errors)
    except web.HTTPRequestEntityTooLarge:
        response = problems.too_large(ctx.settings.max_body)
    except web.HTTPMethodNotAllowed as exc:
        response = problems.method_not_allowed(request.method, exc.allowed_methods)
    except web.HTTPNotFound:
        response = problems.not_found(request.path)
    except web.HTTPException as exc:
        response = problems.problem(
            exc.status,
            problems.family_for(exc.status),
            exc.reason.lower().replace(" ", "-"),
            exc.text or exc.reason,
        )
    except StoreError as exc:
        # e.g. an event id that is already stored (a retried batch): the store's
        # message names the constraint, never a payload value.
        log_event(log, "store-error", logging.ERROR, path=request.path, error=str(exc))
        response = problems.internal("the store rejected the write; nothing was stored", str(exc))
    ctx.metrics.requests[response.status] += 1
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"  # bounded label values
    ctx.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
    response.headers["X-Request-Id"] = str(request[REQUEST_ID])
    return response


def _event_count(request: web.Request) -> int:
    """Events in a rejected request, for the rejected counter (0 when unparseable)."""
    return int(request.get(EVENT_COUNT, 0))


def _note_count(request: web.Request, body: Any, bare_event: bool) -> None:
    if isinstance(body, dict):
        events = body.get("events")
        if isinstance(events, list):
            request[EVENT_COUNT] = len(events)
        elif bare_event and "events" not in body:
            request[EVENT_COUNT] = 1


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[CTX_KEY].settings.token
    if token and request.path.startswith("/api/"):
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            return problems.unauthorized()
    return await handler(request)


def build_app(ctx: IngestContext) -> web.Application:
    # Hostile clients (daemon/guards.py): slow connections and cross-site
    # browser writes are refused inside the error handling, before auth.
    browser = guards.browser_guard(ctx.settings.allowed_origins)
    app = web.Application(
        middlewares=[errors_middleware, guards.connection_guard, browser, auth_middleware],
        client_max_size=ctx.settings.max_body,
    )
    app[CTX_KEY] = ctx
    guards.install_guard(app, guards.limits_of(ctx.settings), name="ingest")
    app.router.add_post(EVENTS_PATH, post_events)
    app.router.add_post(SUBMIT_PATH, post_submit)
    app.router.add_get(FLAGS_PATH, get_flags)
    app.router.add_get(HEALTHZ_PATH, healthz)
    app.router.add_get(METRICS_PATH, metrics)
    app.router.add_get(OPENAPI_PATH, openapi)
    return app
