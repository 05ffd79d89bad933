"""Is a daemon alive? One rule, read from its heartbeat row (DESIGN §7).

The daemon writes its state row every ``HEARTBEAT_INTERVAL`` seconds; every
reader (``tuiaudit status``, the dashboard's banner) judges the row with
``daemon_liveness``, so they never disagree about the same daemon.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from tuiaudit.storage.base import DaemonState

HEARTBEAT_INTERVAL: Final = 2.0
"""Seconds between daemon-state writes; a daemon is alive within ``STALE_AFTER`` beats."""

STALE_AFTER: Final = 3
"""Missed heartbeats before a daemon that did not exit cleanly counts as stale."""

ALIVE: Final = "alive"
STALE: Final = "stale"  # stopped beating without a clean exit (killed, host down)
STOPPED: Final = "stopped"  # exited cleanly and said so


def daemon_liveness(state: DaemonState, now: datetime, interval: float = HEARTBEAT_INTERVAL) -> str:
    """``ALIVE``, ``STALE`` or ``STOPPED`` for one daemon's state row at ``now``."""
    if state.stopped_at is not None:
        return STOPPED
    age = (now - state.heartbeat_at).total_seconds()
    return ALIVE if age < STALE_AFTER * interval else STALE
