"""Guards for the HTTP servers (ingest API and receiver) against hostile clients, DESIGN §8.2.

Two layers:

* **Browser requests** (``browser_guard``, ingest only). A web page the
  operator visits can POST to ``127.0.0.1:6061``; the browser sends such a
  request without a CORS preflight only when its ``Content-Type`` is one of
  the "simple" ones (``text/plain``, forms). So an ``/api/`` write must say
  ``application/json`` (optionally ``; charset=utf-8``), else ``415``;
  ``application/*+json`` is refused too: no client of ours sends it and each
  accepted type is one more thing to reason about. A request with an
  ``Origin`` that is not in ``--allowed-origins`` (none by default), or with
  ``Sec-Fetch-Site: cross-site``, is ``403``. A request without ``Origin``
  is a server-to-server client and is unaffected.

* **Slow clients** (``ConnectionGuard`` + ``connection_guard``). aiohttp
  reads request heads and bodies without a deadline, so a client sending one
  header line every few seconds holds a connection (and a descriptor)
  forever. The guard closes a connection that has not presented a complete
  request head within ``header_timeout`` of connecting (``keepalive_timeout``
  after its last answer), gives a body ``body_timeout`` to arrive (``408``),
  and caps open connections: past the cap, the oldest connection that is not
  inside a request is closed to make room, so ``/healthz`` still gets in
  while hundreds of slow clients wait.

``quiet_aiohttp_logs`` keeps header values and bodies out of aiohttp's own
log lines (a malformed request is logged with its raw bytes, which may
include ``Authorization: Bearer …``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tuiaudit.config import Settings
from tuiaudit.daemon import problems
from tuiaudit.daemon.logs import log_event

log = logging.getLogger("tuiaudit.daemon.guards")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_TYPE = "application/json"
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Connection limits of one server (defaults: DESIGN §8.2)."""

    header_timeout: float = 10.0
    """Seconds from connecting to a complete request head."""
    body_timeout: float = 30.0
    """Seconds for the whole request body to arrive."""
    keepalive_timeout: float = 15.0
    """Seconds an idle keep-alive connection may wait for its next request."""
    max_connections: int = 256
    """Open connections; past it the oldest idle one is closed."""


# ------------------------------------------------------------------ browsers


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """``Origin`` against the configured origins (scheme://host[:port], case-insensitive)."""
    origin = origin.strip().rstrip("/").lower()
    return any(origin == a.strip().rstrip("/").lower() for a in allowed)


def json_content_type(value: str | None) -> bool:
    """``application/json`` with no parameter but ``charset=utf-8``."""
    if not value:
        return False
    media, _, params = value.partition(";")
    if media.strip().lower() != JSON_TYPE:
        return False
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if not name.strip():
            continue
        if name.strip().lower() != "charset" or val.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return False
    return True


def browser_guard(allowed_origins: Iterable[str]) -> Any:
    """The middleware refusing cross-site browser requests and non-JSON writes on ``/api/``."""
    allowed = tuple(allowed_origins)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        origin = request.headers.get("Origin")
        if origin is not None and not origin_allowed(origin, allowed):
            log_event(log, "cross-origin-refused", logging.WARNING, path=request.path)
            return problems.problem(
                403,
                "forbidden",
                "origin-not-allowed",
                "browser requests from this origin are refused: add it to --allowed-origins "
                "if a page of yours must call the API",
                [("Origin", "not an allowed origin")],
            )
        if request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site":
            log_event(log, "cross-site-refused", logging.WARNING, path=request.path)
            return problems.problem(
                403,
                "forbidden",
                "cross-site-request",
                "cross-site browser requests are refused; call the API from your server",
                [("Sec-Fetch-Site", "cross-site")],
            )
        if (
            request.method in _WRITE_METHODS
            and request.match_info.http_exception is None  # no route: 404/405 come first
            and not json_content_type(request.headers.get("Content-Type"))
        ):
            return problems.problem(
                415,
                "unsupported-media-type",
                "content-type-not-json",
                "send the body as JSON with `Content-Type: application/json`",
                [("Content-Type", "must be application/json (charset utf-8, if given)")],
                headers={"Accept-Post": JSON_TYPE},
            )
        return await handler(request)

    return guard


# ------------------------------------------------------------- slow clients


class _Conn:
    __slots__ = ("busy", "timer", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.busy = 0  # requests being handled on it (pipelining: more than one)
        self.timer: asyncio.TimerHandle | None = None


class _GuardedProtocol(asyncio.Protocol):
    """Forwards to aiohttp's protocol; tells the guard when the connection opens and closes."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.guard._opened(self.transport)  # type: ignore[arg-type]
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.guard._closed(self.transport)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ConnectionGuard:
    """Per-server connection book-keeping: head deadlines, idle deadlines, the cap."""

    def __init__(self, limits: Limits, *, name: str = "server") -> None:
        self.limits = limits
        self.name = name
        self._conns: dict[asyncio.BaseTransport, _Conn] = {}  # insertion order = age
        self.timed_out = 0
        """Connections closed for not sending a request head in time."""
        self.evicted = 0
        """Idle connections closed to stay under the cap."""
        self.refused = 0
        """New connections closed because every open one was inside a request."""

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def protocol_factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], Any]:
        return lambda: _GuardedProtocol(self, inner())

    # -- called by the protocol wrapper
    def _opened(self, transport: asyncio.Transport) -> None:
        if len(self._conns) >= self.limits.max_connections and not self._evict_one():
            self.refused += 1
            log_event(log, "connection-refused", logging.WARNING, server=self.name)
            transport.abort()
            return
        conn = self._conns[transport] = _Conn(transport)
        self._arm(conn, self.limits.header_timeout)

    def _closed(self, transport: asyncio.Transport) -> None:
        conn = self._conns.pop(transport, None)
        if conn is not None and conn.timer is not None:
            conn.timer.cancel()

    def _evict_one(self) -> bool:
        for conn in self._conns.values():
            if not conn.busy:
                self.evicted += 1
                self._drop(conn)
                return True
        return False

    def _drop(self, conn: _Conn) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        self._conns.pop(conn.transport, None)
        conn.transport.abort()  # no FIN handshake to wait for: the descriptor is free now

    def _arm(self, conn: _Conn, seconds: float) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        conn.timer = asyncio.get_running_loop().call_later(seconds, self._expire, conn)

    def _expire(self, conn: _Conn) -> None:
        conn.timer = None
        if not conn.busy and conn.transport in self._conns:
            self.timed_out += 1
            log_event(log, "connection-timed-out", server=self.name)
            self._drop(conn)

    # -- called by the middleware
    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._conns.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy += 1
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        conn = self._conns.get(transport) if transport is not None else None
        if conn is not None:
            conn.busy = max(0, conn.busy - 1)
            if not conn.busy:
                self._arm(conn, self.limits.keepalive_timeout)


GUARD_KEY: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard", ConnectionGuard)


@web.middleware
async def connection_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Marks the connection busy while a request runs; reads the body under its deadline."""
    guard = request.app[GUARD_KEY]
    transport = request.transport
    guard.request_started(transport)
    try:
        if request.body_exists and request.method in _WRITE_METHODS:
            try:
                async with asyncio.timeout(guard.limits.body_timeout):
                    await request.read()  # cached: the handler's read() returns these bytes
            except TimeoutError:
                log_event(log, "body-timed-out", logging.WARNING, server=guard.name)
                raise web.HTTPRequestTimeout(
                    text=f"the body did not arrive within {guard.limits.body_timeout:g} s"
                ) from None
        return await handler(request)
    finally:
        guard.request_finished(transport)


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through a ``ConnectionGuard``."""

    __slots__ = ("_bound_port", "_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        *,
        backlog: int = 128,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._bound_port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._bound_port}"

    @property
    def port(self) -> int:
        return self._bound_port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
        if self._server.sockets:
            self._bound_port = self._server.sockets[0].getsockname()[1]


def install_guard(app: web.Application, limits: Limits, *, name: str) -> ConnectionGuard:
    """Give ``app`` a connection guard; ``connection_guard`` must be among its middlewares.

    The middleware goes inside the app's error handling (a 408 or 413 from
    reading the body becomes that app's usual error answer).
    """
    guard = ConnectionGuard(limits, name=name)
    app[GUARD_KEY] = guard
    return guard


def limits_of(settings: Settings) -> Limits:
    return Limits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        keepalive_timeout=settings.keepalive_timeout,
        max_connections=settings.max_connections,
    )


# ------------------------------------------------------------------ logging


class _QuietFilter(logging.Filter):
    """Keeps aiohttp's message, drops its arguments and traceback text.

    aiohttp logs a malformed request with the exception, whose text holds the
    raw bytes received (headers included); only the exception's class is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        detail = ""
        if record.exc_info and record.exc_info[1] is not None:
            detail = f" ({type(record.exc_info[1]).__name__})"
        if record.args:
            record.msg = str(record.msg).split("%", 1)[0].rstrip(" :") + " (details withheld)"
            record.args = None
        record.msg = f"{record.msg}{detail}"
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_QUIET = _QuietFilter()
AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal")


def quiet_aiohttp_logs() -> None:
    """No header value or body of a request reaches a log line through aiohttp (idempotent)."""
    for name in AIOHTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _QUIET not in logger.filters:
            logger.addFilter(_QUIET)


__all__ = [
    "GUARD_KEY",
    "ConnectionGuard",
    "GuardedSite",
    "Limits",
    "browser_guard",
    "connection_guard",
    "install_guard",
    "json_content_type",
    "limits_of",
    "origin_allowed",
    "quiet_aiohttp_logs",
]
