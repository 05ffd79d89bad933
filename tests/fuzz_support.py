"""Shared parts of the fuzz tests: the example count, the bounded-memory check.

``TUIAUDIT_FUZZ_EXAMPLES`` sets how many cases each fuzz test runs (default
200 in CI; the report run uses 10,000: see docs/RELIABILITY.md).
"""

from __future__ import annotations

import os
import resource
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("TUIAUDIT_FUZZ_EXAMPLES", "200"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # hangs are caught by faulthandler_timeout, not by timing each case
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # the same cases every run: figures measured the same way each time
    derandomize=True,
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def bounded_memory(limit_mb: float) -> Iterator[None]:
    """Fail when the Python heap grows by more than ``limit_mb`` across the block."""
    import gc

    gc.collect()
    tracemalloc.start()
    try:
        yield
        gc.collect()
        current, _peak = tracemalloc.get_traced_memory()
        assert current / 2**20 <= limit_mb, f"heap grew by {current / 2**20:.1f} MiB"
    finally:
        tracemalloc.stop()


class Hang(Exception):
    """A single fuzz case ran past its watchdog: a hang, not a slow case."""


@contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise ``Hang`` in the main thread if the block runs longer than ``seconds``."""
    import signal

    def fire(signum: int, frame: object) -> None:
        raise Hang(f"a fuzz case ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
