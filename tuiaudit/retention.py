"""The telemetry queue's limits applied: drop rows past the age limit, then over the cap.

One rule for the daemon's step before every run and for ``tuiaudit gc``
(DESIGN §5): rows created more than ``max_age_days`` ago go first (reason
``age``), then the oldest rows above ``max_rows`` (reason ``cap``).
``tuiaudit.forecast`` predicts when this would start dropping rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tuiaudit.config import Settings
from tuiaudit.storage.base import GcResult, Store


async def collect_garbage(store: Store, settings: Settings, now: datetime) -> GcResult:
    """Apply ``settings.max_age_days`` and ``settings.max_rows`` to the queue at ``now``."""
    return await store.gc_telemetry(
        older_than=now - timedelta(days=settings.max_age_days), cap=settings.max_rows
    )
