"""``tuiaudit archive``: one audit archive run now, by the live daemon (or in this process)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

import orjson

from tuiaudit.commands._common import eprint, run_with_store
from tuiaudit.commands._daemon_run import run_on_daemon
from tuiaudit.config import ARCHIVE_SETTINGS, SettingHelp, Settings, add_setting_arguments
from tuiaudit.effective import live_daemon
from tuiaudit.safe_text import escape_controls, json_safe
from tuiaudit.storage.base import DaemonState, Store
from tuiaudit.timeutil import utcnow

NAME = "archive"
HELP = "one audit archive run now (archive, archive GC, retention); non-zero exit on a failure"

EPILOG = """\
examples:
  tuiaudit archive                  # a daemon archives this store: it runs now, its settings
  tuiaudit archive --local --archive-uri file:///srv/audit-archive.jsonl
  tuiaudit archive --local --archive-uri https://archive.example.org/audit --archive-format transit

Full audit rows not archived yet go to the archive in chunks (oldest first,
{"events": [...]}), each marked archived only when the archive answered 2xx;
then archived rows older than --archive-keep-days (default 0) are deleted,
and with --audit-retention-days N every full row older than N days.
Telemetry copies are never archived. With a daemon running on the store with
the audit-log-archive flag, `tuiaudit archive` asks that daemon to run now and
waits for it (its archive URI and settings apply); otherwise, or with
--local, the run happens in this process with this command's settings (the
audit-log-archive flag is implied). Several processes never send a row twice.
Exit status: 0 when the run finished, 1 when a chunk failed (its rows are
kept for the next run), 3 when held (no archive URI, or another archiver runs).
"""

FLAG = "audit-log-archive"

TIME_LIMITS = (
    SettingHelp("connect_timeout", "seconds to connect to the archive (default 10)", "SECONDS"),
    SettingHelp("request_timeout", "seconds for a whole archive POST (default 60)", "SECONDS"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, (*ARCHIVE_SETTINGS, *TIME_LIMITS))
    parser.add_argument("--json", action="store_true", help="print the run report as JSON")
    parser.add_argument(
        "--local",
        action="store_true",
        help="run in this process with this command's settings, even when a daemon archives",
    )


def describe(report: dict[str, Any]) -> str:
    parts = []
    if report.get("held"):
        parts.append(f"held: {report['held']}")
    parts.append(
        f"{report.get('rows-archived', 0)} row(s) archived in {report.get('chunks', 0)} "
        f"chunk(s), {report.get('bytes-sent', 0)} bytes"
    )
    if report.get("error"):
        parts.append(f"error ({report.get('error-class')}): {report['error']}")
    if report.get("retry-at"):
        parts.append(f"retry at {report['retry-at']}")
    parts.append(
        f"deleted {report.get('deleted-archived', 0)} archived row(s), "
        f"{report.get('deleted-retention', 0)} past retention"
    )
    return "; ".join(parts)


def _print(args: argparse.Namespace, report: dict[str, Any]) -> int:
    if args.json:
        print(json_safe(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()))
    else:
        # The archive's error text is remote data: never raw to a terminal.
        print(f"tuiaudit archive: {escape_controls(describe(report))}")
    if report.get("error"):
        return 1
    return 3 if report.get("held") else 0


async def ask_daemon(store: Store, daemon: DaemonState, args: argparse.Namespace) -> int:
    """Queue ``archive-now`` for the live daemon, wait for its run, print the outcome."""
    command = await run_on_daemon(
        store,
        daemon,
        "archive-now",
        prog="tuiaudit archive",
        asked="asked {who} to archive now (request {request}); waiting…",
        verb="archive",
        queued="stopped waiting; request {request} stays queued",
    )
    if command is None:
        return 1
    if command.status == "failed":
        reason = command.result.get("error") or "the daemon gave no reason"
        eprint(f"tuiaudit archive: archive-now failed: {escape_controls(str(reason))}")
        return 1
    return _print(args, command.result)


async def archive_here(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    # Lazy on purpose (as in commands/ship.py): aiohttp and the daemon layer.
    import aiohttp

    from tuiaudit.daemon.archiver import Archiver

    if FLAG not in settings.flags:
        settings = replace(settings, flags=(*settings.flags, FLAG))
    async with aiohttp.ClientSession() as session:
        report = await Archiver(store, settings, session=session).run_once()
    return _print(args, report.to_dict())


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        if not args.local:
            daemon = live_daemon(await store.daemon_states(), utcnow())
            if daemon is not None and FLAG in daemon.flags:
                return await ask_daemon(store, daemon, args)
        return await archive_here(store, settings, args)

    try:
        return run_with_store(args, main)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
