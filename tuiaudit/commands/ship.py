"""``tuiaudit ship``: one telemetry run now (GC, report, batches), then exit."""

from __future__ import annotations

import argparse

import orjson

from tuiaudit.commands._common import run_with_store
from tuiaudit.config import DAEMON_SETTINGS, Settings, add_setting_arguments
from tuiaudit.storage.base import Store

NAME = "ship"
HELP = "one telemetry run now (GC, instance report, batches); non-zero exit if a batch failed"

EPILOG = """\
examples:
  tuiaudit ship --telemetry-uri https://telemetry.example.org/
  tuiaudit ship --telemetry-uri file:///tmp/shared.jsonl     # audit what would be shared
  TUIAUDIT_TELEMETRY_URI=http://127.0.0.1:6070/ tuiaudit ship --json

Nothing is sent until a telemetry URI is set and the current policy is accepted
(`tuiaudit consent --accept`). The run takes the store's shipper lease, so it
never races a running daemon: if the daemon holds it, ask the daemon instead
(the dashboard's "ship now"). Runs without the start-up jitter.
Exit status: 0 when the run finished (rows the receiver rejected are
quarantined), 1 when a batch failed and its rows were kept, 3 when held.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, DAEMON_SETTINGS)
    parser.add_argument("--json", action="store_true", help="print the run report as JSON")


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        # Lazy on purpose (as in commands/daemon.py): aiohttp and the daemon layer.
        import aiohttp

        from tuiaudit.daemon.shipper import Shipper

        async with aiohttp.ClientSession() as session:
            shipper = Shipper(store, settings, session=session)
            report = await shipper.run_once(jitter=False)
        if args.json:
            print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
        else:
            print(f"tuiaudit ship: {report.summary()}")
        if report.error:
            return 1
        return 3 if report.held else 0

    return run_with_store(args, main)
