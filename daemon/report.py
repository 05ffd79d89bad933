"""The instance report: aggregate statistics sent before the event batches (SPEC §5 step 3).

Only counts and host facts leave the machine: today's telemetry rows per
event name, their total, store totals and what the host is (OS, architecture,
CPUs, Python, time zone). No row content.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX, Store

from tuiaudit.timeutil import day_start

REPORT_TYPE = "telemetry-legacy-report"


@dataclass(frozen=True, slots=True)
class Report:
    body: bytes
    sha256: str
    key: str
    """Idempotency-Key: the body's SHA-256 (an identical report is the same report)."""


def host_facts() -> dict[str, Any]:
    return {
        "os": platform.system() or "unknown",
        "os-release": platform.release(),
        "arch": platform.machine() or "unknown",
        "cpus": os.cpu_count() or 0,
        "python-version": platform.python_version(),
        "python-implementation": platform.python_implementation(),
        "timezone": _timezone(),
    }


def _timezone() -> str:
    tz = os.environ.get("TZ")
    if tz:
        return tz
    try:
        link = os.readlink("/etc/localtime")
    except OSError:
        return time.tzname[0] if time.tzname else "UTC"
    marker = "zoneinfo/"
    return link.split(marker, 1)[1] if marker in link else link


async def collect_stats(store: Store, *, now: datetime) -> dict[str, Any]:
    counters = await store.counts_by_name(
        source_prefix=TELEMETRY_SOURCE_PREFIX, since=day_start(now)
    )
    queue = await store.queue_stats()
    drops = await store.drop_counts()
    return {
        "event-counters": dict(sorted(counters.items())),
        "total-events": sum(counters.values()),
        "store-backend": store.backend,
        "store-total-rows": await store.total_rows(),
        "pending-telemetry-rows": queue.pending,
        "quarantined-rows": queue.quarantined,
        "dropped-rows": drops,
        **host_facts(),
    }


async def build_report(
    store: Store, *, instance_id: uuid.UUID | str, version: str, now: datetime
) -> Report:
    body = orjson.dumps(
        {
            "type": REPORT_TYPE,
            "version": version,
            "instance-id": str(instance_id),
            "stats": await collect_stats(store, now=now),
        }
    )
    digest = hashlib.sha256(body).hexdigest()
    return Report(body=body, sha256=digest, key=digest)
