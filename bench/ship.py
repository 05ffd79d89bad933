"""Drain a telemetry backlog to the local receiver, next to a plain JSON pipeline ceiling.

    python bench/ship.py                 # 100,000 rows, SQLite in a temp dir
    python bench/ship.py --rows 20000 --store postgresql://postgres@127.0.0.1/test?schema=b1

Three phases, each in its own process so its peak RSS is its own:

1. seed: a backlog of mode-C telemetry rows (the anonymised copy of each
   event, as ``AuditLog`` stores it) inserted straight with ``insert_rows``;
2. ship: ``Shipper.run_once`` drains it to ``tuiaudit receiver`` (a separate
   process on loopback, decoding every blob and writing JSON lines);
3. ceiling: the same rows re-seeded, drained by the simplest pipeline that
   does the same job: select a page, ``orjson`` + ``zstd``, POST to a server
   that only reads the body, delete the page.

Targets: drain ≥ 1.0× the ceiling's events/s, ≤ 4 s for 100k, RSS ≤ 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

PAGE = 10_000


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ phases


async def seed(store_url: str, n: int) -> dict[str, Any]:
    from storage import open_store
    from tuiaudit.consent import accept
    from tuiaudit.events import prepare_backend_events
    from tuiaudit.policy import POLICY_VERSION, anonymise
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

    from daemon.shipper import Shipper
    from storage import open_store
    from tuiaudit.config import Settings

    settings = Settings(store=store_url, telemetry_uri=uri, jitter=0)
    async with open_store(store_url) as store, aiohttp.ClientSession() as session:
        shipper = Shipper(store, settings, session=session)
        t0 = time.perf_counter()
        report = await shipper.run_once(jitter=False, report=False)
        elapsed = time.perf_counter() - t0
        left = (await store.queue_stats()).pending
    if report.error:
        raise SystemExit(f"ship failed: {report.error}")
    return {
        "rows": report.rows_sent,
        "seconds": elapsed,
        "bytes": report.bytes_sent,
        "batches": report.batches_sent,
        "left": left,
        "rss_mb": rss_mb(),
    }


async def ceiling(store_url: str, uri: str) -> dict[str, Any]:
    import aiohttp
    import orjson
    import zstandard

    from storage import open_store

    cctx = zstandard.ZstdCompressor(level=3)
    sent = total_bytes = 0
    async with open_store(store_url) as store, aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
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
                    raise SystemExit(f"ceiling sink answered {resp.status}")
            await store.delete_rows([r.id for r in page])
            sent += len(page)
            total_bytes += len(body)
        elapsed = time.perf_counter() - t0
    return {"rows": sent, "seconds": elapsed, "bytes": total_bytes, "rss_mb": rss_mb()}


SINK = r"""
import sys
from aiohttp import web
async def h(request):
    await request.read()
    return web.Response(status=204)
app = web.Application(client_max_size=256 * 2**20)
app.router.add_route("POST", "/{tail:.*}", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
            print=lambda *a: print("ready", flush=True))
"""


# ----------------------------------------------------------------- driver


def child(phase: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_server(cmd: list[str], pattern: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(pattern, line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, m.group(0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--store", help="store URL (default: a SQLite file in a temp dir)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--uri", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase:
        fn = {
            "seed": lambda: seed(args.store, args.rows),
            "ship": lambda: ship(args.store, args.uri),
            "ceiling": lambda: ceiling(args.store, args.uri),
        }[args.phase]
        print(json.dumps(asyncio.run(fn())))
        return

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{tmp}/bench.db"
        out = Path(tmp) / "received.jsonl"
        receiver, url = start_server(
            [
                sys.executable,
                "-m",
                "tuiaudit",
                "receiver",
                "--listen",
                "127.0.0.1:0",
                "--out",
                str(out),
            ],
            r"http://127\.0\.0\.1:\d+/",
        )
        port = free_port()
        sink, _ = start_server([sys.executable, "-c", SINK, str(port)], "ready")
        try:
            seeded = child("seed", "--store", store, "--rows", str(args.rows))
            shipped = child("ship", "--store", store, "--uri", url)
            child("seed", "--store", store, "--rows", str(args.rows))
            plain = child("ceiling", "--store", store, "--uri", f"http://127.0.0.1:{port}/")
        finally:
            for p in (receiver, sink):
                p.terminate()
                p.wait(10)
        received = sum(
            json.loads(line).get("count", 0) for line in out.read_text().splitlines() if line
        )

    n = shipped["rows"]
    ship_rate = n / shipped["seconds"]
    plain_rate = plain["rows"] / plain["seconds"]
    print(f"backlog: {seeded['rows']:,} mode-C telemetry rows ({store.split(':')[0]})")
    print(
        f"shipper:  {n:,} events in {shipped['seconds']:.2f} s = {ship_rate:,.0f} events/s, "
        f"{shipped['batches']} batches, {shipped['bytes'] / n:.1f} wire bytes/event, "
        f"peak RSS {shipped['rss_mb']:.0f} MB; receiver decoded {received:,}, "
        f"left {shipped['left']}"
    )
    print(
        f"ceiling:  {plain['rows']:,} events in {plain['seconds']:.2f} s = {plain_rate:,.0f} "
        f"events/s (select + orjson + zstd + POST + delete), "
        f"{plain['bytes'] / plain['rows']:.1f} wire bytes/event, peak RSS {plain['rss_mb']:.0f} MB"
    )
    print(
        f"ratio:    {ship_rate / plain_rate:.2f}x the ceiling (target >= 1.0x); "
        f"drain {shipped['seconds']:.2f} s (target <= 4 s for 100k); "
        f"RSS {shipped['rss_mb']:.0f} MB (target <= 150 MB)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
