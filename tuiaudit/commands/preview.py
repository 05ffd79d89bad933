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
from tuiaudit.batch import next_batch
from tuiaudit.codec import Keyword, decode_envelope, to_tagged_json
from tuiaudit.commands._common import run_with_store
from tuiaudit.config import SettingHelp, Settings, add_setting_arguments
from tuiaudit.consent import consent_state
from tuiaudit.control import PAUSED_PROPERTY
from tuiaudit.instance import get_instance_id
from tuiaudit.report import Report, next_report
from tuiaudit.storage.base import Store
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
"""

PREVIEW_SETTINGS = (
    SettingHelp("batch_rows", "rows per telemetry batch (default 10000)", "N"),
    SettingHelp("batch_bytes", "max encoded bytes per batch body (default 4 MiB)", "BYTES"),
    SettingHelp("telemetry_uri", "only to say whether sending is configured", "URI"),
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


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
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
        consent = await consent_state(store)
        held = (
            "no telemetry uri"
            if not settings.telemetry_uri
            else consent.describe()
            if not consent.ok
            else "shipping is paused"
            if await store.get_property(PAUSED_PROPERTY)
            else None
        )
        if batch is None:
            if args.json:
                out = {"count": 0, "held": held, "report": report_facts(report)}
                print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
            elif args.raw:
                print("tuiaudit preview: no pending telemetry rows: nothing would be sent")
            else:
                print("no pending telemetry rows: only the instance report would be sent")
                print_report(report)
                if held:
                    print(f"nothing is sent yet: {held}")
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
        if batch.oversize:
            print(
                f"this event alone is over the {settings.batch_bytes}-byte body limit: "
                "the shipper will quarantine it, not send it"
            )
        print_report(report)
        if held:
            print(f"nothing is sent yet: {held}")
        return 0

    return run_with_store(args, main)
