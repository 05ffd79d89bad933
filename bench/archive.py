"""Archive a backlog of full audit rows to a plain sink, next to a plain pipeline as a baseline.

    python bench/archive.py                       # 1,000,000 rows, SQLite in a temp dir, 3 reps
    python bench/archive.py --rows 200000 --reps 3
    python bench/archive.py --rows 200000 --store postgresql://postgres@127.0.0.1/test?schema=ba

Every measured run happens in its own process (so its peak RSS is its own) on
the same backlog of mode-A audit rows (not archived yet), chunks of 128 rows:

- archiver: ``Archiver.run_once`` archives the whole backlog (the daemon's
  component: ``Store.archive_chunk`` holds each chunk while it is sent, the
  attempt is logged in ``archive_log``, the mark happens on 2xx). The archive
  GC is kept out of the timed run (``--archive-keep-days`` large): the
  baseline deletes nothing either. It is timed on its own afterwards (SQLite);
- baseline: the plain pipeline doing the same job without the component, on
  the same driver: select the 128 oldest unarchived full rows, ``orjson`` the
  ``{"events": [...]}`` body, POST it, set ``archived_at`` on those ids (on
  PostgreSQL inside one ``FOR UPDATE SKIP LOCKED`` transaction, as the
  reference does; on SQLite select, POST, then a ``BEGIN IMMEDIATE`` update).

Both POST to the SAME sink, a separate process that only reads the body and
answers 204, so the ratio compares the two pipelines and nothing else. They
are measured in the same invocation, alternating which goes first, ``--reps``
times; the ratio is of the medians, the spread is min-max.

Targets: archiver ≥ 0.8× the baseline's rows/s, peak RSS ≤ 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# A bench script, not a test: the sibling scripts are plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/loopback.py: the 204 sink and the phase processes, shared with the other drain bench.
from loopback import child, rss_mb, start_sink

CHUNK = 128
SEED_PAGE = 10_000


# ------------------------------------------------------------------ phases


async def seed(store_url: str, n: int) -> dict[str, Any]:
    import random

    from tuiaudit.storage import open_store
    from tuiaudit.storage.base import AuditRow

    rng = random.Random(42)
    names = ["navigate", "create-file", "update-file", "login-with-password", "export-shapes"]
    teams = [str(uuid.uuid4()) for _ in range(50)]
    start = datetime.now(UTC) - timedelta(days=2)
    async with open_store(store_url) as store:
        for first in range(0, n, SEED_PAGE):
            rows = []
            for i in range(first, min(first + SEED_PAGE, n)):
                at = start + timedelta(milliseconds=i)
                rows.append(
                    AuditRow(
                        id=uuid.uuid4(),
                        name=rng.choice(names),
                        type="action",
                        source="backend",
                        profile_id=uuid.uuid4(),
                        ip_addr=f"10.0.{i // 250 % 250}.{i % 250}",
                        props={
                            "team-id": rng.choice(teams),
                            "file-id": str(uuid.uuid4()),
                            "count": rng.randrange(1000),
                            "ok": rng.random() < 0.5,
                            "email": "someone@example.org",
                        },
                        context={"version": "2.4.1", "request-id": str(uuid.uuid4())},
                        tracked_at=at,
                        created_at=at,
                    )
                )
            await store.insert_rows(rows)
        pending = (await store.archive_stats()).pending
    return {"rows": pending}


async def archiver(store_url: str, uri: str) -> dict[str, Any]:
    import aiohttp

    from tuiaudit.config import Settings
    from tuiaudit.daemon.archiver import Archiver
    from tuiaudit.storage import open_store

    settings = Settings(
        store=store_url,
        flags=("audit-log", "audit-log-archive"),
        archive_uri=uri,
        archive_chunk=CHUNK,
        archive_keep_days=36500,  # the GC is timed apart (the baseline deletes nothing)
    )
    async with open_store(store_url) as store, aiohttp.ClientSession() as session:
        arch = Archiver(store, settings, session=session)
        t0, cpu0 = time.perf_counter(), time.process_time()
        run = await arch.run_once()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        left = (await store.archive_stats()).pending
        deleted, gc_s = 0, 0.0
        if store.backend == "sqlite":  # a copy per run; PostgreSQL keeps its rows for the next
            g0 = time.perf_counter()
            deleted = await store.gc_archived(older_than=datetime.now(UTC))
            gc_s = time.perf_counter() - g0
    if run.error:
        raise SystemExit(f"archive failed: {run.error}")
    return {
        "rows": run.rows_archived,
        "seconds": elapsed,
        "cpu": cpu,
        "bytes": run.bytes_sent,
        "chunks": run.chunks,
        "left": left,
        "gc_rows": deleted,
        "gc_seconds": gc_s,
        "rss_mb": rss_mb(),
    }


def _event(r: Any, loads: Any) -> dict[str, Any]:
    return {
        "id": r[0],
        "type": r[2],
        "name": r[1],
        "source": r[3],
        "created-at": r[9],
        "tracked-at": r[8],
        "profile-id": r[4],
        "ip-addr": r[5],
        "props": loads(r[6]) if isinstance(r[6], str) else r[6],
        "context": loads(r[7]) if isinstance(r[7], str) else r[7],
    }


COLS = "id, name, type, source, profile_id, ip_addr, props, context, tracked_at, created_at"


async def baseline(store_url: str, uri: str) -> dict[str, Any]:
    import aiohttp
    import orjson

    from tuiaudit.storage.url import parse_store_url

    loc = parse_store_url(store_url)
    sent = total_bytes = 0
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> None:
            async with session.post(
                uri, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                await resp.read()
                if resp.status != 204:
                    raise SystemExit(f"baseline sink answered {resp.status}")

        t0, cpu0 = time.perf_counter(), time.process_time()
        if loc.backend == "postgresql":
            import asyncpg

            from tuiaudit.storage.postgres_conn import init_connection

            conn = await asyncpg.connect(loc.dsn, server_settings={"search_path": loc.schema})
            await init_connection(conn)  # the store's codecs: uuid.UUID, dict, str
            try:
                while True:
                    async with conn.transaction():
                        rows = await conn.fetch(
                            f"SELECT {COLS} FROM audit_log WHERE archived_at IS "
                            "NULL AND source NOT LIKE 'telemetry:%' ORDER BY created_at, id "
                            f"LIMIT {CHUNK} FOR UPDATE SKIP LOCKED"
                        )
                        if not rows:
                            break
                        body = orjson.dumps(
                            {"events": [_event(r, orjson.loads) for r in rows]},
                            option=orjson.OPT_UTC_Z,
                        )
                        await post(body)
                        await conn.execute(
                            "UPDATE audit_log SET archived_at = now() WHERE id = ANY($1::uuid[])",
                            [r[0] for r in rows],
                        )
                    sent += len(rows)
                    total_bytes += len(body)
            finally:
                await conn.close()
        else:
            import aiosqlite

            assert loc.path is not None
            async with aiosqlite.connect(loc.path, isolation_level=None) as conn:
                while True:
                    rows = await conn.execute_fetchall(
                        f"SELECT {COLS} FROM audit_log INDEXED BY audit_log_archive_queue "
                        "WHERE archived_at IS NULL AND substr(source, 1, 10) <> 'telemetry:' "
                        f"ORDER BY created_at, id LIMIT {CHUNK}"
                    )
                    if not rows:
                        break
                    rows = list(rows)
                    body = orjson.dumps({"events": [_event(r, orjson.loads) for r in rows]})
                    await post(body)
                    await conn.execute("BEGIN IMMEDIATE")
                    await conn.execute(
                        "UPDATE audit_log SET archived_at = ? WHERE id IN "
                        "(SELECT value FROM json_each(?))",
                        (
                            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                            orjson.dumps([r[0] for r in rows]).decode(),
                        ),
                    )
                    await conn.execute("COMMIT")
                    sent += len(rows)
                    total_bytes += len(body)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "rows": sent,
        "seconds": elapsed,
        "cpu": cpu,
        "bytes": total_bytes,
        "left": 0,
        "rss_mb": rss_mb(),
    }


# ----------------------------------------------------------------- driver


class Backlog:
    """The same unarchived backlog for each run.

    SQLite: seeded once into a template file, copied before each run (the same
    bytes every time). PostgreSQL: seeded once, ``archived_at`` reset before each
    run and the table vacuumed, so every run starts from the same state.
    """

    def __init__(self, store: str | None, rows: int, tmp: Path) -> None:
        self.sqlite = store is None
        self.template = tmp / "template.db"
        self.run_path = tmp / "run.db"
        self.url = f"sqlite:///{self.run_path}" if store is None else store
        seed_url = f"sqlite:///{self.template}" if self.sqlite else self.url
        self.seeded = int(child(__file__, "seed", "--store", seed_url, "--rows", str(rows))["rows"])
        if self.sqlite:
            with sqlite3.connect(self.template) as conn:  # fold the WAL into the file
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def fresh(self) -> str:
        if self.sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.run_path}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(self.template, self.run_path)
        else:
            asyncio.run(_pg_reset(self.url))
        return self.url


async def _pg_reset(url: str) -> None:
    import asyncpg

    from tuiaudit.storage.url import parse_store_url

    loc = parse_store_url(url)
    conn = await asyncpg.connect(loc.dsn, server_settings={"search_path": loc.schema})
    try:
        await conn.execute("UPDATE audit_log SET archived_at = NULL")
        await conn.execute("DELETE FROM archive_log")
        await conn.execute("VACUUM ANALYZE audit_log")
    finally:
        await conn.close()


def spread(xs: list[float]) -> str:
    return f"{min(xs):,.0f}-{max(xs):,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each pipeline")
    ap.add_argument("--store", help="PostgreSQL store URL (default: a SQLite file in a temp dir)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--uri", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        fn = {
            "seed": lambda: seed(args.store, args.rows),
            "archiver": lambda: archiver(args.store, args.uri),
            "baseline": lambda: baseline(args.store, args.uri),
        }[args.phase]
        print(json.dumps(asyncio.run(fn())))
        return

    runs: dict[str, list[dict[str, Any]]] = {"archiver": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        sink, port = start_sink()
        sink_url = f"http://127.0.0.1:{port}/archive"
        try:
            backlog = Backlog(args.store, args.rows, Path(tmp_name))
            for rep in range(args.reps):
                order = ("archiver", "baseline") if rep % 2 == 0 else ("baseline", "archiver")
                for name in order:
                    result = child(__file__, name, "--store", backlog.fresh(), "--uri", sink_url)
                    if result["rows"] != backlog.seeded or result["left"]:
                        raise SystemExit(f"{name} run {rep + 1} did not archive all: {result}")
                    result["rate"] = result["rows"] / result["seconds"]
                    runs[name].append(result)
                    print(
                        f"  run {rep + 1} {name:8s} {result['rows']:,} rows in "
                        f"{result['seconds']:.2f} s = {result['rate']:,.0f} rows/s, "
                        f"CPU {result['cpu']:.2f} s, peak RSS {result['rss_mb']:.0f} MB",
                        flush=True,
                    )
        finally:
            sink.terminate()
            sink.wait(10)

    n = backlog.seeded
    arch_rate = statistics.median(r["rate"] for r in runs["archiver"])
    base_rate = statistics.median(r["rate"] for r in runs["baseline"])
    arch_rss = max(r["rss_mb"] for r in runs["archiver"])
    first = runs["archiver"][0]
    gc_runs = [r["gc_rows"] / r["gc_seconds"] for r in runs["archiver"] if r["gc_seconds"]]
    kind = "sqlite" if args.store is None else "postgresql"
    print(f"backlog:  {n:,} full audit rows ({kind}), chunks of {CHUNK}, {args.reps} run(s) each")
    print(
        f"archiver: {arch_rate:,.0f} rows/s median ({spread([r['rate'] for r in runs['archiver']])}"
        f"), {first['chunks']:,} chunks, {first['bytes'] / n:.0f} body bytes/row, "
        f"peak RSS {arch_rss:.0f} MB"
    )
    print(
        f"baseline: {base_rate:,.0f} rows/s median ({spread([r['rate'] for r in runs['baseline']])}"
        "), select + orjson + POST + update, same chunks, same sink"
    )
    arch_cpu = statistics.median(r["cpu"] / r["rows"] * 1e6 for r in runs["archiver"])
    base_cpu = statistics.median(r["cpu"] / r["rows"] * 1e6 for r in runs["baseline"])
    print(
        f"ratio:    {arch_rate / base_rate:.2f}x the baseline (target >= 0.8x); "
        f"RSS {arch_rss:.0f} MB (target <= 150 MB)"
    )
    # CPU time moves less than wall time when other processes share the cores.
    print(
        f"CPU:      archiver {arch_cpu:.1f} us/row, baseline {base_cpu:.1f} us/row "
        f"(process CPU, medians): {base_cpu / arch_cpu:.2f}x by CPU"
    )
    if gc_runs:
        print(
            f"archive GC (after the timed run): {statistics.median(gc_runs):,.0f} archived "
            "rows deleted/s, in transactions of 10,000"
        )


if __name__ == "__main__":
    main()
