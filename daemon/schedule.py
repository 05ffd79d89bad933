"""What the shipper and the archiver share: a periodic run with back-off retries and a wake.

:class:`Periodic` is the schedule of a background component (DESIGN §5.2,
§9): a run at start, then every interval, earlier for a back-off retry or
when woken (``ship-now``, consent given). The loop is here; each component
keeps its own policy in the hooks: what counts as a retry, what a run is,
what a failed run records.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Generic, Self, TypeVar

from tuiaudit.config import Settings
from tuiaudit.daemon.retry import retry_time

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
R = TypeVar("R")


async def wait_first(
    sleep: Callable[[float], Awaitable[object]], delay: float, *events: asyncio.Event
) -> None:
    """Return after ``delay`` seconds (by ``sleep``) or as soon as one of ``events`` is set."""
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(sleep(delay))]
    waiters += [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


class Periodic(Generic[R]):
    """A component that runs every interval, backs off after failures, and can be woken.

    ``R`` is what one scheduled run returns (handed to :meth:`_ran`).
    """

    settings: Settings

    def __init__(self, *, clock: Clock, sleep: Sleep, rng: random.Random | None) -> None:
        self.clock = clock
        self.sleep = sleep
        self.rng = rng if rng is not None else random.Random()
        self.next_run_at: datetime | None = None
        """When the next scheduled run starts (the service copies it into daemon state)."""
        self.retry_at: datetime | None = None
        """When a back-off retry runs, if one is pending."""
        self.failures = 0
        """Consecutive retryable failures (the back-off exponent)."""
        self.running = False
        self.on_state: Callable[[Self], None] | None = None
        """Called when the schedule or the outcome changed (the daemon copies the state)."""
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ hooks

    def _interval_s(self) -> float:
        """Seconds between scheduled runs."""
        raise NotImplementedError

    def _is_retry(self, now: datetime, woken: bool) -> bool:
        """Whether the run due at ``now`` is a back-off retry (it keeps ``next_run_at``)."""
        raise NotImplementedError

    async def _run_due(
        self, now: datetime, stop: asyncio.Event, *, is_retry: bool, woken: bool
    ) -> R:
        """One scheduled run (``stop`` set: the daemon is stopping)."""
        raise NotImplementedError

    def _ran(self, result: R) -> None:
        """After a run that did not raise: schedule what its outcome asks for."""

    def _run_failed(self, started: datetime, exc: Exception) -> None:
        """A run raised (the store or a bug): record it and back off; the loop goes on."""
        raise NotImplementedError

    # -------------------------------------------------------------- schedule

    def due_at(self) -> datetime | None:
        times = [t for t in (self.next_run_at, self.retry_at) if t is not None]
        return min(times) if times else None

    def wake(self) -> None:
        """Start a run now (e.g. the ``ship-now`` path when the caller does not wait for it)."""
        self._wake.set()

    def back_off(self, *, retry_after: float | None, next_run_at: datetime | None) -> datetime:
        """Count one more retryable failure and set when to try again (the one back-off).

        Full jitter from ``backoff_initial``, doubling, never past
        ``next_run_at``; ``retry_after`` is a minimum.
        """
        self.failures += 1
        self.retry_at = retry_time(
            self.clock(),
            self.failures,
            initial=self.settings.backoff_initial,
            rng=self.rng,
            retry_after=retry_after,
            next_run_at=next_run_at,
        )
        return self.retry_at

    async def run(self, stop: asyncio.Event) -> None:
        """The background component: a run at start, then every interval or back-off."""
        self.next_run_at = self.clock()
        while not stop.is_set():
            now = self.clock()
            due = self.due_at() or now
            if due > now and not self._wake.is_set():
                await wait_first(self.sleep, (due - now).total_seconds(), stop, self._wake)
                continue
            woken = self._wake.is_set()
            self._wake.clear()
            is_retry = self._is_retry(now, woken)
            if not is_retry:
                self.next_run_at = now + timedelta(seconds=self._interval_s())
            self.retry_at = None
            self._publish()
            try:
                result = await self._run_due(now, stop, is_retry=is_retry, woken=woken)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store or a bug: keep the daemon alive, back off
                self._run_failed(now, exc)
            else:
                self._ran(result)
            self._publish()

    def _publish(self: Self) -> None:
        if self.on_state is not None:
            self.on_state(self)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None
