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
from tuiaudit.control import PAUSED_PROPERTY
from tuiaudit.forecast import forecast
from tuiaudit.liveness import ALIVE, daemon_liveness
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


async def collect(store: Store, settings: Settings, *, attempts: int = 5) -> dict[str, Any]:
    now = utcnow()
    shown = (await store.daemon_states())[:SHOWN_DAEMONS]
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
            "next-run-at": _ts(s.next_run_at),
            "info": s.info,
        }
        for s, live in zip(shown, liveness, strict=True)
    ]
    alive = [d for d in daemons if d["status"] == ALIVE]
    alive_states = [s for s, live in zip(shown, liveness, strict=True) if live == ALIVE]
    held = alive_states[0].info.get("held") if alive_states else "no daemon running"
    fc = await forecast(store, settings, now, held=held)
    consent = await consent_state(store)
    stats = await store.queue_stats()
    ledger = await store.ledger_recent(attempts)
    return {
        "store": display_store_url(settings.store_url),
        "daemon": "alive" if alive else (daemons[0]["status"] if daemons else "never-started"),
        "daemons": daemons,
        "flags": alive[0]["flags"] if alive else list(settings.flags),
        "paused": bool(await store.get_property(PAUSED_PROPERTY)),
        "next-run-at": next((d["next-run-at"] for d in alive if d["next-run-at"]), None),
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
        "archive": await archive_status(
            store, alive_states[0] if alive_states else None, attempts=attempts
        ),
        "held": held,
        "forecast": {
            "text": fc.text,
            "rate-per-min": round(fc.rate_per_min, 2),
            "failure-streak": fc.failure_streak,
            "cap-drop-at": _ts(fc.cap_drop_at),
            "age-drop-at": _ts(fc.age_drop_at),
        },
        "attempts": [
            {
                "started-at": _ts(e.started_at),
                "kind": e.kind,
                "status": e.status,
                "events": e.events,
                "encoded-bytes": e.encoded_bytes,
                "http-status": e.http_status,
                "error-class": e.error_class,
                "error": e.error,
                "latency-ms": e.latency_ms,
            }
            for e in ledger
        ],
    }


def render_text(data: dict[str, Any]) -> str:
    lines = [f"store: {data['store']}", f"daemon: {data['daemon']}"]
    for d in data["daemons"]:
        line = f"  {d['status']:<8} pid {d['pid']} on {d['host']} listening {d['listen']}"
        line += f", heartbeat {d['heartbeat-age-s']}s ago"
        if d["stopped-at"]:
            line += f", stopped {d['stopped-at']}"
        lines.append(line)
        for key in ("telemetry-uri", "last-error", "config-error", "retry-at"):
            if d["status"] == "alive" and d["info"].get(key):
                lines.append(f"           {key}: {d['info'][key]}")
    lines.append(f"flags: {', '.join(data['flags']) or '(none)'}")
    shipping = "paused" if data["paused"] else "active"
    if data["held"] and not data["paused"]:
        shipping = f"held ({data['held']})"
    lines.append(f"shipping: {shipping}")
    lines.append(f"next run: {data['next-run-at'] or '-'}")
    lines.append(f"consent: {data['consent']['text']}")
    q = data["queue"]
    lines.append(
        f"pending telemetry rows: {q['pending']} (oldest {q['oldest-pending-at'] or '-'}), "
        f"quarantined: {q['quarantined']}"
    )
    if data["forecast"]["text"]:
        lines.append(f"forecast: {data['forecast']['text']}")
    drops = data["drops"]
    lines.append("drops: " + (", ".join(f"{k} {v}" for k, v in drops.items()) or "none"))
    lines += render_lines(data["archive"])
    lines.append("last attempts:" if data["attempts"] else "last attempts: none")
    for a in data["attempts"]:
        what = f"  {a['started-at']} {a['kind']:<7} {a['status']:<11} {a['events']} events"
        if a["http-status"] is not None:
            what += f", HTTP {a['http-status']}"
        if a["error"]:
            what += f", {a['error-class'] or 'error'}: {a['error']}"
        lines.append(what)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        data = await collect(store, settings, attempts=args.attempts)
        if args.json:
            print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        else:
            print(render_text(data))
        return 0 if data["daemon"] == "alive" else 3

    return run_with_store(args, main, read_only=True)
