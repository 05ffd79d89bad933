"""The SQLite store on a full disk: the daemon stays up, ingest answers 503, nothing accepted
is lost, and it accepts again once space returns.

    python bench/reliability/disk_full.py               # a 4 MiB tmpfs (needs root)
    python bench/reliability/disk_full.py --size-mb 8

The store lives on a size-limited tmpfs (``mount -t tmpfs -o size=…``) next to a
ballast file. Clients post padded batches (mode B) until the file system is
full and ingest answers 503 repeatedly; then the ballast is deleted and they
post again until ingest answers 204. Checked: the daemon process never died
and ``/healthz`` answered throughout; every acknowledged event is stored;
``PRAGMA integrity_check`` is ``ok``; the daemon stops cleanly. Without the
right to mount (not root, no tmpfs) the scenario is skipped with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

from reliability.harness import (
    daemon_argv,
    integrity_check,
    post_events,
    print_figures,
    start_daemon,
    stored_ids,
    tmpdir,
)


class MountUnavailable(RuntimeError):
    """This machine will not mount a small file system for us."""


@contextlib.contextmanager
def small_fs(where: Path, size_mb: float) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` at ``where``; MountUnavailable when mounting is refused."""
    where.mkdir(parents=True, exist_ok=True)
    size_k = int(size_mb * 1024)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_k}k,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise MountUnavailable(
            f"cannot mount a {size_mb} MiB tmpfs ({proc.stderr.strip() or proc.returncode}); "
            "run as root on Linux"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


async def disk_full_scenario(workdir: Path, *, size_mb: float = 4.0) -> dict[str, Any]:
    with small_fs(workdir / "fs", size_mb) as fs:
        ballast = fs / "ballast"
        ballast.write_bytes(b"\0" * int(size_mb * 2**20 * 0.5))  # half: the space to return
        store_url = f"sqlite:///{fs}/store.db"
        log = workdir / "daemon.log"
        d = await start_daemon(daemon_argv(store_url), log)
        acked: list[str] = []
        statuses: dict[int, int] = {}
        health: dict[int, int] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:

            async def post() -> int:
                ids = [str(uuid.uuid4()) for _ in range(10)]
                status = await post_events(s, d.url, ids, pad=400)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 204:
                    acked.extend(ids)
                return status

            async def healthz() -> None:
                async with s.get(d.url + "/healthz") as r:
                    health[r.status] = health.get(r.status, 0) + 1

            # Fill: until ingest refused 20 times in a row.
            refused_in_a_row = 0
            posts_to_full = 0
            while refused_in_a_row < 20:
                posts_to_full += 1
                assert posts_to_full < 100_000, "the file system never filled"
                status = await post()
                assert status in (204, 503), status
                refused_in_a_row = refused_in_a_row + 1 if status == 503 else 0
                if status == 503:
                    await healthz()
            acked_when_full = len(acked)
            assert d.alive(), log.read_text()[-3000:]
            # Space returns.
            ballast.unlink()
            resumed_after = 0
            while await post() != 204:
                resumed_after += 1
                assert resumed_after < 200, "ingest did not resume after space returned"
                await asyncio.sleep(0.05)
            for _ in range(5):
                assert await post() == 204
            await healthz()
        code = await d.terminate()
        stored = await stored_ids(store_url)
        integrity = integrity_check(store_url)
        fs_used = sum(f.stat().st_size for f in fs.iterdir())
    missing = set(acked) - stored
    figures = {
        "fs_mb": size_mb,
        "posts_until_full": posts_to_full,
        "acknowledged_events_when_full": acked_when_full,
        "statuses": statuses,
        "healthz": health,
        "daemon_alive_when_full": True,
        "posts_refused_after_space_returned": resumed_after,
        "acknowledged_events": len(acked),
        "lost_acknowledged": len(missing),
        "integrity_check": integrity,
        "daemon_exit": code,
        "fs_bytes_used_at_end": fs_used,
    }
    assert not missing, f"{len(missing)} acknowledged event(s) lost"
    assert integrity == "ok", integrity
    assert code == 0, log.read_text()[-3000:]
    return figures


async def main(args: argparse.Namespace) -> int:
    with tmpdir("disk-full") as tmp:
        try:
            figures = await disk_full_scenario(Path(tmp), size_mb=args.size_mb)
        except MountUnavailable as exc:
            print(f"disk-full: skipped: {exc}")
            return 0
    print_figures("disk-full sqlite", figures)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size-mb", type=float, default=4.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    if os.name != "posix":
        print("disk-full: skipped: needs Linux tmpfs")
        sys.exit(0)
    sys.exit(asyncio.run(main(parse_args())))
