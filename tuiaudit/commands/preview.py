"""``tuiaudit preview``: the next telemetry batch and instance report exactly as sent.

It calls the shipper's own builders (``tuiaudit.batch.next_batch``,
``tuiaudit.report.next_report``), so the SHA-256s printed here are the ones
the sent ledger records when they leave (DESIGN §5, §5.2).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import datetime
from typing import Any

import orjson

from tuiaudit import __version__
from tuiaudit.approval import APPROVAL_MANUAL
from tuiaudit.batch import next_batch
from tuiaudit.codec import Keyword, decode_envelope, to_tagged_json
from tuiaudit.commands._common import run_with_store
from tuiaudit.config import SettingHelp, Settings, add_setting_arguments
from tuiaudit.effective import daemon_settings, hold_now, live_daemon
from tuiaudit.instance import get_instance_id
from tuiaudit.report import Report, next_report
from tuiaudit.safe_text import escape_controls, safe_url
from tuiaudit.storage.base import DaemonState, Store
from tuiaudit.timeutil import utcnow

NAME = "preview"
HELP = (
    "print the next telemetry batch and the instance report exactly as they would be sent, "
    "decoded, with sizes and SHA-256"
)

EPILOG = """\
examples:
  tuiaudit preview                 # decoded events, count, sizes, SHA-256 of the body
  tuiaudit preview --raw > body.json && sha256sum body.json
  tuiaudit preview --tagged        # the codec's tagged JSON ({"$uuid": …}, {"$inst": …})
  tuiaudit preview --json | jq .sha256
  tuiaudit preview --raw-report | sha256sum    # the instance report's exact body
  tuiaudit preview --json | jq .report.sha256

The SHA-256 is that of the exact POST body; after sending, the shipping log
(`tuiaudit status`, the dashboard) shows the same value for the same batch.
The instance report (aggregate counts and host facts, posted before the
batches; its fields are listed by `tuiaudit consent`) is shown the same way.
The preview pins the batch and the report it shows (the store's in-flight
journal, the pinned report): the shipper sends that batch next even if rows
that sort before it arrive meanwhile, and that report at its next run today
even if the counters moved. On a read-only store nothing is pinned.

Settings not given here (telemetry URI, batch sizes, flags) are the running
daemon's, so the batch shown is the one it would send.
"""

PREVIEW_SETTINGS = (
    SettingHelp("batch_rows", "rows per telemetry batch (default: the daemon's, else 10000)", "N"),
    SettingHelp(
        "batch_bytes",
        "max encoded bytes per batch body (default: the daemon's, else 4 MiB)",
        "BYTES",
    ),
    SettingHelp(
        "telemetry_uri",
        "only to say whether sending is configured (default: the running daemon's)",
        "URI",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, PREVIEW_SETTINGS)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--raw", action="store_true", help="print the POST body byte for byte")
    out.add_argument("--tagged", action="store_true", help="events as the codec's tagged JSON")
    out.add_argument("--json", action="store_true", help="sizes, hashes and events as JSON")
    out.add_argument(
        "--raw-report",
        action="store_true",
        help="print the instance report's POST body byte for byte",
    )


def friendly(value: Any) -> Any:
    """Decoded Clojure data as plain JSON: keywords, UUIDs and instants as strings."""
    if isinstance(value, dict):
        return {_key(k): friendly(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [friendly(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Keyword):
        return str(value)
    return value


def _key(k: Any) -> str:
    return str(k) if isinstance(k, Keyword | uuid.UUID) else k if isinstance(k, str) else repr(k)


def report_facts(report: Report) -> dict[str, Any]:
    """The ``"report"`` object of ``--json``: the exact body (as text) and its SHA-256."""
    return {
        "body": report.body.decode(),
        "sha256": report.sha256,
        "bytes": len(report.body),
        "idempotency-key": report.key,
        "pinned-at": report.pinned_at.isoformat().replace("+00:00", "Z")
        if report.pinned_at
        else None,
        "stats": report.stats,
    }


def print_report(report: Report) -> None:
    print("instance report, posted before the batches (its fields: `tuiaudit consent`):")
    sys.stdout.flush()
    sys.stdout.buffer.write(report.body + b"\n")  # the exact body: orjson escapes controls
    sys.stdout.buffer.flush()
    print(f"sha256 of the report body: {report.sha256} ({len(report.body)} bytes)")
    if report.pinned_at is not None:
        print(
            f"pinned at {report.pinned_at.isoformat(timespec='seconds')}: the shipper's next "
            "run today sends exactly this report"
        )


def sending_line(settings: Settings, daemon: DaemonState | None) -> str:
    """Where the batch goes when nothing holds it (the daemon's URI, redacted)."""
    where = safe_url(settings.telemetry_uri or "")
    if daemon is None:
        return f"sending is configured: to {where}"
    return (
        f"sending is configured: the daemon (pid {daemon.pid} on {escape_controls(daemon.host)}) "
        f"sends to {where} at its next run, or now with `tuiaudit ship`"
    )


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, given: Settings) -> int:
        # What this command was not given comes from the live daemon (DESIGN §8.1):
        # its batch sizes build the batch it would send, its URI says where.
        daemon = live_daemon(await store.daemon_states(), utcnow())
        settings = daemon_settings(given, daemon)
        instance_id = await get_instance_id(store)
        batch = await next_batch(store, settings, instance_id=instance_id, version=__version__)
        report = await next_report(
            store,
            instance_id=instance_id,
            version=__version__,
            now=utcnow(),
            pin=True,
            site=settings.policy,
        )
        if args.raw_report:
            sys.stdout.buffer.write(report.body)
            sys.stdout.flush()
            return 0
        held = (await hold_now(store, settings, daemon_alive=daemon is not None)).reason
        sending = None if held else sending_line(settings, daemon)
        if batch is None:
            if args.json:
                out = {
                    "count": 0,
                    "held": held,
                    "telemetry-uri": settings.telemetry_uri,
                    "report": report_facts(report),
                }
                print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            elif args.raw:
                print("tuiaudit preview: no pending telemetry rows: nothing would be sent")
            else:
                print("no pending telemetry rows: only the instance report would be sent")
                print_report(report)
                print(sending or f"nothing is sent yet: {held}")
            return 0
        if args.raw:
            sys.stdout.buffer.write(batch.body)
            sys.stdout.flush()
            return 0
        # Decode the body itself, not the events we built: what is shown went
        # through the wire format.
        envelope = decode_envelope(batch.body)
        events = to_tagged_json(envelope["events"]) if args.tagged else friendly(envelope["events"])
        pending = (await store.queue_stats()).pending
        facts: dict[str, Any] = {
            "count": batch.count,
            "pending": pending,
            "raw-bytes": batch.raw_bytes,
            "encoded-bytes": batch.encoded_bytes,
            "sha256": batch.sha256,
            "idempotency-key": batch.batch_key,
            "oversize": batch.oversize,
            "held": held,
            "telemetry-uri": settings.telemetry_uri,
        }
        if args.json:
            out = {**facts, "events": events, "report": report_facts(report)}
            print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            return 0
        print(orjson.dumps(events, option=orjson.OPT_INDENT_2).decode())
        print(
            f"next batch: {batch.count} of {pending} pending event(s); "
            f"{batch.raw_bytes} bytes Fressian, {batch.encoded_bytes} bytes POST body"
        )
        print(f"sha256 of the body: {batch.sha256}")
        print(f"idempotency-key:    {batch.batch_key}")
        if settings.approval == APPROVAL_MANUAL:  # DESIGN §10
            print(
                f"approval mode: it leaves once approved: `tuiaudit approve {batch.sha256}` "
                "(`tuiaudit approve --list`: every body waiting)"
            )
        if batch.oversize:
            print(
                f"this event alone is over the {settings.batch_bytes}-byte body limit: "
                "the shipper will quarantine it, not send it"
            )
        print_report(report)
        print(sending or f"nothing is sent yet: {held}")
        return 0

    return run_with_store(args, main)
