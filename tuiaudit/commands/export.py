"""``tuiaudit export``: audit rows to JSON lines or CSV, streamed with the dashboard's filters."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import uuid
from typing import IO, Any

import orjson

from tuiaudit.commands._common import eprint, run_with_store, when_arg
from tuiaudit.config import Settings
from tuiaudit.safe_text import csv_cell, json_safe
from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX, AuditFilter, AuditRow, Store
from tuiaudit.timeutil import to_rfc3339

NAME = "export"
HELP = "write audit rows as JSON lines or CSV, with the dashboard's filters"

EPILOG = """\
examples:
  tuiaudit export > audit.jsonl
  tuiaudit export --format csv -o audit.csv --since 7d
  tuiaudit export --source 'telemetry:*' --since 2024-05-01T00:00:00Z --until 1h
  tuiaudit export --name login-with-password --profile 5a4d1c2e-0000-4000-8000-000000000001
  tuiaudit export --text example.com --type identify

Telemetry copies are left out unless --telemetry (or --source telemetry:*):
an export is the audit log, and `tuiaudit import` restores it row for row.
Rows come oldest first and are streamed (bounded memory, any size). Keys are the
wire's kebab-case names: id, name, type, source, profile-id, ip-addr, props,
context, tracked-at, created-at, archived-at. `tuiaudit import` reads both formats.
CSV cells starting with = + - @ (or tab, CR, ') get a leading ' so a
spreadsheet shows them as text (import removes it); -o files are created 0600.
--since/--until take RFC 3339, epoch milliseconds, or a duration ago (30m, 1h, 7d).
"""

COLUMNS = (
    "id",
    "name",
    "type",
    "source",
    "profile-id",
    "ip-addr",
    "props",
    "context",
    "tracked-at",
    "created-at",
    "archived-at",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="default jsonl")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--source", help="exact source; a trailing * matches a prefix (telemetry:*)"
    )
    parser.add_argument("--type", dest="event_type", help="event type")
    parser.add_argument("--name", help="event name")
    parser.add_argument("--profile", metavar="UUID", help="profile id")
    parser.add_argument("--since", type=when_arg, metavar="TIME", help="created at or after")
    parser.add_argument("--until", type=when_arg, metavar="TIME", help="created before")
    parser.add_argument("--text", help="case-insensitive text anywhere in the row")
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="also the telemetry copies (left out by default: `tuiaudit import` skips them)",
    )


def filter_from_args(args: argparse.Namespace) -> AuditFilter:
    profile = None
    if args.profile:
        try:
            profile = uuid.UUID(args.profile)
        except ValueError:
            raise SystemExit(f"tuiaudit export: --profile {args.profile!r} is not a UUID") from None
    return AuditFilter(
        source=args.source,
        type=args.event_type,
        name=args.name,
        profile_id=profile,
        text=args.text,
        since=args.since,
        until=args.until,
    )


def row_record(row: AuditRow) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": str(row.id),
        "name": row.name,
        "type": row.type,
        "source": row.source,
        "profile-id": str(row.profile_id),
        "ip-addr": row.ip_addr,
        "props": row.props,
        "context": row.context,
        "tracked-at": to_rfc3339(row.tracked_at),
        "created-at": to_rfc3339(row.created_at),
    }
    if row.archived_at is not None:
        record["archived-at"] = to_rfc3339(row.archived_at)
    return record


async def write_rows(
    store: Store, flt: AuditFilter, fmt: str, out: IO[str], *, telemetry: bool = True
) -> int:
    count = 0
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="raise")
        writer.writeheader()
    async for row in store.iter_rows(flt):
        if not telemetry and row.source.startswith(TELEMETRY_SOURCE_PREFIX):
            continue  # the audit log itself; the store makes telemetry copies (DESIGN §2)
        record = row_record(row)
        if writer is not None:
            record["props"] = orjson.dumps(record["props"]).decode()
            record["context"] = orjson.dumps(record["context"]).decode()
            # No cell a spreadsheet would run as a formula (=, +, -, @ …).
            writer.writerow({k: csv_cell(v) for k, v in record.items()})
        else:
            out.write(json_safe(orjson.dumps(record).decode()))
            out.write("\n")
        count += 1
    return count


def run(args: argparse.Namespace) -> int:
    flt = filter_from_args(args)
    # Telemetry copies only when asked, or when the filter names their source.
    telemetry = args.telemetry or bool(args.source and args.source.startswith("telemetry"))

    async def main(store: Store, settings: Settings) -> int:
        if args.output:
            # Opened only once the store opened (no empty file on a store error);
            # nothing else runs on this CLI's loop, so a blocking open is fine.
            # Created 0600 like the store: the rows are the audit log.
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8", newline="") as fh:  # noqa: ASYNC230
                count = await write_rows(store, flt, args.format, fh, telemetry=telemetry)
        else:
            count = await write_rows(store, flt, args.format, sys.stdout, telemetry=telemetry)
            sys.stdout.flush()
        if args.output or not sys.stdout.isatty():
            eprint(f"exported {count} row{'s' if count != 1 else ''}")
        return 0

    return run_with_store(args, main, read_only=True)
