"""kill -9 a shipping daemon at random moments over a backlog: nothing lost, duplicates bounded.

    python bench/reliability/kill9.py              # 5 kills over 2,000 events, both back-ends
    python bench/reliability/kill9.py --full       # 50 kills over 100,000 events
    python bench/reliability/kill9.py --backends sqlite --lease-ttl 0   # the verbatim command

A backlog of telemetry rows is seeded; ``python -m tuiaudit daemon`` ships it
to the in-process receiver (de-duplicating by event id, recording every
envelope with its ``Idempotency-Key``). Each cycle starts a daemon, waits for
0..2 envelopes plus a random fraction of a batch time, and kills it with
SIGKILL, so kills land before, during and after POSTs and deletes. A last
daemon drains the rest. Checked: every backlog event arrived (0 lost); no event
came back under a new id; the duplicates are at most one page (``--batch-rows``)
per kill; reported: how many re-sent events came back under another batch key.

On SQLite a killed shipper's lease blocks the next one for one lease TTL
(30 s); ``--lease-ttl`` (default 1 s) runs the same daemon through
``_daemon.py`` with a shorter lease. PostgreSQL's advisory lock is freed when
the connection dies, so it always runs the verbatim command.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

from reliability.harness import (
    daemon_argv,
    keys_by_id,
    log_lines_with,
    receiver,
    run_per_backend,
    seed_backlog,
    start_daemon,
)
from tuiaudit.storage import open_store


async def wait_for(cond: Any, limit_s: float, what: str) -> None:
    """Poll ``cond()`` until true; TimeoutError naming ``what`` after ``limit_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not cond():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.005)


async def kill9_scenario(
    store_url: str,
    workdir: Path,
    *,
    events: int,
    kills: int,
    batch_rows: int,
    lease_ttl: float | None,
    seed: int = 9,
    max_phase_s: float = 0.05,
    realistic: bool = True,
) -> dict[str, Any]:
    """Run the kill loop; return figures.

    Raises AssertionError when an event is lost, an event comes back with a new
    id, a kill costs more than one page of duplicates or rows are left behind.
    ``duplicates_under_another_key`` is returned for the caller to judge (see
    docs/RELIABILITY.md: with realistic rows a restart can move page boundaries).
    """
    rng = random.Random(seed)
    backlog = await seed_backlog(store_url, events, realistic=realistic)
    log = workdir / "daemon.log"
    starts = kills_done = 0
    per_cycle_dups: list[int] = []
    resume_s: list[float] = []
    async with receiver(None) as (state, uri):
        argv = daemon_argv(
            store_url,
            telemetry_uri=uri,
            lease_ttl=None if store_url.startswith("postgresql") else lease_ttl,
            extra=[
                "--batch-rows",
                str(batch_rows),
                "--max-rows",
                str(events * 10),
                "--interval",
                "3600",
            ],
        )
        wanted = set(backlog)
        t0 = time.perf_counter()
        for _ in range(kills):
            if wanted <= state.event_ids.keys():
                break  # drained before every kill was spent
            env0, dup0 = len(state.log), state.duplicate_events
            t_start = time.perf_counter()
            d = await start_daemon(argv, log)
            starts += 1
            await wait_for(lambda e=env0: len(state.log) > e, 120, "the first envelope")  # type: ignore[misc]
            resume_s.append(time.perf_counter() - t_start)
            more = rng.randint(0, 2)
            await wait_for(
                lambda e=env0, m=more: (
                    len(state.log) > e + m  # type: ignore[misc]
                    or wanted <= state.event_ids.keys()
                ),
                120,
                "envelopes",
            )
            await asyncio.sleep(rng.uniform(0.0, max_phase_s))
            await d.kill9()
            kills_done += 1
            per_cycle_dups.append(state.duplicate_events - dup0)
        # The last daemon drains what is left, then stops cleanly.
        dup0 = state.duplicate_events
        d = await start_daemon(argv, log)
        starts += 1
        # every backlog event plus one instance-start event per daemon start
        await wait_for(lambda: len(state.event_ids) >= events + starts, 600, "the drain")
        elapsed = time.perf_counter() - t0
        code = await d.terminate()
        per_cycle_dups.append(state.duplicate_events - dup0)

    async with open_store(store_url) as store:
        stats = await store.queue_stats()
    lost = wanted - state.event_ids.keys()
    mixed = {i for i, keys in keys_by_id(state).items() if i in wanted and len(keys) > 1}
    figures = {
        "backend": store_url.split(":")[0],
        "events": events,
        "kills": kills_done,
        "batch_rows": batch_rows,
        "lost": len(lost),
        "duplicates": state.duplicate_events,
        "duplicate_pages_per_kill": round(
            state.duplicate_events / max(kills_done, 1) / batch_rows, 2
        ),
        "max_duplicates_in_one_cycle": max(per_cycle_dups, default=0),
        "duplicates_under_another_key": len(mixed),
        "key_mismatches": state.key_mismatches,
        "envelopes": len(state.log),
        "pending_left": stats.pending,
        "quarantined": stats.quarantined,
        "resume_s_median": sorted(resume_s)[len(resume_s) // 2] if resume_s else None,
        "seconds": round(elapsed, 1),
        "last_exit": code,
        "log_errors": len(log_lines_with(log, ('"level": "error"', '"level":"error"'))),
    }
    assert not lost, f"{len(lost)} backlog event(s) lost"
    # No event came back under a new id: distinct ids = backlog + one instance-start per start.
    assert len(state.event_ids) == events + starts, (len(state.event_ids), events, starts)
    # At most one page per kill, in total: a restart re-sends the journaled
    # in-flight batch, nothing more.
    assert state.duplicate_events <= kills_done * batch_rows, figures
    assert stats.pending == 0 and stats.quarantined == 0, stats
    assert code == 0, log.read_text()[-3000:]
    return figures


async def main(args: argparse.Namespace) -> int:
    events, kills, batch = (
        (100_000, 50, 1000) if args.full else (args.events, args.kills, args.batch_rows)
    )
    results = await run_per_backend(
        "kill9",
        args.backends,
        lambda url, tmp: kill9_scenario(
            url, tmp, events=events, kills=kills, batch_rows=batch,
            lease_ttl=args.lease_ttl or None, seed=args.seed, realistic=not args.fifo,
        ),
    )  # fmt: skip
    for backend, figures in results:
        if figures["duplicates_under_another_key"]:
            print(
                f"kill9 {backend}: CHECK FAILED: {figures['duplicates_under_another_key']} "
                "re-sent event(s) came back under another Idempotency-Key"
            )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--full", action="store_true", help="50 kills over 100,000 events")
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--batch-rows", type=int, default=100)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--lease-ttl", type=float, default=1.0, help="SQLite lease TTL; 0 = real 30 s")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument(
        "--fifo",
        action="store_true",
        help="backlog rows one ms apart (strict FIFO) instead of day-truncated ingest copies",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
