"""``tuiaudit demo``: the daemon, a local receiver and traffic on a throw-away store."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
from pathlib import Path

NAME = "demo"
HELP = "a first run: daemon, local receiver, traffic and the dashboard on a throw-away store"

EPILOG = """\
examples:
  tuiaudit demo                          # the dashboard on live demo traffic; q quits
  tuiaudit demo --headless --duration 30 # no dashboard: run 30 s, print a summary
  tuiaudit demo --fail-rate 0.5          # a receiver failing half the time

Everything runs in this process on 127.0.0.1 (random ports): the daemon, a
telemetry receiver that fails now and then (so failures and retries show),
and a generator posting realistic events (logins with emails, navigation,
file edits) to the daemon's ingest API. Telemetry goes only to that local
receiver; nothing leaves the machine. The policy is accepted for the demo,
shipping runs every --interval seconds with no jitter. Quitting stops
everything and deletes the temporary store (unless --keep).
"""


PROGRESS_S = 5.0  # seconds between progress lines of --headless


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--headless", action="store_true", help="no dashboard; print a summary")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (headless default 30; the dashboard runs until q)",
    )
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=0.2,
        metavar="P",
        help="share of batches the local receiver fails with 503 (default 0.2)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="seconds between telemetry runs (default 15)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=5.0,
        metavar="N",
        help="ingest requests per second (default 5)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible traffic")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (store, received.jsonl) and print it",
    )


async def run_headless(workdir: Path, args: argparse.Namespace) -> int:
    # Lazy on purpose (as in commands/daemon.py): the demo runs the daemon layer.
    from tuiaudit.demo.run import Demo

    duration = 30.0 if args.duration is None else args.duration
    loop = asyncio.get_running_loop()
    async with Demo(
        workdir, fail_rate=args.fail_rate, interval=args.interval, rate=args.rate, seed=args.seed
    ) as demo:
        end = loop.time() + duration
        try:
            # A line every PROGRESS_S so a first run never looks stuck.
            while (left := end - loop.time()) > 0:
                await asyncio.sleep(min(PROGRESS_S, left))
                if loop.time() < end:
                    print((await demo.summary()).progress(), flush=True)
        except asyncio.CancelledError:
            # Ctrl+C: the summary of what ran, then the interrupt goes on (exit 130).
            print((await demo.summary()).text(), flush=True)
            raise
        summary = await demo.summary()
    print(summary.text())
    return 0


async def run_dashboard(workdir: Path, args: argparse.Namespace) -> int:
    # Lazy on purpose (as in commands/daemon.py): the daemon layer and Textual.
    from tuiaudit.demo.run import Demo
    from tuiaudit.tui.app import AuditApp

    async with Demo(
        workdir, fail_rate=args.fail_rate, interval=args.interval, rate=args.rate, seed=args.seed
    ) as demo:
        assert demo.settings is not None
        app = AuditApp(demo.store_url, settings=demo.settings, refresh_interval=1.0)
        app.title = "tuiaudit demo"
        if args.duration is not None:
            asyncio.get_running_loop().call_later(args.duration, app.exit)
        await app.run_async()
        summary = await demo.summary()
    print(summary.text())
    return 0


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration <= 0:
        print("tuiaudit demo: --duration must be positive", file=sys.stderr)
        return 2
    if not 0.0 <= args.fail_rate <= 1.0:
        print("tuiaudit demo: --fail-rate must be between 0 and 1", file=sys.stderr)
        return 2
    # The daemon's log lines would draw over the dashboard and clutter the summary.
    logger = logging.getLogger("tuiaudit")
    quiet = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(quiet)
    logger.propagate = False
    workdir = Path(tempfile.mkdtemp(prefix="tuiaudit-demo-"))
    try:
        main = run_headless if args.headless else run_dashboard
        return asyncio.run(main(workdir, args))
    finally:
        logger.removeHandler(quiet)
        logger.propagate = propagate
        if args.keep:
            print(f"demo files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
