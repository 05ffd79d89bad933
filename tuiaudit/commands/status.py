"""``tuiaudit status``: is a daemon alive, what is queued, how shipping went."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

import orjson

from tuiaudit.archive_status import archive_status, render_lines
from tuiaudit.commands._common import run_with_store
from tuiaudit.config import Settings
from tuiaudit.consent import consent_state
from tuiaudit.effective import daemon_settings, hold_now, live_daemon
from tuiaudit.forecast import forecast
from tuiaudit.liveness import ALIVE, daemon_liveness
from tuiaudit.safe_text import escape_controls, json_safe, redact_url
from tuiaudit.storage.base import Store
from tuiaudit.storage.url import display_store_url
from tuiaudit.timeutil import to_rfc3339, utcnow

NAME = "status"
HELP = "daemon alive?, flags, consent, pending telemetry, last attempts, drops, next run"

EPILOG = """\
examples:
  tuiaudit status
  tuiaudit status --json | jq .queue.pending
  tuiaudit status --store postgresql://app@db/audit

A daemon is "alive" when its heartbeat is fresh (under 3 heartbeat intervals),
"stale" when it stopped beating without a clean exit (killed, host down), and
"stopped" after a clean exit. Exit status: 0 when a daemon is alive, 3 when none is.
"""

SHOWN_DAEMONS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--attempts", type=int, default=5, metavar="N", help="ledger rows shown")


def _ts(dt: datetime | None) -> str | None:
    return to_rfc3339(dt) if dt is not None else None


# Facts about work in progress: true only while the daemon runs. A stopped or
# stale daemon's last row may still say "shipping": it is not.
RUNNING_FACTS = ("shipping", "next-run-at", "retry-at")


def _info(info: dict[str, Any], live: str) -> dict[str, Any]:
    if live == ALIVE:
        return info
    return {k: v for k, v in info.items() if k not in RUNNING_FACTS}


async def collect(store: Store, settings: Settings, *, attempts: int = 5) -> dict[str, Any]:
    now = utcnow()
    states = await store.daemon_states()
    shown = states[:SHOWN_DAEMONS]
    liveness = [daemon_liveness(s, now) for s in shown]
    daemons = [
        {
            "daemon-id": s.daemon_id,
            "status": live,
            "pid": s.pid,
            "host": s.host,
            "listen": s.listen,
            "started-at": _ts(s.started_at),
            "heartbeat-at": _ts(s.heartbeat_at),
            "heartbeat-age-s": round((now - s.heartbeat_at).total_seconds(), 1),
            "stopped-at": _ts(s.stopped_at),
            "flags": s.flags,
            "paused": s.paused,
            "next-run-at": _ts(s.next_run_at) if live == ALIVE else None,
            "info": _info(s.info, live),
        }
        for s, live in zip(shown, liveness, strict=True)
    ]
    live = live_daemon(states, now)
    # The daemon's settings, where this command was not given its own (DESIGN §8.1).
    effective = daemon_settings(settings, live)
    hold = await hold_now(store, effective, daemon_alive=live is not None)
    fc = await forecast(store, effective, now, held=hold.reason)
    consent = await consent_state(store)
    stats = await store.queue_stats()
    ledger = await store.ledger_recent(attempts)
    return {
        "store": display_store_url(settings.store_url),
        "daemon": ALIVE if live else (daemons[0]["status"] if daemons else "never-started"),
        "daemons": daemons,
        "flags": list(effective.flags),
        "telemetry-uri": effective.telemetry_uri,
        "paused": hold.paused,
        "next-run-at": _ts(live.next_run_at) if live else None,
        "consent": {
            "accepted-version": consent.accepted_version,
            "current-version": consent.current_version,
            "accepted-at": _ts(consent.accepted_at),
            "ok": consent.ok,
            "text": consent.describe(),
        },
        "queue": {
            "pending": stats.pending,
            "oldest-pending-at": _ts(stats.oldest_created_at),
            "quarantined": stats.quarantined,
        },
        "drops": await store.drop_counts(),
        # The audit archive and audit deletions by reason (DESIGN §9).
        "archive": await archive_status(store, live, attempts=attempts),
        "held": hold.reason,
        "shipping": hold.text,
        "forecast": {
            "text": fc.text,
            "rate-per-min": round(fc.rate_per_min, 2),
            "failure-streak": fc.failure_streak,
            "cap-drop-at": _ts(fc.cap_drop_at),
            "age-drop-at": _ts(fc.age_drop_at),
        },
        # Newest first; "sha256" is that of the exact body posted (DESIGN §5.2),
        # so it can be checked against the receiver's copy.
        "attempts": [
            {
                "started-at": _ts(e.started_at),
                "kind": e.kind,
                "status": e.status,
                "events": e.events,
                "encoded-bytes": e.encoded_bytes,
                "sha256": e.body_sha256,
                "http-status": e.http_status,
                "error-class": e.error_class,
                "error": e.error,
                "latency-ms": e.latency_ms,
            }
            for e in ledger
        ],
    }


def _oldest(value: str | None) -> str:
    """Telemetry rows keep only their UTC day (DESIGN §3): say the day, not a false age."""
    if value is None:
        return "-"
    return f"since {value[:10]}" if value[10:19] == "T00:00:00" else value


def render_text(data: dict[str, Any]) -> str:
    lines = [f"store: {data['store']}", f"daemon: {data['daemon']}"]
    for d in data["daemons"]:
        line = f"  {d['status']:<8} pid {d['pid']} on {d['host']} listening {d['listen']}"
        line += f", heartbeat {d['heartbeat-age-s']}s ago"
        if d["stopped-at"]:
            line += f", stopped {d['stopped-at']}"
        lines.append(line)
        for key in ("last-error", "config-error", "retry-at"):
            if d["status"] == ALIVE and d["info"].get(key):
                lines.append(f"           {key}: {d['info'][key]}")
        pending = d["info"].get("search-index-pending")
        if d["status"] == ALIVE and isinstance(pending, int) and pending > 0:
            # The indexer yields to ingest (DESIGN §7): searches scan these rows meanwhile.
            lines.append(f"           search index: {pending} rows not indexed yet")
    lines.append(f"flags: {', '.join(data['flags']) or '(none)'}")
    uri = data["telemetry-uri"]
    lines.append(f"telemetry URI: {redact_url(uri) if uri else '(none)'}")
    lines.append(f"shipping: {data['shipping']}")
    lines.append(f"next run: {data['next-run-at'] or '-'}")
    lines.append(f"consent: {data['consent']['text']}")
    q = data["queue"]
    lines.append(
        f"pending telemetry rows: {q['pending']} (oldest {_oldest(q['oldest-pending-at'])}), "
        f"quarantined: {q['quarantined']}"
    )
    if data["forecast"]["text"]:
        lines.append(f"forecast: {data['forecast']['text']}")
    drops = data["drops"]
    lines.append("drops: " + (", ".join(f"{k} {v}" for k, v in drops.items()) or "none"))
    lines += render_lines(data["archive"])
    lines.append("last attempts (newest first):" if data["attempts"] else "last attempts: none")
    for a in data["attempts"]:
        what = f"  {a['started-at']} {a['kind']:<7} {a['status']:<11} {a['events']} events"
        if a["http-status"] is not None:
            what += f", HTTP {a['http-status']}"
        if a["error"]:
            what += f", {a['error-class'] or 'error'}: {a['error']}"
        lines.append(what)
        lines.append(f"    sha256 {a['sha256']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        data = await collect(store, settings, attempts=args.attempts)
        if args.json:
            print(json_safe(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()))
        else:
            # Stored and remote text (errors, names, URIs): no escape codes reach the terminal.
            print("\n".join(escape_controls(line) for line in render_text(data).splitlines()))
        return 0 if data["daemon"] == "alive" else 3

    return run_with_store(args, main, read_only=True)
