"""Where telemetry bodies go: an ``http(s)://`` receiver or a ``file://`` JSON-lines file.

A sink sends one already-built body and either returns the HTTP status of a
success or raises a :class:`daemon.retry.ShipError` subclass: the shipper
never sees a raw aiohttp exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson

from tuiaudit.daemon.retry import RetryableShipError, error_for_status, is_success

_HINT_BYTES = 200  # how much of an error body to quote (receivers put their reason there)
_PROBLEM_BYTES = 4096  # an RFC 9457 problem is parsed whole (bounded) to quote its detail


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int
    latency_ms: float


class Sink(Protocol):
    uri: str

    async def send(
        self, body: bytes, *, idempotency_key: str, now: datetime | None = None
    ) -> SendResult:
        """Deliver ``body``; raise ``ShipError`` (classified) unless it was accepted."""


class HttpSink:
    """POST ``content_type`` (JSON by default) with an ``Idempotency-Key`` on one shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        uri: str,
        *,
        connect_timeout: float = 10.0,
        request_timeout: float = 60.0,
        content_type: str = "application/json",
    ) -> None:
        self.uri = uri
        self.content_type = content_type  # the archive may send application/transit+json
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, connect=connect_timeout)

    async def send(
        self, body: bytes, *, idempotency_key: str, now: datetime | None = None
    ) -> SendResult:
        headers = {"Content-Type": self.content_type, "Idempotency-Key": idempotency_key}
        started = time.perf_counter()
        try:
            async with self._session.post(
                self.uri, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                if is_success(status):
                    await resp.read()
                    return SendResult(status, (time.perf_counter() - started) * 1000)
                hint = await _error_hint(resp)
                raise error_for_status(
                    status, retry_after=resp.headers.get("Retry-After"), now=now, hint=hint
                )
        except TimeoutError:
            raise RetryableShipError(
                f"no answer from {_where(self.uri)} within the time limit "
                f"({self._timeout.connect:g} s connect, {self._timeout.total:g} s total); "
                "will retry with back-off"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableShipError(
                f"cannot reach {_where(self.uri)} ({exc.__class__.__name__}: {exc}); "
                "will retry with back-off"
            ) from None


async def _error_hint(resp: aiohttp.ClientResponse) -> str:
    try:
        if resp.content_type == "application/problem+json":  # RFC 9457: quote its detail
            raw = await resp.content.read(_PROBLEM_BYTES)
            with contextlib.suppress(ValueError):
                problem = orjson.loads(raw)
                if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
                    return " ".join(problem["detail"][:_HINT_BYTES].split())
            text = raw[:_HINT_BYTES].decode("utf-8", "replace")
        else:
            text = (await resp.content.read(_HINT_BYTES)).decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError):
        return ""
    return " ".join(text.split())


def redact_uri(uri: str | None) -> str | None:
    """The URI without credentials or query string (safe for status and the ledger)."""
    if not uri:
        return uri
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _where(uri: str) -> str:
    """scheme://host:port only: a path or query may carry a token."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class FileSink:
    """Append each envelope as one JSON line: audit what would be shared before sending."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.path = file_uri_path(uri)

    async def send(
        self, body: bytes, *, idempotency_key: str, now: datetime | None = None
    ) -> SendResult:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(_append_line, self.path, body)
        except OSError as exc:
            # A full disk may clear; a bad path will not, but it is also what the
            # user sees first in status, so keep rows and retry either way.
            raise RetryableShipError(
                f"cannot append to {self.path} ({exc.strerror or exc}): "
                "check the directory exists and is writable"
            ) from None
        return SendResult(200, (time.perf_counter() - started) * 1000)


def _append_line(path: Path, body: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, body + b"\n")  # one write: lines of concurrent writers do not interleave
    finally:
        os.close(fd)


def file_uri_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise ValueError(f"{uri!r} is not a local file:///path URI")
    return Path(unquote(parts.path))


def check_uri(uri: str) -> str | None:
    """None when ``uri`` is a usable telemetry URI, else what is wrong with it."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return None if parts.netloc else f"{uri!r} has no host"
    if parts.scheme == "file":
        try:
            path = file_uri_path(uri)
        except ValueError as exc:
            return str(exc)
        return None if path.name else f"{uri!r} names no file"
    return f"{uri!r}: the telemetry URI must start with http://, https:// or file:///"


def make_sink(
    uri: str,
    session: aiohttp.ClientSession | None,
    *,
    connect_timeout: float = 10.0,
    request_timeout: float = 60.0,
) -> Sink:
    problem = check_uri(uri)
    if problem:
        raise ValueError(problem)
    if uri.startswith("file:"):
        return FileSink(uri)
    if session is None:
        raise ValueError("an http(s) telemetry URI needs an HTTP session")
    return HttpSink(session, uri, connect_timeout=connect_timeout, request_timeout=request_timeout)
