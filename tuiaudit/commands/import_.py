"""``tuiaudit import``: backend events from JSON lines (or CSV) into the store, in batches."""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, Any

import orjson

from tuiaudit.audit import AuditLog
from tuiaudit.commands._common import eprint, run_with_store
from tuiaudit.config import DAEMON_SETTINGS, Settings, add_setting_arguments
from tuiaudit.events import ValidationError, prepare_backend_event
from tuiaudit.safe_text import csv_uncell
from tuiaudit.storage.base import (
    TELEMETRY_SOURCE_PREFIX,
    AuditRow,
    Store,
    StoreConflict,
    StoreError,
    StoreUnavailable,
)
from tuiaudit.timeutil import parse_timestamp, utcnow
from tuiaudit.validation import FieldError

NAME = "import"
HELP = "store backend events from a JSON-lines (or CSV) file or stdin"

EPILOG = """\
examples:
  tuiaudit import events.jsonl
  zcat old-events.jsonl.gz | tuiaudit import -
  tuiaudit import export.csv --format csv --flags audit-log

  tuiaudit export > audit.jsonl && tuiaudit import audit.jsonl --store other.db
  tuiaudit import audit.jsonl --as-new     # feed exported events through the modes again

A line of a `tuiaudit export` file (it has id, source backend or frontend and
created-at) is a full audit row: it is restored as it was (id, source,
timestamps, IP), with no new telemetry copy and no webhook, so export then
import is a faithful copy. A row already in the store is skipped and counted,
so importing the same file twice changes nothing. Telemetry copies in the
file are skipped (the store makes its own). Any other line is one backend
event: {"name", "type", "profile-id"?, "props"?, "context"?, "id"?, "ip-addr"?,
"tracked-at"?}, stored through the enabled modes like `tuiaudit submit`;
--as-new treats every line so. Lines are stored ~1000 per transaction; a bad
line is reported (line number and reason) and skipped, never stopping the
good ones. Exit status 1 when any line was rejected.
"""

_FLAGS = tuple(s for s in DAEMON_SETTINGS if s.name == "flags")
BATCH = 1000
MAX_LISTED = 1000  # rejected lines listed individually; the rest are counted
_SERVER_KEYS = ("source", "created-at", "created_at", "archived-at", "archived_at")
FULL_SOURCES = ("backend", "frontend")
_INDEX = re.compile(r"^events\[(\d+)\]\.?")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, _FLAGS)
    parser.add_argument("file", metavar="FILE", help="JSON-lines or CSV file, or - for stdin")
    parser.add_argument(
        "--format",
        choices=("auto", "jsonl", "csv"),
        default="auto",
        help="input format (default: csv for *.csv, else jsonl)",
    )
    parser.add_argument(
        "--batch", type=int, default=BATCH, metavar="N", help="events per transaction"
    )
    parser.add_argument(
        "--as-new",
        action="store_true",
        help="every line is a new backend event (new created-at, telemetry copy, webhooks)",
    )


@dataclass
class ImportReport:
    lines: int = 0
    accepted: int = 0
    rows: int = 0
    rejected: int = 0
    duplicates: int = 0  # rows already in the store: skipped, not errors
    telemetry_skipped: int = 0  # telemetry copies in the file: the store makes its own
    reasons: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < MAX_LISTED:
            self.reasons.append((line, reason))


Record = tuple[int, dict[str, Any] | None, str | None]  # (line, event, reason if bad)


def _clean(event: dict[str, Any]) -> dict[str, Any]:
    for key in _SERVER_KEYS:
        event.pop(key, None)
    return event


def read_jsonl(stream: IO[bytes]) -> Iterator[Record]:
    for number, raw in enumerate(stream, 1):
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield number, None, f"not valid JSON: {exc.msg} at column {exc.colno}"
            continue
        if not isinstance(value, dict):
            yield number, None, "not a JSON object"
            continue
        yield number, value, None


def read_csv(stream: IO[bytes]) -> Iterator[Record]:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    reader = csv.DictReader(text)
    try:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                # A CSV reader cannot resynchronise inside a broken file.
                yield reader.line_num + 1, None, "invalid UTF-8: the rest of the file was not read"
                return
            except csv.Error as exc:
                yield reader.line_num, None, f"not valid CSV: {exc}"
                return
            yield reader.line_num, *_csv_event(row)
    finally:
        text.detach()  # the caller owns (and closes) the byte stream


def _csv_event(row: dict[str | None, str | None]) -> tuple[dict[str, Any] | None, str | None]:
    event: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or value == "":
            continue  # extra cells / empty cells: absent fields
        value = csv_uncell(value)  # export's guard against spreadsheet formulas
        if key in ("props", "context"):
            try:
                event[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                return None, f"{key}: not valid JSON"
        else:
            event[key] = value
    return event, None


def _strip_index(path: str) -> str:
    return _INDEX.sub("", path) or "event"


async def import_records(
    store: Store,
    flags: tuple[str, ...],
    records: Iterator[Record],
    *,
    batch: int = BATCH,
    progress: IO[str] | None = None,
    as_new: bool = False,
) -> ImportReport:
    audit = AuditLog(store, flags)
    report = ImportReport()
    pending: list[tuple[int, dict[str, Any]]] = []
    full: list[tuple[int, dict[str, Any]]] = []

    async def flush() -> None:
        await _restore(store, flags, full, report)
        full.clear()
        await _submit(audit, pending, report)
        pending.clear()
        if progress is not None:
            progress.write(
                f"\r{report.lines} lines: {report.accepted} accepted, {report.rejected} rejected"
            )
            progress.flush()

    for number, event, reason in records:
        report.lines += 1
        if event is None:
            report.reject(number, reason or "unreadable")
            continue
        if not as_new and _is_telemetry_copy(event):
            report.telemetry_skipped += 1
            continue
        if not as_new and _is_full_row(event):
            full.append((number, event))
        else:
            pending.append((number, _clean(event)))
        if len(pending) + len(full) >= batch:
            await flush()
    if pending or full:
        await flush()
    if progress is not None:
        progress.write("\n")
    return report


async def _submit(
    audit: AuditLog, batch: list[tuple[int, dict[str, Any]]], report: ImportReport
) -> None:
    """Store a batch; bad events are reported by line and the rest stored in one go."""
    todo = list(batch)
    while todo:
        try:
            report.rows += await audit.submit_many([e for _, e in todo])
            report.accepted += len(todo)
            return
        except StoreUnavailable:
            raise
        except StoreError:
            # One row the store refuses (e.g. an id already stored) fails the whole
            # transaction: find it line by line and keep the good ones.
            await _one_by_one(audit, todo, report)
            return
        except ValidationError as exc:
            bad: dict[int, list[str]] = {}
            for err in exc.errors:
                m = _INDEX.match(err.path)
                if m is None:
                    bad = {}
                    break
                bad.setdefault(int(m.group(1)), []).append(
                    f"{_strip_index(err.path)}: {err.reason}"
                )
            if not bad:  # an error without an index: find the bad ones one by one
                await _one_by_one(audit, todo, report)
                return
            for i in sorted(bad):
                report.reject(todo[i][0], "; ".join(bad[i]))
            todo = [item for i, item in enumerate(todo) if i not in bad]


async def _one_by_one(
    audit: AuditLog, batch: list[tuple[int, dict[str, Any]]], report: ImportReport
) -> None:
    for number, event in batch:
        try:
            report.rows += await audit.submit_many([event])
            report.accepted += 1
        except ValidationError as exc:
            report.reject(
                number, "; ".join(f"{_strip_index(e.path)}: {e.reason}" for e in exc.errors)
            )
        except StoreUnavailable:
            raise
        except StoreConflict:
            report.duplicates += 1  # its id is stored already: importing twice is harmless
        except StoreError as exc:
            report.reject(number, str(exc))


# ------------------------------------------------------- full audit rows (export files)


def _is_telemetry_copy(event: dict[str, Any]) -> bool:
    source = event.get("source")
    return isinstance(source, str) and source.startswith(TELEMETRY_SOURCE_PREFIX)


def _is_full_row(event: dict[str, Any]) -> bool:
    """A line of `tuiaudit export`: a stored row with its id, origin and arrival time."""
    created = event.get("created-at", event.get("created_at"))
    return event.get("source") in FULL_SOURCES and bool(event.get("id")) and bool(created)


def full_row(event: dict[str, Any], now: datetime) -> AuditRow:
    """The exported row as it was; the event rules check every field (ValidationError)."""
    prepared = prepare_backend_event(_clean(dict(event)), now=now)
    created = event.get("created-at", event.get("created_at"))
    archived = event.get("archived-at", event.get("archived_at"))
    try:
        created_at = parse_timestamp(created)
    except ValueError as exc:
        raise ValidationError([FieldError("created-at", str(exc))]) from None
    try:
        archived_at = parse_timestamp(archived) if archived not in (None, "") else None
    except ValueError as exc:
        raise ValidationError([FieldError("archived-at", str(exc))]) from None
    return replace(
        prepared.row, source=str(event["source"]), created_at=created_at, archived_at=archived_at
    )


async def _restore(
    store: Store,
    flags: tuple[str, ...],
    batch: list[tuple[int, dict[str, Any]]],
    report: ImportReport,
) -> None:
    """Insert exported rows as they were; rows already stored are counted as duplicates."""
    if not batch:
        return
    if "audit-log" not in flags:
        for number, _ in batch:
            report.reject(number, "a full audit row, but the audit-log flag is off")
        return
    now = utcnow()
    rows: list[tuple[int, AuditRow]] = []
    for number, event in batch:
        try:
            rows.append((number, full_row(event, now)))
        except ValidationError as exc:
            report.reject(number, "; ".join(f"{e.path}: {e.reason}" for e in exc.errors))
    try:
        await store.insert_rows([r for _, r in rows])
    except StoreUnavailable:
        raise
    except StoreError:
        # Some are stored already (a second import) or repeated in the file:
        # insert the others one by one, count the duplicates.
        for number, row in rows:
            if await store.get_row(row.id) is not None:
                report.duplicates += 1
                continue
            try:
                await store.insert_rows([row])
            except StoreUnavailable:
                raise
            except StoreConflict:
                report.duplicates += 1
                continue
            except StoreError as exc:
                report.reject(number, str(exc))
                continue
            report.accepted += 1
            report.rows += 1
        return
    report.accepted += len(rows)
    report.rows += len(rows)


def _open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


def print_report(report: ImportReport, source: str, out: IO[str] | None = None) -> None:
    out = out or sys.stdout
    skipped = ""
    if report.duplicates:
        skipped += f", {report.duplicates} already in the store (skipped)"
    if report.telemetry_skipped:
        skipped += f", {report.telemetry_skipped} telemetry copies skipped"
    out.write(
        f"{source}: {report.lines} lines, {report.accepted} events accepted "
        f"({report.rows} rows stored){skipped}, {report.rejected} rejected\n"
    )
    for line, reason in report.reasons:
        eprint(f"  line {line}: {reason}")
    if report.rejected > len(report.reasons):
        eprint(f"  … and {report.rejected - len(report.reasons)} more rejected lines")


def run(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt == "auto":
        fmt = "csv" if args.file.lower().endswith(".csv") else "jsonl"
    try:
        stream = _open_input(args.file)
    except OSError as exc:
        eprint(f"tuiaudit import: cannot read {args.file}: {exc.strerror or exc}")
        return 2
    if args.batch < 1:
        eprint("tuiaudit import: --batch must be at least 1")
        return 2
    records = read_csv(stream) if fmt == "csv" else read_jsonl(stream)
    progress = sys.stderr if sys.stderr.isatty() else None

    async def main(store: Store, settings: Settings) -> int:
        report = await import_records(
            store, settings.flags, records, batch=args.batch, progress=progress, as_new=args.as_new
        )
        print_report(report, "stdin" if args.file == "-" else args.file)
        return 1 if report.rejected else 0

    try:
        return run_with_store(args, main, create=True)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
