"""``python -m tuiaudit`` for the host whose wall clock the fleet steps (under libfaketime).

The step itself is real to the process: libfaketime (Debian's ``libfaketime``,
LD_PRELOAD) offsets CLOCK_REALTIME for every call (``datetime.now``,
``time.time``, asyncpg, aiohttp) from a file the harness rewrites, while
CLOCK_MONOTONIC is left alone (FAKETIME_DONT_FAKE_MONOTONIC=1), as an NTP step
would. One libfaketime 0.9.10 bug needs this wrapper: with the monotonic clock
left alone, its clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which
``time.sleep`` uses, fails with EINVAL; ``time.sleep`` goes through select()
instead. It is replaced before tuiaudit is imported (modules bind it).
"""

from __future__ import annotations

import select
import sys
import time


def _sleep(seconds: float) -> None:
    select.select([], [], [], max(0.0, seconds))


time.sleep = _sleep

if __name__ == "__main__":
    from tuiaudit.cli import main

    sys.exit(main(sys.argv[1:]))
