"""``tuiaudit ship``: one telemetry run now, by the live daemon (or in this process)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from tuiaudit.commands._common import eprint, run_with_store
from tuiaudit.commands._daemon_run import daemon_who, run_on_daemon
from tuiaudit.config import DAEMON_SETTINGS, Settings, add_setting_arguments
from tuiaudit.effective import live_daemon
from tuiaudit.outcomes import describe_failure, describe_run
from tuiaudit.safe_text import escape_controls, json_safe
from tuiaudit.storage.base import DaemonState, Store
from tuiaudit.timeutil import utcnow

NAME = "ship"
HELP = "one telemetry run now (GC, instance report, batches); non-zero exit if a batch failed"

EPILOG = """\
examples:
  tuiaudit ship                     # a daemon runs on the store: it ships now, with its settings
  tuiaudit ship --json              # the run's report as JSON
  tuiaudit ship --local --telemetry-uri file:///tmp/shared.jsonl   # no daemon: run here

With a daemon running on the store, `tuiaudit ship` asks that daemon to run
now (the dashboard's "ship now" does the same), waits for the run and prints
what it did: the daemon's telemetry URI and settings apply. With no daemon
running, or with --local, the run happens in this process with this
command's settings. Nothing is sent until a telemetry URI is set and the
current policy is accepted (`tuiaudit consent --accept`). Runs without the
start-up jitter.
Exit status: 0 when the run finished (rows the receiver rejected are
quarantined), 1 when a batch failed and its rows were kept, 3 when held.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, DAEMON_SETTINGS)
    parser.add_argument("--json", action="store_true", help="print the run report as JSON")
    parser.add_argument(
        "--local",
        action="store_true",
        help="run in this process with this command's settings, even when a daemon runs",
    )


def _print(args: argparse.Namespace, report: dict[str, Any]) -> int:
    if args.json:
        print(json_safe(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()))
    else:
        # A receiver's error body is remote text: no escape codes reach the terminal.
        print(f"tuiaudit ship: {escape_controls(describe_run(report))}")
    if report.get("error"):
        return 1
    return 3 if report.get("held") else 0


async def ask_daemon(store: Store, daemon: DaemonState, args: argparse.Namespace) -> int:
    """Queue ``ship-now`` for the live daemon, wait for its run, print the outcome."""
    if "telemetry" not in daemon.flags:
        eprint(
            f"tuiaudit ship: {daemon_who(daemon)} runs without the telemetry flag: "
            "there is nothing to ship"
        )
        return 3
    command = await run_on_daemon(
        store,
        daemon,
        "ship-now",
        prog="tuiaudit ship",
        asked="asked {who} to ship now (request {request}); waiting for its run…",
        verb="ship",
        queued="stopped waiting; request {request} stays queued for the daemon",
    )
    if command is None:
        return 1
    if command.status == "failed":
        eprint(f"tuiaudit ship: {escape_controls(describe_failure('ship-now', command.result))}")
        return 1
    return _print(args, command.result)


async def ship_here(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    # Lazy on purpose (as in commands/daemon.py): aiohttp and the daemon layer.
    import aiohttp

    from tuiaudit.daemon.shipper import Shipper

    async with aiohttp.ClientSession() as session:
        shipper = Shipper(store, settings, session=session)
        report = await shipper.run_once(jitter=False)
    return _print(args, report.to_dict())


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        if not args.local:
            daemon = live_daemon(await store.daemon_states(), utcnow())
            if daemon is not None:
                return await ask_daemon(store, daemon, args)
        return await ship_here(store, settings, args)

    try:
        return run_with_store(args, main)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
