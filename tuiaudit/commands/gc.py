"""``tuiaudit gc``: drop telemetry rows past the age limit or over the cap, and say how many.

``--archived`` runs the audit archive GC instead (archived rows older than
``--archive-keep-days``), and ``--audit-retention-days`` deletes full rows past
that age either way (DESIGN §9).
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from tuiaudit.commands._common import run_with_store
from tuiaudit.config import SettingHelp, Settings, add_setting_arguments
from tuiaudit.retention import collect_garbage
from tuiaudit.storage.base import DELETE_ARCHIVED, DELETE_RETENTION, Store
from tuiaudit.timeutil import utcnow

NAME = "gc"
HELP = "drop telemetry rows older than max-age-days, then the oldest above max-rows"

EPILOG = """\
examples:
  tuiaudit gc
  tuiaudit gc --max-age-days 3 --max-rows 50000
  tuiaudit gc --archived --archive-keep-days 30     # archived audit rows older than 30 days
  tuiaudit gc --archived --audit-retention-days 365 # and every full row older than a year

The daemon runs the same step before every telemetry run; drops are counted
by reason (age, cap) and shown by `tuiaudit status`. With --archived, the
audit archive GC runs instead (the daemon runs it after each archive run);
--audit-retention-days deletes full audit rows older than N days whether
archived or not. Audit deletions are counted by reason (archived, retention).
"""

GC_SETTINGS = (
    SettingHelp("max_rows", "telemetry queue cap (default 100000)", "N"),
    SettingHelp("max_age_days", "telemetry rows older than this are dropped (default 7)", "DAYS"),
    SettingHelp(
        "archive_keep_days", "with --archived: keep archived rows this long (default 0)", "DAYS"
    ),
    SettingHelp(
        "audit_retention_days",
        "delete full audit rows older than this, archived or not (default off)",
        "DAYS",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, GC_SETTINGS)
    parser.add_argument(
        "--archived",
        action="store_true",
        help="delete archived audit rows older than --archive-keep-days (not the telemetry GC)",
    )


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        now = utcnow()
        if args.archived:
            keep = settings.archive_keep_days
            n = await store.gc_archived(older_than=now - timedelta(days=keep))
            print(f"tuiaudit gc: deleted {n} archived audit row(s) older than {keep:g} days")
        else:
            result = await collect_garbage(store, settings, now)
            print(
                f"tuiaudit gc: dropped {result.total} telemetry row(s): "
                f"{result.age} older than {settings.max_age_days:g} days, "
                f"{result.cap} over the {settings.max_rows}-row cap"
            )
        days = settings.audit_retention_days
        if days is not None:
            n = await store.delete_expired(older_than=now - timedelta(days=days))
            print(f"tuiaudit gc: deleted {n} audit row(s) older than {days:g} days (retention)")
        if args.archived or days is not None:
            totals = (await store.archive_stats()).deletions
            print(
                f"tuiaudit gc: audit rows deleted so far: {totals[DELETE_ARCHIVED]} archived, "
                f"{totals[DELETE_RETENTION]} retention"
            )
        return 0

    return run_with_store(args, main)
