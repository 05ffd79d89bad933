"""Ingest throughput: AuditLog.submit_many on a real store next to the raw write limit.

For batches of 1, 100 and 1,000 events in modes A, B and C, on SQLite and
PostgreSQL, prints events/s through ``AuditLog.submit_many`` (validation,
preparation, anonymisation, the store's insert) and the raw limit measured in
the same run on an identical table with the same rows:

* SQLite: stdlib ``sqlite3`` ``executemany`` in one ``BEGIN IMMEDIATE``
  transaction per batch (WAL, ``synchronous=NORMAL``, as the store uses);
* PostgreSQL: asyncpg ``copy_records_to_table`` in one transaction per batch.

The raw side inserts the very rows ours stores: before each raw call (and
outside its timing) the same events are prepared and anonymised with the
clock of that moment, so ids, ``created_at`` values and JSON/timestamp text
have the same shape and the same index positions as ours (fresh time-ordered
ids, this moment's ``created_at``, the day for telemetry rows). Only the
insert itself is timed, so the ratio is what the domain code and the store
layer cost on top of the database. Target: batched (1,000) mode B on SQLite
at least 0.5x raw.

    python bench/ingest.py            # ~4 s per case
    python bench/ingest.py --quick    # ~1 s per case
    python bench/ingest.py --backends sqlite --modes B --sizes 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from tuiaudit.audit import AuditLog
from tuiaudit.events import prepare_backend_events
from tuiaudit.policy import anonymise_many
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditRow
from tuiaudit.storage.columns import AUDIT_COLUMNS, row_params, rows_params

MODES = {"A": ["audit-log"], "B": ["audit-log", "telemetry"], "C": ["telemetry"]}
SIZES = (1, 100, 1000)
PG_DSN = os.environ.get("TUIAUDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
# The store's own column order, so the raw side inserts exactly what the store does.
COLUMNS = tuple(c.strip() for c in AUDIT_COLUMNS.split(","))


def make_events(n: int) -> list[dict[str, Any]]:
    """Realistic backend events: a few UUID/number/string props, a small context.

    Each event has its own tracked-at (one millisecond apart) and one of 20
    profiles, so per-batch memos only win where a real batch would let them.
    """
    profiles = [str(uuid.uuid4()) for _ in range(20)]
    start = datetime(2024, 5, 1, 12, tzinfo=UTC)
    return [
        {
            "name": "update-file",
            "type": "action",
            "profile-id": profiles[i % len(profiles)],
            "ip-addr": "203.0.113.9",
            "tracked-at": (start + timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "props": {
                "file-id": str(uuid.uuid4()),
                "project-id": str(uuid.uuid4()),
                "revn": i,
                "title": "Quarterly plan",
                "is-shared": True,
                "password": "never stored",
            },
            "context": {"initiator": "api", "client-version": "2.1.0", "session": "abc"},
        }
        for i in range(n)
    ]


async def race(
    ours: Callable[[], Awaitable[None]],
    raw: Callable[[], Awaitable[float]],
    size: int,
    budget: float,
) -> tuple[float, float]:
    """events/s of ``ours`` and of ``raw``, called alternately for about ``budget`` seconds.

    Alternating makes both sides share the same machine load (the box is
    shared) and the same table growth. ``raw`` returns the seconds its insert
    took (preparing its parameters is not counted); ``ours`` is timed whole.
    """
    await ours()  # warm-up: caches, prepared statements
    await raw()
    spent_ours = spent_raw = 0.0
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget or calls < 3:
        t0 = time.perf_counter()
        await ours()
        spent_ours += time.perf_counter() - t0
        spent_raw += await raw()
        calls += 1
    return calls * size / spent_ours, calls * size / spent_raw


def rows_of(mode: str, events: list[dict[str, Any]]) -> list[AuditRow]:
    """The rows ``submit_many`` stores for ``events`` now: fresh ids, this moment's clock."""
    audit = AuditLog(None, MODES[mode])  # type: ignore[arg-type]  # rows_for needs no store
    prepared = prepare_backend_events(events, now=datetime.now(UTC))
    return [r for p in prepared for r in audit.rows_for(p.row)]


# ------------------------------------------------------------------ SQLite

RAW_INSERT = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 11)})"


def sqlite_raw_table(store_path: Path, raw_path: Path) -> sqlite3.Connection:
    """The raw limit's table: the store's DDL (copied from its file), the same pragmas."""
    src = sqlite3.connect(store_path)
    # audit_log with its indexes and the free-text index's delete/update triggers,
    # which need the index and its watermark (DESIGN §7: the index is filled
    # behind the writer, so an insert writes no index entry on either side).
    ddl = [
        sql
        for (sql,) in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN"
            " ('audit_log', 'audit_search', 'audit_search_state') AND sql IS NOT NULL"
        )
    ]
    src.close()
    conn = sqlite3.connect(raw_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for sql in ddl:
        conn.execute(sql)
        if sql.startswith("CREATE TABLE audit_search_state"):
            conn.execute("INSERT INTO audit_search_state (upto) VALUES (0)")
    return conn


def sqlite_raw_insert(conn: sqlite3.Connection, params: list[tuple[Any, ...]]) -> float:
    """Insert ``params`` in one transaction; the seconds it took."""
    t0 = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(RAW_INSERT, params)
    conn.execute("COMMIT")
    return time.perf_counter() - t0


async def sqlite_case(mode: str, size: int, budget: float, tmp: Path) -> tuple[float, float]:
    events = make_events(size)
    path = tmp / f"store-{mode}-{size}.db"
    raw_path = tmp / f"raw-{mode}-{size}.db"
    async with open_store(f"sqlite:///{path}") as store:
        audit = AuditLog(store, MODES[mode])

        async def ours() -> None:
            await audit.submit_many(events)

        conn = sqlite_raw_table(path, raw_path)

        async def raw() -> float:
            # The rows ours would store at this moment, as the store's
            # reference conversion writes them; made before the clock starts.
            return sqlite_raw_insert(conn, [row_params(r) for r in rows_of(mode, events)])

        try:
            return await race(ours, raw, size, budget)
        finally:
            conn.close()


# -------------------------------------------------------------- PostgreSQL


def pg_records(rows: list[AuditRow]) -> list[tuple[Any, ...]]:
    """``rows`` as COPY records in the store's column order (JSON as text)."""
    return [
        (
            r.id, r.name, r.type, r.source, r.profile_id, r.ip_addr,
            orjson.dumps(r.props).decode(), orjson.dumps(r.context).decode(),
            r.tracked_at, r.created_at, r.archived_at,
        )
        for r in rows
    ]  # fmt: skip


async def pg_raw_insert(conn: Any, schema: str, records: list[tuple[Any, ...]]) -> float:
    """COPY ``records`` into ``schema``.audit_log in one transaction; the seconds it took."""
    t0 = time.perf_counter()
    async with conn.transaction():
        await conn.copy_records_to_table(
            "audit_log", records=records, columns=COLUMNS, schema_name=schema
        )
    return time.perf_counter() - t0


async def pg_case(mode: str, size: int, budget: float) -> tuple[float, float]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    raw_schema = schema + "_raw"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}; CREATE SCHEMA {raw_schema}")
        events = make_events(size)
        async with open_store(f"{PG_DSN}?schema={schema}") as store:
            audit = AuditLog(store, MODES[mode])

            async def ours() -> None:
                await audit.submit_many(events)

            await admin.execute(
                f"CREATE TABLE {raw_schema}.audit_log (LIKE {schema}.audit_log INCLUDING ALL)"
            )

            async def raw() -> float:
                # The rows ours would store at this moment; made before the clock starts.
                return await pg_raw_insert(admin, raw_schema, pg_records(rows_of(mode, events)))

            return await race(ours, raw, size, budget)
    finally:
        await admin.execute(
            f"DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {raw_schema} CASCADE"
        )
        await admin.close()


# --------------------------------------------------------------- breakdown


async def breakdown(tmp: Path, size: int = 1000, rounds: int = 20) -> None:
    """CPU time per stage for SQLite mode B: where the gap to the raw limit goes."""
    events = make_events(size)
    path = tmp / "breakdown.db"
    stages = (
        "validate + prepare (tuiaudit.events)",
        "anonymise (tuiaudit.policy)",
        "store.insert_rows (incl. rows_params)",
        "  of which rows_params (storage.columns)",
        "raw executemany (the limit)",
    )
    spent = dict.fromkeys(stages, 0.0)

    def add(stage: str, t0: float) -> None:
        spent[stage] += time.process_time() - t0

    async with open_store(f"sqlite:///{path}") as store:
        conn = sqlite_raw_table(path, tmp / "breakdown-raw.db")
        for _ in range(rounds):
            t0 = time.process_time()
            prepared = prepare_backend_events(events, now=datetime.now(UTC))
            add("validate + prepare (tuiaudit.events)", t0)
            t0 = time.process_time()
            full = [p.row for p in prepared]  # as AuditLog does it: full row, then its copy
            rows = [r for pair in zip(full, anonymise_many(full), strict=True) for r in pair]
            add("anonymise (tuiaudit.policy)", t0)
            t0 = time.process_time()
            params = rows_params(rows)
            add("  of which rows_params (storage.columns)", t0)
            t0 = time.process_time()
            await store.insert_rows(rows)
            add("store.insert_rows (incl. rows_params)", t0)
            # The same rows (a separate file, so the same ids are free there).
            t0 = time.process_time()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(RAW_INSERT, params)
            conn.execute("COMMIT")
            add("raw executemany (the limit)", t0)
        conn.close()
    print(f"\nCPU time per {size}-event batch, SQLite mode B ({rounds} rounds):")
    for stage, total in spent.items():
        print(f"  {stage:<40} {total / rounds * 1000:7.1f} ms")


# -------------------------------------------------------------------- main


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~1 s per case instead of ~4 s")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--modes", default="A,B,C")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument(
        "--breakdown", action="store_true", help="also print CPU time per stage (SQLite, B)"
    )
    args = parser.parse_args(argv)
    budget = 0.8 if args.quick else 4.0  # both sides share it
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    modes = [m.strip().upper() for m in args.modes.split(",") if m.strip()]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    print(
        f"{'backend':<11} {'mode':<4} {'batch':>5} {'events/s':>11} {'raw ev/s':>11} {'ratio':>6}"
    )
    verdict: float | None = None
    with tempfile.TemporaryDirectory(prefix="tuiaudit-bench-") as tmp:
        for backend in backends:
            for mode in modes:
                for size in sizes:
                    if backend == "sqlite":
                        got, limit = await sqlite_case(mode, size, budget, Path(tmp))
                    else:
                        try:
                            got, limit = await pg_case(mode, size, budget)
                        except (OSError, asyncpg.PostgresError, ModuleNotFoundError) as exc:
                            print(f"postgresql skipped: {exc.__class__.__name__}: {exc}")
                            break
                    ratio = got / limit
                    if backend == "sqlite" and mode == "B" and size == max(sizes):
                        verdict = ratio
                    print(
                        f"{backend:<11} {mode:<4} {size:>5} {got:>11,.0f} {limit:>11,.0f} "
                        f"{ratio:>5.2f}x",
                        flush=True,
                    )
                else:
                    continue
                break
        if args.breakdown:
            await breakdown(Path(tmp))
    if verdict is not None:
        status = "met" if verdict >= 0.5 else "NOT met"
        print(f"\ntarget (SQLite, mode B, batched) >= 0.50x raw: {verdict:.2f}x, {status}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
