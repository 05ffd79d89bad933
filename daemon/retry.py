"""How a failed telemetry send is classified, and when it is tried again (DESIGN §5.2).

Three classes, one exception tree:

* retryable — connection errors, timeouts, 408, 429, 5xx: back off (from
  ``backoff_initial`` seconds, doubling, full jitter, never past the next
  scheduled run), honouring ``Retry-After`` as a minimum (capped at 1 h);
* malformed — 400, 413, 422: the batch is split in halves, a single row that
  still fails is quarantined, the queue moves on;
* configuration — 401, 403, 404 and every other 4xx: stop, keep every row,
  show the error until the configuration changes or a send succeeds.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

RETRY_AFTER_CAP_S = 3600.0

RETRYABLE = "retryable"
MALFORMED = "malformed"
CONFIG = "config"

_MALFORMED_STATUSES = frozenset({400, 413, 422})
_RETRYABLE_STATUSES = frozenset({408, 429})


class ShipError(Exception):
    """A telemetry send failed; ``error_class`` says what the shipper does next."""

    error_class = RETRYABLE

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RetryableShipError(ShipError, ConnectionError):
    """Try again later: the receiver is down, slow, overloaded or asked us to wait."""

    error_class = RETRYABLE


class MalformedBatchError(ShipError, ValueError):
    """The receiver rejected this batch's content; smaller batches may pass."""

    error_class = MALFORMED


class ConfigurationShipError(ShipError):
    """The receiver refuses us (auth, wrong URL): retrying cannot help until settings change."""

    error_class = CONFIG


def is_success(status: int) -> bool:
    """200–206 is success (the reference treats exactly that range as accepted)."""
    return 200 <= status <= 206


def classify_status(status: int) -> str | None:
    """None for success, else ``retryable`` | ``malformed`` | ``config``."""
    if is_success(status):
        return None
    if status in _RETRYABLE_STATUSES or 500 <= status <= 599:
        return RETRYABLE
    if status in _MALFORMED_STATUSES:
        return MALFORMED
    if 400 <= status <= 499:
        return CONFIG
    # 1xx/3xx/207+ that aiohttp hands back unfollowed: the endpoint is not a
    # telemetry receiver as configured, so a retry will not help either.
    return CONFIG


def error_for_status(
    status: int, *, retry_after: str | None = None, now: datetime | None = None, hint: str = ""
) -> ShipError:
    """The exception for a non-success ``status`` (with ``Retry-After`` parsed when retryable)."""
    cls = classify_status(status)
    suffix = f": {hint}" if hint else ""
    if cls == RETRYABLE:
        return RetryableShipError(
            f"receiver answered HTTP {status}; will retry with back-off{suffix}",
            status=status,
            retry_after=parse_retry_after(retry_after, now=now),
        )
    if cls == MALFORMED:
        return MalformedBatchError(
            f"receiver rejected the batch with HTTP {status}; splitting it{suffix}", status=status
        )
    return ConfigurationShipError(
        f"receiver answered HTTP {status}: check --telemetry-uri and the receiver's "
        f"access rules; sending is stopped until the settings change{suffix}",
        status=status,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date).

    Capped at one hour; None for a missing or unparsable value (the caller then
    uses its own back-off). A date in the past means "now" (0 s).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # str.isdigit() alone accepts "²"
        digits = text.lstrip("0") or "0"
        # int() refuses over 4300 digits; anything over 12 is past the cap anyway
        return RETRY_AFTER_CAP_S if len(digits) > 12 else min(float(digits), RETRY_AFTER_CAP_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return min(max((when - now).total_seconds(), 0.0), RETRY_AFTER_CAP_S)


def backoff_delay(
    failures: int,
    *,
    initial: float,
    rng: random.Random,
    retry_after: float | None = None,
    ceiling: float | None = None,
) -> float:
    """Seconds until the next retry after ``failures`` consecutive retryable failures.

    Full jitter: uniform in ``[0, initial * 2**(failures-1)]``, never past
    ``ceiling`` (the time left to the next scheduled run). ``retry_after`` is a
    minimum that wins over the ceiling: the receiver asked us to wait.
    """
    exponent = min(max(failures - 1, 0), 30)  # 2**30 × 30 s is far past any ceiling
    delay = rng.uniform(0.0, initial * (2**exponent))
    if ceiling is not None:
        delay = min(delay, max(ceiling, 0.0))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def retry_time(
    now: datetime,
    failures: int,
    *,
    initial: float,
    rng: random.Random,
    retry_after: float | None,
    next_run_at: datetime | None,
) -> datetime:
    """``now`` plus :func:`backoff_delay`, with the ceiling taken from ``next_run_at``."""
    ceiling = (next_run_at - now).total_seconds() if next_run_at is not None else None
    delay = backoff_delay(
        failures, initial=initial, rng=rng, retry_after=retry_after, ceiling=ceiling
    )
    return now + timedelta(seconds=delay)
