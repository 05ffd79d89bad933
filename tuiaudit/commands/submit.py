"""``tuiaudit submit``: store one backend event given as flags (modes apply)."""

from __future__ import annotations

import argparse
from typing import Any

from tuiaudit.audit import AuditLog
from tuiaudit.commands._common import eprint, json_arg, run_with_store
from tuiaudit.config import DAEMON_SETTINGS, Settings, add_setting_arguments
from tuiaudit.events import ValidationError
from tuiaudit.storage.base import Store

NAME = "submit"
HELP = "store one backend event from flags, through the enabled modes"

EPILOG = """\
examples:
  tuiaudit submit --name login-with-password --type action \\
      --profile-id 5a4d1c2e-0000-4000-8000-000000000001 --props '{"lang": "en"}'
  tuiaudit submit --name export --type action --flags audit-log
      only the full audit row (mode A), no telemetry copy
  tuiaudit submit --name nightly-job --type trigger --tracked-at 2024-05-01T03:00:00Z

The event goes through the same validation and modes as POST /api/audit/submit:
with audit-log and telemetry on (mode B) two rows are stored.
"""

_FLAGS = tuple(s for s in DAEMON_SETTINGS if s.name == "flags")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, _FLAGS)
    parser.add_argument("--name", required=True, help="event name (1..250 characters)")
    parser.add_argument("--type", required=True, dest="event_type", help="event type, e.g. action")
    parser.add_argument(
        "--id", dest="event_id", metavar="UUID", help="event id (default: a new one)"
    )
    parser.add_argument("--profile-id", metavar="UUID", help="acting profile (default: zero UUID)")
    parser.add_argument("--props", type=json_arg("--props"), metavar="JSON", help="props object")
    parser.add_argument(
        "--context", type=json_arg("--context"), metavar="JSON", help="context object"
    )
    parser.add_argument("--tracked-at", metavar="TIME", help="RFC 3339 or epoch ms (default: now)")
    parser.add_argument("--ip-addr", metavar="IP", help="client IP (default 0.0.0.0)")


def event_from_args(args: argparse.Namespace) -> dict[str, Any]:
    event: dict[str, Any] = {"name": args.name, "type": args.event_type}
    for key, value in (
        ("id", args.event_id),
        ("profile-id", args.profile_id),
        ("props", args.props),
        ("context", args.context),
        ("ip-addr", args.ip_addr),
    ):
        if value is not None:
            event[key] = value
    if args.tracked_at is not None:
        t = args.tracked_at.strip()
        event["tracked-at"] = int(t) if t.lstrip("-").isdigit() else t
    return event


def run(args: argparse.Namespace) -> int:
    event = event_from_args(args)

    async def main(store: Store, settings: Settings) -> int:
        audit = AuditLog(store, settings.flags)
        if not audit.stores_anything:
            eprint("tuiaudit submit: neither audit-log nor telemetry is on: nothing stored")
            return 0
        try:
            rows = await audit.submit(event)
        except ValidationError as exc:
            for err in exc.errors:
                eprint(f"tuiaudit submit: {err.path or 'event'}: {err.reason}")
            return 2
        print(f"stored {rows} row{'s' if rows != 1 else ''} ({', '.join(settings.flags)})")
        return 0

    return run_with_store(args, main)
