"""``tuiaudit receiver``: a local telemetry receiver that decodes what arrives."""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys

from tuiaudit.codec import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_OUTPUT_BYTES
from tuiaudit.config import ConfigError, parse_listen

NAME = "receiver"
HELP = "a local telemetry receiver: accepts envelopes, decodes them, appends JSON lines"

EPILOG = """\
examples:
  tuiaudit receiver --listen 127.0.0.1:6070 --out received.jsonl
  tuiaudit daemon --telemetry-uri http://127.0.0.1:6070/ --accept-policy 1
  tuiaudit receiver --listen 127.0.0.1:6070 --out r.jsonl --fail-rate 0.3 --seed 7
  tuiaudit receiver --listen 127.0.0.1:6070 --out r.jsonl --status 401    # a config error

Each accepted envelope becomes one JSON line: telemetry-events with the events
decoded (tagged JSON), telemetry-legacy-report as sent. Duplicates (same
Idempotency-Key, or an event id seen before) are answered 204 and not written
again; events without an id are always written. A blob that would decode past
--max-bytes or --max-elements is answered 400. The file is created 0600.
--fail-rate, --status and --delay misbehave on purpose.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "--listen",
        default="127.0.0.1:6070",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:6070; port 0 = any)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.jsonl",
        help="JSON-lines file the accepted envelopes are appended to",
    )
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="answer this share of requests (0..1) with 503",
    )
    parser.add_argument(
        "--status",
        type=int,
        default=None,
        metavar="CODE",
        help="answer every request with this HTTP status",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before answering each request",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for --fail-rate")
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_OUTPUT_BYTES,
        metavar="BYTES",
        help="refuse (400) a blob whose events hold more text than this, cache re-uses "
        f"counted (default {DEFAULT_MAX_OUTPUT_BYTES})",
    )
    parser.add_argument(
        "--max-elements",
        type=int,
        default=DEFAULT_MAX_ELEMENTS,
        metavar="N",
        help=f"refuse (400) a blob of more items than this (default {DEFAULT_MAX_ELEMENTS})",
    )


def run(args: argparse.Namespace) -> int:
    # Lazy on purpose (as in commands/daemon.py): aiohttp and the daemon layer.
    from tuiaudit.daemon.receiver import make_receiver_app, serve

    try:
        host, port = parse_listen(args.listen)
    except ConfigError as exc:
        print(f"tuiaudit receiver: {exc}", file=sys.stderr)
        return 2
    if not 0.0 <= args.fail_rate <= 1.0:
        print("tuiaudit receiver: --fail-rate must be between 0 and 1", file=sys.stderr)
        return 2

    async def main() -> int:
        app = make_receiver_app(
            args.out,
            fail_rate=args.fail_rate,
            status=args.status,
            delay=args.delay,
            rng=random.Random(args.seed),
            max_bytes=args.max_bytes,
            max_elements=args.max_elements,
        )
        try:
            runner, bound = await serve(app, host, port)
        except OSError as exc:
            print(
                f"tuiaudit receiver: cannot listen on {args.listen}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        print(
            f"tuiaudit receiver: listening on http://{host}:{bound}/ writing {args.out}", flush=True
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
        return 0

    return asyncio.run(main())
