"""Drain a telemetry backlog to a plain sink, next to a plain JSON pipeline as a baseline.

    python bench/ship.py                 # 100,000 rows, SQLite in a temp dir, 3 repetitions
    python bench/ship.py --rows 20000 --reps 5
    python bench/ship.py --store postgresql://postgres@127.0.0.1/test?schema=b1

Every measured phase runs in its own process (so its peak RSS is its own) on
the same backlog of mode-C telemetry rows (the anonymised copy of each event,
as ``AuditLog`` stores it):

- shipper: ``Shipper.run_once`` drains the backlog;
- baseline: the simplest pipeline that does the same job drains it: select a
  page, ``orjson`` + ``zstd``, POST, delete the page. A baseline, not a
  ceiling: it is what a straightforward sender achieves, so the shipper must at
  least match it; it is not the fastest drain possible.

Both POST to the SAME sink, a separate process that only reads the body and
answers 204, so the ratio compares the two pipelines and nothing else. They
are measured in the same invocation, alternating which goes first, ``--reps``
times; the ratio is of the medians.

A last, separately reported end-to-end run ships to ``tuiaudit receiver``
(decoding every blob, de-duplicating, writing JSON lines) as a correctness
check: every event received, none left. Its time includes the receiver's
decoding and is not part of the ratio.

Targets: drain ≥ 1.0× the baseline's events/s, ≤ 4 s for 100k, RSS ≤ 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

# A bench script, not a test: the sibling scripts are plain modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# bench/loopback.py: the 204 sink and the phase processes, shared with the other drain bench.
from loopback import child, rss_mb, start_server, start_sink

PAGE = 10_000


# ------------------------------------------------------------------ phases


async def seed(store_url: str, n: int) -> dict[str, Any]:
    from tuiaudit.consent import accept
    from tuiaudit.events import prepare_backend_events
    from tuiaudit.policy import POLICY_VERSION, anonymise
    from tuiaudit.storage import open_store
    from tuiaudit.timeutil import utcnow

    rng = random.Random(42)
    names = ["navigate", "create-file", "update-file", "login-with-password", "export-shapes"]
    teams = [str(uuid.uuid4()) for _ in range(50)]
    now = utcnow() - timedelta(hours=1)
    async with open_store(store_url) as store:
        await accept(store, POLICY_VERSION)
        for start in range(0, n, PAGE):
            raws = [
                {
                    "name": rng.choice(names),
                    "type": "action",
                    "profile-id": str(uuid.uuid4()),
                    "props": {
                        "team-id": rng.choice(teams),
                        "file-id": str(uuid.uuid4()),
                        "count": rng.randrange(1000),
                        "ok": rng.random() < 0.5,
                        "email": "someone@example.org",
                        "title": "not shared",
                    },
                    "context": {"version": "2.4.1", "initiator": "app", "request-id": "x"},
                }
                for _ in range(min(PAGE, n - start))
            ]
            prepared = prepare_backend_events(raws, now=now + timedelta(milliseconds=start))
            await store.insert_rows([anonymise(p.row) for p in prepared])
        pending = (await store.queue_stats()).pending
    return {"rows": pending}


async def ship(store_url: str, uri: str) -> dict[str, Any]:
    import aiohttp

    from tuiaudit.config import Settings
    from tuiaudit.daemon.shipper import Shipper
    from tuiaudit.storage import open_store

    settings = Settings(store=store_url, telemetry_uri=uri, jitter=0)
    async with open_store(store_url) as store, aiohttp.ClientSession() as session:
        shipper = Shipper(store, settings, session=session)
        t0, cpu0 = time.perf_counter(), time.process_time()
        report = await shipper.run_once(jitter=False, report=False)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        left = (await store.queue_stats()).pending
    if report.error:
        raise SystemExit(f"ship failed: {report.error}")
    return {
        "rows": report.rows_sent,
        "seconds": elapsed,
        "cpu": cpu,
        "bytes": report.bytes_sent,
        "batches": report.batches_sent,
        "left": left,
        "rss_mb": rss_mb(),
    }


async def baseline(store_url: str, uri: str) -> dict[str, Any]:
    import aiohttp
    import orjson
    import zstandard

    from tuiaudit.storage import open_store

    cctx = zstandard.ZstdCompressor(level=3)
    sent = total_bytes = 0
    async with open_store(store_url) as store, aiohttp.ClientSession() as session:
        t0, cpu0 = time.perf_counter(), time.process_time()
        while True:
            page = await store.telemetry_page(PAGE)
            if not page:
                break
            body = cctx.compress(
                orjson.dumps(
                    [
                        {
                            "id": r.id,
                            "name": r.name,
                            "type": r.type,
                            "source": r.source,
                            "tracked-at": r.tracked_at,
                            "profile-id": r.profile_id,
                            "props": r.props,
                            "context": r.context,
                        }
                        for r in page
                    ]
                )
            )
            async with session.post(uri, data=body) as resp:
                await resp.read()
                if resp.status != 204:
                    raise SystemExit(f"baseline sink answered {resp.status}")
            await store.delete_rows([r.id for r in page])
            sent += len(page)
            total_bytes += len(body)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "rows": sent,
        "seconds": elapsed,
        "cpu": cpu,
        "bytes": total_bytes,
        "rss_mb": rss_mb(),
    }


# ----------------------------------------------------------------- driver


def median(xs: list[float]) -> float:
    return statistics.median(xs)


class Backlog:
    """A fresh copy of the seeded backlog for each run.

    SQLite: seeded once into a template file, copied before each run (the
    same bytes every time). PostgreSQL: re-seeded before each run.
    """

    def __init__(self, store: str | None, rows: int, tmp: Path) -> None:
        self.rows = rows
        self.sqlite = store is None
        self.template = tmp / "template.db"
        self.run_path = tmp / "run.db"
        self.url = f"sqlite:///{self.run_path}" if store is None else store
        if self.sqlite:
            seeded = child(
                __file__, "seed", "--store", f"sqlite:///{self.template}", "--rows", str(rows)
            )
            with sqlite3.connect(self.template) as conn:  # fold the WAL into the file
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.seeded = int(seeded["rows"])

    def fresh(self) -> str:
        if self.sqlite:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.run_path}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(self.template, self.run_path)
        else:
            self.seeded = int(
                child(__file__, "seed", "--store", self.url, "--rows", str(self.rows))["rows"]
            )
        return self.url


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each pipeline")
    ap.add_argument("--store", help="PostgreSQL store URL (default: a SQLite file in a temp dir)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--uri", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        fn = {
            "seed": lambda: seed(args.store, args.rows),
            "ship": lambda: ship(args.store, args.uri),
            "baseline": lambda: baseline(args.store, args.uri),
        }[args.phase]
        print(json.dumps(asyncio.run(fn())))
        return

    runs: dict[str, list[dict[str, Any]]] = {"shipper": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out = tmp / "received.jsonl"
        sink, port = start_sink()
        sink_url = f"http://127.0.0.1:{port}/"
        receiver_cmd = ["-m", "tuiaudit", "receiver", "--listen", "127.0.0.1:0", "--out", str(out)]
        receiver, receiver_url = start_server(
            [sys.executable, *receiver_cmd],
            r"http://127\.0\.0\.1:\d+/",
        )
        try:
            backlog = Backlog(args.store, args.rows, tmp)
            for rep in range(args.reps):
                order = ("shipper", "baseline") if rep % 2 == 0 else ("baseline", "shipper")
                for name in order:
                    url = backlog.fresh()
                    phase = "ship" if name == "shipper" else "baseline"
                    result = child(__file__, phase, "--store", url, "--uri", sink_url)
                    if result["rows"] != backlog.seeded or result.get("left", 0):
                        raise SystemExit(f"{name} run {rep + 1} did not drain: {result}")
                    runs[name].append(result)
                    print(
                        f"  run {rep + 1} {name:8s} {result['rows']:,} events in "
                        f"{result['seconds']:.2f} s = {result['rows'] / result['seconds']:,.0f}"
                        f" events/s, CPU {result['cpu']:.2f} s (all threads), "
                        f"peak RSS {result['rss_mb']:.0f} MB",
                        flush=True,
                    )
            e2e = child(__file__, "ship", "--store", backlog.fresh(), "--uri", receiver_url)
        finally:
            for p in (receiver, sink):
                p.terminate()
                p.wait(10)
        received = sum(
            json.loads(line).get("count", 0) for line in out.read_text().splitlines() if line
        )

    n = backlog.seeded
    ship_s = median([r["seconds"] for r in runs["shipper"]])
    plain_s = median([r["seconds"] for r in runs["baseline"]])
    ship_rss = max(r["rss_mb"] for r in runs["shipper"])
    shipped = runs["shipper"][0]
    plain = runs["baseline"][0]
    kind = "sqlite" if args.store is None else args.store.split(":")[0]
    print(f"backlog:  {n:,} mode-C telemetry rows ({kind}), {args.reps} run(s) of each, medians")
    print(
        f"shipper:  {n:,} events in {ship_s:.2f} s = {n / ship_s:,.0f} events/s, "
        f"{shipped['batches']} batches, {shipped['bytes'] / n:.1f} wire bytes/event, "
        f"CPU {median([r['cpu'] for r in runs['shipper']]):.2f} s, "
        f"peak RSS {ship_rss:.0f} MB (plain sink)"
    )
    print(
        f"baseline: {n:,} events in {plain_s:.2f} s = {n / plain_s:,.0f} events/s "
        f"(select + orjson + zstd + POST + delete, plain sink), "
        f"{plain['bytes'] / n:.1f} wire bytes/event, "
        f"CPU {median([r['cpu'] for r in runs['baseline']]):.2f} s"
    )
    print(
        f"ratio:    {plain_s / ship_s:.2f}x the baseline (target >= 1.0x); "
        f"drain {ship_s:.2f} s (target <= 4 s for 100k); "
        f"RSS {ship_rss:.0f} MB (target <= 150 MB)"
    )
    ok = received == n and e2e["left"] == 0 and e2e["rows"] == n
    print(
        f"end-to-end (correctness, not timed against the baseline): shipped {e2e['rows']:,} "
        f"to `tuiaudit receiver` in {e2e['seconds']:.2f} s (it decodes every blob); "
        f"receiver decoded {received:,}, left {e2e['left']} -> {'OK' if ok else 'MISMATCH'}"
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
