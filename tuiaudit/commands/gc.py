"""``tuiaudit gc``: drop telemetry rows past the age limit or over the cap, and say how many."""

from __future__ import annotations

import argparse

from tuiaudit.commands._common import run_with_store
from tuiaudit.config import SettingHelp, Settings, add_setting_arguments
from tuiaudit.retention import collect_garbage
from tuiaudit.storage.base import Store
from tuiaudit.timeutil import utcnow

NAME = "gc"
HELP = "drop telemetry rows older than max-age-days, then the oldest above max-rows"

EPILOG = """\
examples:
  tuiaudit gc
  tuiaudit gc --max-age-days 3 --max-rows 50000

The daemon runs the same step before every telemetry run; drops are counted
by reason (age, cap) and shown by `tuiaudit status`.
"""

GC_SETTINGS = (
    SettingHelp("max_rows", "telemetry queue cap (default 100000)", "N"),
    SettingHelp("max_age_days", "telemetry rows older than this are dropped (default 7)", "DAYS"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, GC_SETTINGS)


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        result = await collect_garbage(store, settings, utcnow())
        print(
            f"tuiaudit gc: dropped {result.total} telemetry row(s): "
            f"{result.age} older than {settings.max_age_days:g} days, "
            f"{result.cap} over the {settings.max_rows}-row cap"
        )
        return 0

    return run_with_store(args, main)
