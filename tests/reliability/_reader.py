# ruff: noqa: ASYNC240  (a stat() per loop is the point: no await in the way)
"""A hard-polling dashboard-like reader: ``_reader.py STORE_URL STOP_FILE``.

Opens the store read-only and loops, with no pause, over the dashboard's
queries (newest page, honest count, change token) until STOP_FILE exists;
then prints one JSON line: operations done and errors seen (by kind).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter, StoreError


async def main(url: str, stop_file: str) -> dict[str, object]:
    ops = 0
    errors: dict[str, int] = {}
    busy = 0
    tokens = set()
    async with open_store(url, read_only=True) as store:
        print("ready", flush=True)
        while not os.path.exists(stop_file):
            for op in (
                lambda: store.fetch_rows(limit=500),
                lambda: store.count_rows(AuditFilter(source="telemetry:*"), limit=10_000),
                store.change_token,
            ):
                try:
                    out = await op()
                    if isinstance(out, int) and op is store.change_token:
                        tokens.add(out)
                except StoreError as exc:
                    kind = type(exc).__name__
                    errors[kind] = errors.get(kind, 0) + 1
                    if "busy" in str(exc).lower() or "locked" in str(exc).lower():
                        busy += 1
                ops += 1
    return {"ops": ops, "errors": errors, "busy_or_locked": busy, "tokens_seen": len(tokens)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))), flush=True)
