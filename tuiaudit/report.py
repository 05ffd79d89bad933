"""The ONE builder of the instance report body (DESIGN §5 step 3).

The shipper posts it before the event batches; ``tuiaudit preview`` and the
dashboard's Next batch tab show it. All three call :func:`next_report`, so the
SHA-256 a user previews is the SHA-256 of the body the receiver gets.

Only counts and host facts leave the machine: today's telemetry rows per
event name (only names the policy lets through, DESIGN §3.1), their total,
store totals and what the host is. :data:`REPORT_FIELDS` lists every field,
and the consent text is generated from it (:mod:`tuiaudit.report_fields`).

The body is a pure function of the store state, the day and the host, and a
preview *pins* the report it showed (the server property
``shipping-report-next``, insert-only, like the batch journal of
:mod:`tuiaudit.batch`): the shipper's next run that day sends exactly that
body, then clears the pin, even though counters moved in between. A pin from
another day, another version or another instance id is ignored.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from tuiaudit.policy import withheld_reason
from tuiaudit.report_fields import REPORT_ENVELOPE_FIELDS, REPORT_FIELDS, REPORT_TYPE
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy
from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX, Store, StoreError
from tuiaudit.timeutil import day_start, parse_timestamp, to_rfc3339

log = logging.getLogger("tuiaudit.shipper")

__all__ = [
    "REPORT_ENVELOPE_FIELDS",
    "REPORT_FIELDS",
    "REPORT_PIN_PROPERTY",
    "REPORT_TYPE",
    "Report",
    "build_report",
    "clear_pin",
    "collect_stats",
    "host_facts",
    "next_report",
    "read_pinned",
    "report_body",
    "shareable_counters",
]

REPORT_PIN_PROPERTY = "shipping-report-next"
"""Server property pinning the previewed report: ``{"day", "at", "sha256", "body"}``."""


@dataclass(frozen=True, slots=True)
class Report:
    body: bytes
    """The exact bytes POSTed."""
    sha256: str
    pinned_at: datetime | None = None
    """When a preview pinned this body (None: built now, not pinned)."""

    @property
    def key(self) -> str:
        """Idempotency-Key: the body's SHA-256 (an identical report is the same report)."""
        return self.sha256

    @property
    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = orjson.loads(self.body)["stats"]
        return stats


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


def shareable_counters(counters: dict[str, int], site: SitePolicy = DEFAULT_SITE) -> dict[str, int]:
    """The counters of names the policy (and the site's ``[policy]``) lets through
    (DESIGN §3.1), sorted by name.

    Telemetry copies of withheld events are never made, but rows queued by an
    older version, before a site rule, or by another daemon on the same store
    may hold any name. Counters are by name only: the type given is one that
    passes, so the name alone decides.
    """
    return {
        name: n
        for name, n in sorted(counters.items())
        if withheld_reason(TELEMETRY_SOURCE_PREFIX, "report", name, site=site) is None
    }


async def collect_stats(
    store: Store, *, now: datetime, site: SitePolicy = DEFAULT_SITE
) -> dict[str, Any]:
    counters = shareable_counters(
        await store.counts_by_name(source_prefix=TELEMETRY_SOURCE_PREFIX, since=day_start(now)),
        site,
    )
    queue = await store.queue_stats()
    drops = await store.drop_counts()
    stats = {
        "event-counters": counters,
        "total-events": sum(counters.values()),
        "store-backend": store.backend,
        "store-total-rows": await store.total_rows(),
        "pending-telemetry-rows": queue.pending,
        "quarantined-rows": queue.quarantined,
        "dropped-rows": dict(sorted(drops.items())),
        **host_facts(),
    }
    # The body holds exactly the listed fields, in the listed order.
    return {field: stats[field] for field, _ in REPORT_FIELDS}


def report_body(*, instance_id: uuid.UUID | str, version: str, stats: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"type": REPORT_TYPE, "version": version, "instance-id": str(instance_id), "stats": stats}
    )


async def build_report(
    store: Store,
    *,
    instance_id: uuid.UUID | str,
    version: str,
    now: datetime,
    site: SitePolicy = DEFAULT_SITE,
) -> Report:
    """A fresh report from the store's state now (not pinned)."""
    stats = await collect_stats(store, now=now, site=site)
    body = report_body(instance_id=instance_id, version=version, stats=stats)
    return Report(body=body, sha256=hashlib.sha256(body).hexdigest())


def _day(now: datetime) -> str:
    return day_start(now).date().isoformat()


async def read_pinned(
    store: Store, *, instance_id: uuid.UUID | str, version: str, now: datetime
) -> Report | None:
    """The pinned report if it is still valid today for this instance and version."""
    value = await store.get_property(REPORT_PIN_PROPERTY)
    if not isinstance(value, dict) or value.get("day") != _day(now):
        return None
    try:
        body = str(value["body"]).encode()
        envelope = orjson.loads(body)
        at = parse_timestamp(value["at"])
    except (KeyError, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(envelope, dict) or (
        envelope.get("type"),
        envelope.get("version"),
        envelope.get("instance-id"),
    ) != (REPORT_TYPE, version, str(instance_id)):
        return None
    return Report(body=body, sha256=hashlib.sha256(body).hexdigest(), pinned_at=at)


async def next_report(
    store: Store,
    *,
    instance_id: uuid.UUID | str,
    version: str,
    now: datetime,
    pin: bool,
    site: SitePolicy = DEFAULT_SITE,
) -> Report:
    """The report the shipper sends next: the pinned one if valid, else built now.

    ``pin=True`` (preview, dashboard) pins a freshly built report so that the
    shipper sends what was shown; never on a read-only store. The shipper
    passes ``pin=False`` and clears the pin once the report was accepted.
    """
    pinned = await read_pinned(store, instance_id=instance_id, version=version, now=now)
    if pinned is not None:
        return pinned
    report = await build_report(store, instance_id=instance_id, version=version, now=now, site=site)
    if not pin or store.read_only:
        return report
    entry = {
        "day": _day(now),
        "at": to_rfc3339(now),
        "sha256": report.sha256,
        "body": report.body.decode(),
    }
    try:
        # A pin of another day (or an unreadable one) is stale: replace it.
        if await store.get_property(REPORT_PIN_PROPERTY) is not None:
            await store.delete_property(REPORT_PIN_PROPERTY)
        stored = await store.ensure_property(REPORT_PIN_PROPERTY, entry)
    except StoreError as exc:  # a preview still works on a store it cannot write
        log.debug("could not pin the previewed report: %s", exc)
        return report
    if stored != entry:  # another preview pinned first: that one is next
        again = await read_pinned(store, instance_id=instance_id, version=version, now=now)
        return again or report
    return Report(body=report.body, sha256=report.sha256, pinned_at=parse_timestamp(entry["at"]))


async def clear_pin(store: Store, report: Report) -> None:
    """Forget the pin once ``report`` left (only if the pin is that very body)."""
    value = await store.get_property(REPORT_PIN_PROPERTY)
    if isinstance(value, dict) and value.get("sha256") == report.sha256:
        await store.delete_property(REPORT_PIN_PROPERTY)
