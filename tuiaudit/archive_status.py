"""The audit archive as readers show it: queue, deletions, last attempts (DESIGN §9).

One function for ``tuiaudit status`` (text and JSON) and the dashboard: the
store's counts and ``archive_log``, with the live daemon's archiver facts
(``DaemonState.info["archive"]``: URI, schedule, back-off, last run) when a
daemon archives this store.
"""

from __future__ import annotations

from typing import Any

from tuiaudit.storage.base import ArchiveAttempt, DaemonState, Store
from tuiaudit.timeutil import to_rfc3339

INFO_KEY = "archive"
"""Where in ``DaemonState.info`` the daemon's archiver publishes its state."""


def attempt_dict(a: ArchiveAttempt) -> dict[str, Any]:
    return {
        "id": a.id,
        "started-at": to_rfc3339(a.started_at),
        "status": a.status,
        "events": a.events,
        "bytes": a.bytes,
        "sha256": a.body_sha256,
        "http-status": a.http_status,
        "error-class": a.error_class,
        "error": a.error,
        "latency-ms": a.latency_ms,
    }


async def archive_status(
    store: Store, daemon: DaemonState | None, *, attempts: int = 5
) -> dict[str, Any]:
    """The archive's state (JSON-safe); ``daemon`` is the live daemon, if any."""
    stats = await store.archive_stats()
    info = daemon.info.get(INFO_KEY) if daemon is not None else None
    archiver = info if isinstance(info, dict) else {}
    return {
        "archiving": daemon is not None and "audit-log-archive" in daemon.flags,
        "uri": archiver.get("uri"),
        "format": archiver.get("format"),
        "held": archiver.get("held"),
        "keep-days": archiver.get("keep-days"),
        "retention-days": archiver.get("retention-days"),
        "failures": archiver.get("failures", 0),
        "next-run-at": archiver.get("next-run-at"),
        "retry-at": archiver.get("retry-at"),
        "last-run": archiver.get("last-run"),
        "pending": stats.pending,
        "oldest-pending-at": (
            to_rfc3339(stats.oldest_pending) if stats.oldest_pending is not None else None
        ),
        "archived": stats.archived,
        "deleted": dict(stats.deletions),
        "attempts": [attempt_dict(a) for a in await store.archive_log_recent(attempts)],
    }


def describe_queue(data: dict[str, Any]) -> str:
    """What waits for the archive, and what the archive GC has yet to delete."""
    oldest = data["oldest-pending-at"] or "-"
    return (
        f"{data['pending']} full row(s) not archived (oldest {oldest}), "
        f"{data['archived']} archived still stored"
    )


def describe_deleted(data: dict[str, Any]) -> str:
    """Full audit rows deleted so far, by reason."""
    return ", ".join(f"{reason} {n}" for reason, n in data["deleted"].items())


def render_lines(data: dict[str, Any]) -> list[str]:
    """The archive part of ``tuiaudit status``."""
    where = (data["uri"] or "(no archive uri)") if data["archiving"] else "(not archiving)"
    lines = [
        f"archive: {where}",
        f"  {describe_queue(data)}",
        f"  audit rows deleted: {describe_deleted(data)}",
    ]
    if data["held"]:
        lines.append(f"  held: {data['held']}")
    if data["retry-at"]:
        lines.append(f"  retry at {data['retry-at']} after {data['failures']} failure(s)")
    for a in data["attempts"]:
        what = f"  {a['started-at']} {a['status']:<6} {a['events']} events, {a['bytes']} bytes"
        if a["http-status"] is not None:
            what += f", HTTP {a['http-status']}"
        if a["error"]:
            what += f", {a['error-class'] or 'error'}: {a['error']}"
        lines.append(what)
    return lines
