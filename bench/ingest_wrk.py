"""``bench/ingest_http.py --wrk``: HTTP ingest under wrk next to two raw baselines (issue 20).

The load is ``wrk`` (C, one thread, 8 connections) posting one body of 100
frontend events to ``/api/audit/events`` of a real ``tuiaudit daemon``
subprocess (mode B: each event a full row and its telemetry copy), for
``--seconds`` (6 s) per round. The daemon runs with ``--workers N``.

The raw side inserts the same rows (made by the daemon's own preparation and
anonymisation, fresh ids and clock, outside the timing) with stdlib
``sqlite3.executemany`` in ``BEGIN IMMEDIATE`` … ``COMMIT`` (WAL,
``synchronous=NORMAL`` as the store), in transactions as large as the
daemon's were in that round (its group-commit counters), into

* the project schema: a store made by ``tuiaudit migrate`` (its audit_log
  with every index and trigger), and
* a minimal table: the 11 columns, the id as primary key, no other index,
  ids time-ordered (UUIDv7) so every insert appends: the physical limit.

On PostgreSQL (``--backends postgresql``) the raw side is asyncpg's COPY into
a table made ``LIKE`` the store's (indexes included), one transaction per
request as the daemon does.

The daemon runs with its real default components, as ``tuiaudit daemon``
runs them (``--no-components`` for the bare ingest path, the earlier figure):
in mode B without a telemetry URI the shipper has nothing to send and the
webhook dispatcher and archiver are off, so what costs is the heartbeat, the
action loop and, on SQLite, the search indexer (daemon/search_indexer.py),
which yields to ingest and catches up once it is idle. Each round reports the
indexer's backlog at the end of the load ("idx backlog") and waits until it
is caught up (its time, "catch-up s") before the next run, so no round pays
for the previous one's index. The CPU per event of the daemon process and of
its workers together is read from ``/proc`` over the wrk run (the daemon runs
in this process: the raw side and the other daemons are idle meanwhile). On
SQLite, "writer busy" is the share of the run the store's writer thread spent
writing groups and "on CPU" the share it was running on a core meanwhile (the
rest of busy: waiting for the disk, the GIL or a core; the rest of the run:
no rows to write): the writer is the pipeline's bottleneck.

HTTP and raw runs alternate, ``--rounds`` times (3), so both see the same
machine load; reported: every round, the medians and spread (min-max), the
ratios of the medians, p50/p99 latency and errors. Targets (issue 20): SQLite
>= 0.75x the project schema and >= 0.45x the minimal table, PostgreSQL >=
0.8x its raw COPY, p99 <= 50 ms, no errors. The load average is printed:
read figures from a quiet machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from tuiaudit.audit import AuditLog
from tuiaudit.config import Settings
from tuiaudit.daemon.service import Daemon, running_daemon
from tuiaudit.events import prepare_frontend_events
from tuiaudit.storage.base import AuditRow
from tuiaudit.storage.columns import AUDIT_COLUMNS, rows_params

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ingest  # bench/ingest.py: the PostgreSQL raw side

BATCH = 100
FLAGS = "audit-log,telemetry"  # mode B
PG_DSN = ingest.PG_DSN
COLUMNS = tuple(c.strip() for c in AUDIT_COLUMNS.split(","))
INSERT = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({', '.join('?' * 11)})"
MINIMAL_DDL = (
    "CREATE TABLE audit_log (id TEXT PRIMARY KEY, name TEXT, type TEXT, source TEXT, "
    "profile_id TEXT, ip_addr TEXT, props TEXT, context TEXT, tracked_at TEXT, "
    "created_at TEXT, archived_at TEXT)"
)
LUA = """
local f = io.open(os.getenv("TUIAUDIT_WRK_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
"""


def frontend_body(now: datetime) -> tuple[bytes, list[dict[str, Any]], str]:
    """One request: 100 frontend events of the last second, a few props, a context."""
    profile = str(uuid.uuid4())
    events = [
        {
            "name": "update-file",
            "type": "action",
            "timestamp": (now - timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "props": {
                "file-id": str(uuid.uuid4()),
                "project-id": str(uuid.uuid4()),
                "revn": i,
                "title": "Quarterly plan",
                "is-shared": True,
            },
            "context": {"initiator": "app", "version": "2.1.0", "browser": "firefox"},
        }
        for i in range(BATCH)
    ]
    body = json.dumps({"profile-id": profile, "events": events}).encode()
    return body, events, profile


def rows_of(events: list[dict[str, Any]], profile: str) -> list[AuditRow]:
    """The rows the daemon stores for one request, now (fresh ids, this clock)."""
    audit = AuditLog(None, FLAGS.split(","))  # type: ignore[arg-type,unused-ignore]  # rows_for only
    rows = prepare_frontend_events(
        events, profile_id=profile, ip_addr="127.0.0.1", now=datetime.now(UTC)
    )
    return [r for row in rows for r in audit.rows_for(row)]


# ---------------------------------------------------------------------- the load


def run_wrk(port: int, body_file: Path, lua: Path, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t1", "-c8", f"-d{seconds:g}s", "--latency", "-s", str(lua),
         f"http://127.0.0.1:{port}/api/audit/events"],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
        env={**os.environ, "TUIAUDIT_WRK_BODY": str(body_file)},
    ).stdout  # fmt: skip
    return parse_wrk(out)


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        return float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")

    errors = 0
    kinds = []
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
        kinds.append(f"{m.group(1)} non-2xx")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
        names = ("connect", "read", "write", "timeout (2 s)")
        kinds += [f"{g} {n}" for g, n in zip(m.groups(), names, strict=True) if g != "0"]
    return {"events_per_s": rps * BATCH, "p50_ms": pct("50"), "p99_ms": pct("99"),
            "errors": errors, "error_kinds": ", ".join(kinds)}  # fmt: skip


# ------------------------------------------------------------------- raw sides


def sqlite_conn(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def sqlite_raw(conn: sqlite3.Connection) -> Callable[[list[AuditRow]], Awaitable[float]]:
    async def insert(rows: list[AuditRow]) -> float:
        params = rows_params(rows)
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, params)
        conn.execute("COMMIT")
        return time.perf_counter() - t0

    return insert


async def raw_round(
    insert: Callable[[list[AuditRow]], Awaitable[float]],
    events: list[dict[str, Any]],
    profile: str,
    requests_per_txn: int,
    seconds: float,
) -> float:
    """events/s of ``insert``, ``requests_per_txn`` requests' rows per transaction."""
    spent, done = 0.0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or done == 0:
        rows = [r for _ in range(requests_per_txn) for r in rows_of(events, profile)]
        spent += await insert(rows)
        done += requests_per_txn * BATCH
    return done / spent


# ----------------------------------------------------------------------- rounds


@dataclass
class Round:
    http: dict[str, Any]
    txn_requests: int
    raw: dict[str, float]  # baseline name -> events/s
    cpu_us: tuple[float, float] = (float("nan"), float("nan"))  # daemon, workers: µs/event
    backlog: int | None = None  # search-index backlog at the end of the load (SQLite)
    catch_up_s: float = 0.0  # until the indexer had caught up after the load
    writer: tuple[float, float] = (0.0, 0.0)  # SQLite writer thread: busy, on a CPU (share)


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def children() -> set[int]:
    """This process's child processes (a daemon's ingest workers)."""
    me, out = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.add(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


async def caught_up(daemon: Daemon, limit_s: float = 300.0) -> float:
    """Seconds until the daemon's search indexer has no backlog (0 without an indexer)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        pending = daemon.metrics.search_pending
        if pending is None or pending == 0:
            break
        await asyncio.sleep(0.2)
    return time.perf_counter() - t0


def migrate(store: str) -> None:
    """A store made the way an operator makes one: ``tuiaudit migrate``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_")}
    argv = [sys.executable, "-m", "tuiaudit", "migrate", "--store", store]
    subprocess.run(argv, check=True, capture_output=True, env=env)


Results = dict[int, list[Round]]  # --workers setting -> its rounds


def worker_settings(value: object) -> list[int]:
    """``--workers 2`` or ``--workers 1,2`` (daemons alternated in every round)."""
    return [int(w) for w in str(value).split(",") if w.strip()]


async def sqlite_rounds(args: argparse.Namespace, tmp: Path) -> Results:
    project, minimal = tmp / "project.db", tmp / "minimal.db"
    migrate(f"sqlite:///{project}")
    conn_project = sqlite_conn(project)
    conn_minimal = sqlite_conn(minimal)
    conn_minimal.execute(MINIMAL_DDL)
    baselines = {"project": sqlite_raw(conn_project), "minimal": sqlite_raw(conn_minimal)}
    stores = {w: f"sqlite:///{tmp / f'store-w{w}.db'}" for w in worker_settings(args.workers)}
    return await rounds(stores, baselines, args, tmp)


async def pg_rounds(args: argparse.Namespace, tmp: Path) -> Results:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    raw_schema = schema + "_raw"
    schemas = {w: f"{schema}_w{w}" for w in worker_settings(args.workers)}
    admin = await asyncpg.connect(PG_DSN)
    try:
        for name in (raw_schema, *schemas.values()):
            await admin.execute(f"CREATE SCHEMA {name}")
        stores = {w: f"{PG_DSN}?schema={name}" for w, name in schemas.items()}
        for url in stores.values():
            migrate(url)
        first = next(iter(schemas.values()))
        await admin.execute(
            f"CREATE TABLE {raw_schema}.audit_log (LIKE {first}.audit_log INCLUDING ALL)"
        )

        async def insert(rows: list[AuditRow]) -> float:
            return await ingest.pg_raw_insert(admin, raw_schema, ingest.pg_records(rows))

        return await rounds(stores, {"project": insert}, args, tmp)
    finally:
        for name in (raw_schema, *schemas.values()):
            await admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await admin.close()


async def rounds(
    stores: dict[int, str],
    baselines: dict[str, Callable[[list[AuditRow]], Awaitable[float]]],
    args: argparse.Namespace,
    tmp: Path,
) -> Results:
    body, events, profile = frontend_body(datetime.now(UTC))
    body_file, lua = tmp / "body.json", tmp / "post.lua"
    body_file.write_bytes(body)
    lua.write_text(LUA)
    out: Results = {w: [] for w in stores}
    # The daemons in this process (their workers, if any, in their own): the group-commit
    # counters give the transaction size; the raw side runs while HTTP is idle. With
    # several --workers settings every round runs each daemon in turn: the same load.
    components = [] if args.no_components else None  # None: the daemon's defaults
    async with contextlib.AsyncExitStack() as stack:
        daemons: dict[int, Daemon] = {}
        workers: dict[int, set[int]] = {}
        for w, store in stores.items():
            settings = Settings(
                store=store, listen="127.0.0.1:0", flags=tuple(FLAGS.split(",")), workers=w
            )
            before_pids = children()
            daemons[w] = await stack.enter_async_context(
                running_daemon(settings, components=components)
            )
            workers[w] = children() - before_pids
        # As `tuiaudit daemon` does once it has started (tuiaudit/commands/daemon.py):
        # what is loaded by now lives as long as the process, so the cyclic
        # collector need not re-scan it during ingest (the daemons serve in this
        # process: without it each full collection walks both daemons' state).
        gc.freeze()
        for insert in baselines.values():  # warm-up: caches, the first pages
            await raw_round(insert, events, profile, 1, 0.2)
        for daemon in daemons.values():
            await asyncio.to_thread(run_wrk, daemon.port, body_file, lua, 1)  # warm-up
            await caught_up(daemon)
        for _ in range(args.rounds):
            for w, daemon in daemons.items():
                before = _group_counts(daemon)
                writer0 = _writer_time(daemon)
                cpu0 = (time.process_time(), sum(cpu_seconds(p) for p in workers[w]))
                http = await asyncio.to_thread(run_wrk, daemon.port, body_file, lua, args.seconds)
                cpu1 = (time.process_time(), sum(cpu_seconds(p) for p in workers[w]))
                writer1 = _writer_time(daemon)
                writer = ((writer1[0] - writer0[0]) / args.seconds,
                          (writer1[1] - writer0[1]) / args.seconds)  # fmt: skip
                events_done = http["events_per_s"] * args.seconds
                cpu = ((cpu1[0] - cpu0[0]) / events_done * 1e6,
                       (cpu1[1] - cpu0[1]) / events_done * 1e6)  # fmt: skip
                backlog = daemon.metrics.search_pending
                txn = _requests_per_txn(daemon, before)
                catch_up = await caught_up(daemon)
                raw = {
                    name: await raw_round(insert, events, profile, txn, args.seconds)
                    for name, insert in baselines.items()
                }
                out[w].append(Round(http, txn, raw, cpu, backlog, catch_up, writer))
    return out


def _group_counts(daemon: Daemon) -> tuple[int, int]:
    stats = getattr(daemon.store, "group_stats", None)  # SQLite's group commit
    return (stats.groups, stats.calls) if stats is not None else (0, 0)


def _writer_time(daemon: Daemon) -> tuple[float, float]:
    """Seconds SQLite's writer thread spent in groups, and on a CPU in them."""
    stats = getattr(daemon.store, "group_stats", None)
    return (stats.busy_s, stats.cpu_s) if stats is not None else (0.0, 0.0)


def _requests_per_txn(daemon: Daemon, before: tuple[int, int]) -> int:
    """Requests per store transaction in the round: PostgreSQL commits each request on
    its own; SQLite's group commit merges the requests waiting for the writer."""
    groups, calls = _group_counts(daemon)
    groups, calls = groups - before[0], calls - before[1]
    return max(1, round(calls / groups)) if groups else 1


# ----------------------------------------------------------------------- report

TARGETS = {"sqlite": {"project": 0.75, "minimal": 0.45}, "postgresql": {"project": 0.8}}


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def report(label: str, backend: str, results: list[Round]) -> bool:
    """Print one setting's rounds and medians; True when a target is missed."""
    names = list(results[0].raw)
    head = f"{'daemon':<16}{'round':<7}{'HTTP ev/s':>11}" + "".join(
        f"{n + ' ev/s':>15}" for n in names
    )
    print(
        f"{head}{'txn req':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'daemon us/ev':>14}{'workers us/ev':>15}{'idx backlog':>13}{'catch-up s':>12}"
        f"{'writer busy':>13}{'on CPU':>8}"
    )
    for i, r in enumerate(results, 1):
        backlog = "-" if r.backlog is None else f"{r.backlog:,}"
        print(
            f"{label:<16}{i:<7}{r.http['events_per_s']:>11,.0f}"
            + "".join(f"{r.raw[n]:>15,.0f}" for n in names)
            + f"{r.txn_requests:>9}{r.http['p50_ms']:>9.1f}{r.http['p99_ms']:>9.1f}"
            f"{r.http['errors']:>8}{r.cpu_us[0]:>14.1f}{r.cpu_us[1]:>15.1f}"
            f"{backlog:>13}{r.catch_up_s:>12.1f}"
            + (f"{r.writer[0]:>13.0%}{r.writer[1]:>8.0%}" if r.writer[0] else f"{'-':>13}{'-':>8}")
        )
    failed = False
    http = [r.http["events_per_s"] for r in results]
    print(f"{label:<16}median: HTTP {spread(http, ',.0f')} ev/s")
    for n in names:
        raw = [r.raw[n] for r in results]
        ratio = statistics.median(http) / statistics.median(raw)
        goal = TARGETS.get(backend, {}).get(n)
        verdict = "" if goal is None else f" (target >= {goal:.2f}x: "
        verdict += "" if goal is None else ("met)" if ratio >= goal else "NOT met)")
        failed |= goal is not None and ratio < goal
        print(f"{'':<16}{n}: raw {spread(raw, ',.0f')} ev/s, ratio {ratio:.2f}x{verdict}")
    p99 = max(r.http["p99_ms"] for r in results)
    errors = sum(r.http["errors"] for r in results)
    kinds = "; ".join(r.http["error_kinds"] for r in results if r.http["error_kinds"])
    print(
        f"{'':<16}worst p99 {p99:.1f} ms (target <= 50), errors {errors} (target 0)"
        + (f": {kinds}" if kinds else "")
    )
    return failed or p99 > 50 or errors > 0


async def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk (scripts/setup.sh installs it)")
        return 2
    load = os.getloadavg()
    print(
        f"HTTP ingest under wrk (1 thread, 8 connections, {BATCH} frontend events per request, "
        f"mode B, --workers {args.workers}, "
        f"{'no components' if args.no_components else 'default components'}), "
        f"{args.rounds} alternating rounds of "
        f"{args.seconds:g} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"on {os.cpu_count()} cores"
    )
    failed = False
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                if backend == "sqlite":
                    results = await sqlite_rounds(args, Path(tmp))
                else:
                    results = await pg_rounds(args, Path(tmp))
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"{backend}: skipped: {exc.__class__.__name__}: {exc}")
                continue
        for w, rs in results.items():
            failed |= report(f"{backend} w={w}", backend, rs)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 1 if failed else 0
