"""kill -9 the daemon in the middle of a stream of ingest requests: no acknowledged event lost.

    python bench/reliability/ingest_crash.py            # 5 kills, both back-ends
    python bench/reliability/ingest_crash.py --full     # 50 kills

Clients post batches of backend events with their own ids to ``python -m
tuiaudit daemon`` (mode B: each event is a full row plus its telemetry copy,
in one transaction). After a random number of acknowledged (204) requests the
daemon is killed with SIGKILL while the clients keep posting, then restarted.
Checked at the end: every acknowledged event is in the store; full rows and
telemetry copies are equal in number (no half-written request); on SQLite
``PRAGMA integrity_check`` answers ``ok``; a restarted daemon is healthy.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from reliability.harness import (
    daemon_argv,
    integrity_check,
    post_events,
    run_per_backend,
    start_daemon,
)
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter


async def ingest_crash_scenario(
    store_url: str,
    workdir: Path,
    *,
    kills: int,
    clients: int = 4,
    batch: int = 20,
    min_acked: int = 20,
    seed: int = 5,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the loop; return figures (AssertionError when a guarantee breaks)."""
    rng = random.Random(seed)
    log = workdir / "daemon.log"
    argv = daemon_argv(store_url, extra=extra)  # e.g. --workers 2
    acked: list[str] = []
    sent = refused = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for _ in range(kills):
            d = await start_daemon(argv, log)
            target = len(acked) + rng.randint(min_acked, 3 * min_acked) * batch
            done = asyncio.Event()

            async def client(
                url: str = d.url, target: int = target, done: asyncio.Event = done
            ) -> None:
                nonlocal sent, refused
                while True:
                    ids = [str(uuid.uuid4()) for _ in range(batch)]
                    sent += 1
                    status = await post_events(session, url, ids)
                    if status == 204:
                        acked.extend(ids)
                        if len(acked) >= target:
                            done.set()
                    elif status == 0:
                        return  # the daemon is gone: this request is unacknowledged
                    else:
                        refused += 1
                        assert status == 503, status

            tasks = [asyncio.create_task(client()) for _ in range(clients)]
            await asyncio.wait_for(done.wait(), 120)
            await asyncio.sleep(rng.uniform(0.0, 0.02))  # mid-request, mid-transaction
            await d.kill9()
            await asyncio.gather(*tasks)
        d = await start_daemon(argv, log)
        async with session.get(d.url + "/healthz") as r:
            healthy_after = r.status
        await d.terminate()

    integrity = integrity_check(store_url)
    async with open_store(store_url) as store:
        stored = {
            str(r.id) async for r in store.iter_rows(AuditFilter(source="backend", name="load"))
        }
        copies = await store.count_rows(AuditFilter(source="telemetry:backend", name="load"))
    missing = set(acked) - stored
    figures = {
        "backend": store_url.split(":")[0],
        "kills": kills,
        "requests": sent,
        "acknowledged_events": len(acked),
        "stored_events": len(stored),
        "in_flight_stored": len(stored) - len(set(acked) & stored),
        "lost_acknowledged": len(missing),
        "telemetry_copies": copies,
        "answered_503": refused,
        "integrity_check": integrity,
        "healthz_after_restart": healthy_after,
    }
    assert not missing, f"{len(missing)} acknowledged event(s) lost"
    assert copies == len(stored), f"half-written requests: {copies} copies, {len(stored)} rows"
    assert integrity in ("ok", "n/a"), integrity
    assert healthy_after == 200
    return figures


async def main(args: argparse.Namespace) -> int:
    kills = 50 if args.full else args.kills
    await run_per_backend(
        "ingest-crash",
        args.backends,
        lambda url, tmp: ingest_crash_scenario(url, tmp, kills=kills),
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="50 kills")
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--backends", default="sqlite,postgresql")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
