"""Failure classes, back-off with full jitter, Retry-After parsing (DESIGN §5.2)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tuiaudit.daemon.retry import (
    CONFIG,
    MALFORMED,
    RETRYABLE,
    ConfigurationShipError,
    MalformedBatchError,
    RetryableShipError,
    ShipError,
    backoff_delay,
    classify_status,
    error_for_status,
    parse_retry_after,
    retry_time,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 202, 204, 206])
def test_success_range(status: int) -> None:
    assert classify_status(status) is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (408, RETRYABLE),
        (429, RETRYABLE),
        (500, RETRYABLE),
        (502, RETRYABLE),
        (503, RETRYABLE),
        (599, RETRYABLE),
        (400, MALFORMED),
        (413, MALFORMED),
        (422, MALFORMED),
        (401, CONFIG),
        (403, CONFIG),
        (404, CONFIG),
        (405, CONFIG),
        (410, CONFIG),
        (207, CONFIG),
        (301, CONFIG),
    ],
)
def test_classes(status: int, cls: str) -> None:
    assert classify_status(status) == cls


def test_exception_tree() -> None:
    assert issubclass(RetryableShipError, ShipError)
    assert issubclass(RetryableShipError, ConnectionError)
    assert issubclass(MalformedBatchError, ShipError)
    assert issubclass(ConfigurationShipError, ShipError)
    assert isinstance(error_for_status(503), RetryableShipError)
    assert isinstance(error_for_status(413), MalformedBatchError)
    err = error_for_status(401)
    assert isinstance(err, ConfigurationShipError)
    assert "--telemetry-uri" in str(err) and err.status == 401


def test_retry_after_seconds_and_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("999999") == 3600.0  # capped at 1 h
    date = "Sat, 01 Mar 2025 12:05:00 GMT"
    assert parse_retry_after(date, now=NOW) == 300.0
    assert parse_retry_after("Sat, 01 Mar 2025 11:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("Sun, 02 Mar 2025 12:00:00 GMT", now=NOW) == 3600.0


@pytest.mark.parametrize("garbage", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2025"])
def test_retry_after_garbage_means_backoff(garbage: str | None) -> None:
    assert parse_retry_after(garbage, now=NOW) is None


def test_retryable_error_carries_retry_after() -> None:
    err = error_for_status(429, retry_after="42", now=NOW)
    assert err.retry_after == 42.0


def test_backoff_doubles_with_full_jitter() -> None:
    top = random.Random()
    top.uniform = lambda a, b: b  # type: ignore[method-assign]
    bottom = random.Random()
    bottom.uniform = lambda a, b: a  # type: ignore[method-assign]
    assert [backoff_delay(n, initial=30, rng=top) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_delay(5, initial=30, rng=bottom) == 0
    rng = random.Random(7)
    delays = [backoff_delay(3, initial=30, rng=rng) for _ in range(200)]
    assert all(0 <= d <= 120 for d in delays) and len(set(delays)) > 100


def test_backoff_never_past_next_run_but_retry_after_wins() -> None:
    top = random.Random()
    top.uniform = lambda a, b: b  # type: ignore[method-assign]
    assert backoff_delay(10, initial=30, rng=top, ceiling=100) == 100
    assert backoff_delay(10, initial=30, rng=top, ceiling=100, retry_after=500) == 500
    assert backoff_delay(1, initial=30, rng=top, retry_after=5) == 30  # a minimum, not a value
    at = retry_time(
        NOW, 20, initial=30, rng=top, retry_after=None, next_run_at=NOW + timedelta(hours=3)
    )
    assert at == NOW + timedelta(hours=3)
