"""``tuiaudit daemon``: the headless service (ingest API, shipper, GC, webhooks)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys

from tuiaudit.config import DAEMON_SETTINGS, add_setting_arguments, load_settings
from tuiaudit.storage.base import StoreError

NAME = "daemon"
HELP = "run the daemon headless: ingest API, shipper, GC, webhooks (stops on SIGTERM/SIGINT)"

EPILOG = """\
examples:
  tuiaudit daemon
      serve 127.0.0.1:6061 on the default store, flags audit-log,telemetry
  tuiaudit daemon --store postgresql://app@db/audit --listen 0.0.0.0:6061 --token s3cret
  tuiaudit daemon --flags audit-log --listen 127.0.0.1:0
      audit log only (mode A); port 0 picks a free port (logged as daemon-listening)
  TUIAUDIT_TELEMETRY_URI=https://telemetry.example/api tuiaudit daemon --accept-policy 1
      ship to that receiver; policy version 1 accepted headlessly
  DO_NOT_TRACK=1 tuiaudit daemon
      telemetry off whatever else is configured

logs: one JSON object per line on stderr (events, ids and counts; never payloads).
status of a running daemon: `tuiaudit status`.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, DAEMON_SETTINGS)
    parser.add_argument(
        "--max-body",
        dest="max_body",
        default=None,
        metavar="BYTES",
        help="largest accepted request body (default 1048576) [env TUIAUDIT_MAX_BODY]",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long in-flight work may take before it is cancelled "
        "(default 10)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="stderr log level (default info)",
    )


def run(args: argparse.Namespace) -> int:
    # Lazy on purpose: the parser loads every command module, so the daemon
    # layer (aiohttp, ~0.3 s) and Textual (~0.5 s) load only in the command
    # that runs them; `tuiaudit status` starts without either.
    from tuiaudit.daemon.logs import configure
    from tuiaudit.daemon.service import Daemon, DaemonError, running_daemon

    settings = load_settings(args)
    configure(args.log_level)
    # What is loaded by now lives as long as the process: keep the cyclic
    # collector from re-scanning it during ingest and drain (many short-lived
    # containers make its young generations collect often).
    gc.freeze()

    async def main() -> None:
        stop, hurry = asyncio.Event(), asyncio.Event()
        running: list[Daemon] = []
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            # First signal: a clean stop (the batch in flight finishes, up to
            # --shutdown-timeout); a second one: stop now (DESIGN §8.1).
            if stop.is_set():
                hurry.set()
                print("tuiaudit daemon: stopping now", file=sys.stderr)
                return
            stop.set()
            shipping = bool(running and running[0].info.get("shipping"))
            what = "finishing the batch in flight" if shipping else "stopping"
            print(f"tuiaudit daemon: {what} (Ctrl+C again to stop now)", file=sys.stderr)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            async with running_daemon(
                settings,
                stop_event=stop,
                hurry_event=hurry,
                shutdown_timeout=args.shutdown_timeout,
            ) as daemon:
                running.append(daemon)
                await daemon.wait_stopped()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    try:
        asyncio.run(main())
    except (DaemonError, StoreError) as exc:
        print(f"tuiaudit daemon: {exc}", file=sys.stderr)
        return 1
    return 0
