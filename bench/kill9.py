"""kill -9 a shipping process many times; count lost events and re-sent duplicates.

    python bench/kill9.py --kills 50 --rows 3000
    python bench/kill9.py --store postgresql://postgres@127.0.0.1/test?schema=k9

The tests run a few kills (tests/test_kill9.py); this runs as many as asked
with the same worker and checks: no event lost, and every event that arrived
twice arrived with the same event id under the same batch key.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from shipper_support import consent, rows
from test_kill9 import WORKER, check_duplicates, kill9, start_worker

from tuiaudit.daemon.receiver import STATE_KEY, make_receiver_app, serve
from tuiaudit.storage import open_store
from tuiaudit.timeutil import utcnow


async def main(store_url: str, n_rows: int, kills: int, batch_rows: int, tmp: Path) -> int:
    rng = random.Random(1)
    page = rows(n_rows, start=utcnow() - timedelta(hours=1))
    async with open_store(store_url) as store:
        await store.insert_rows(page)
        await consent(store)
    app = make_receiver_app(tmp / "received.jsonl", delay=0.002)
    state = app[STATE_KEY]
    runner, port = await serve(app, "127.0.0.1", 0)
    script = tmp / "worker.py"
    script.write_text(WORKER)
    uri = f"http://127.0.0.1:{port}/"
    try:
        for i in range(kills):
            proc = await start_worker(script, store_url, uri, batch_rows)
            await asyncio.sleep(rng.uniform(0.05, 0.8))
            await kill9(proc)
            print(f"kill {i + 1}/{kills}: {len(state.event_ids)}/{n_rows} received", flush=True)
        proc = await start_worker(script, store_url, uri, batch_rows)
        try:
            async with asyncio.timeout(600):
                while len(state.event_ids) < n_rows:  # noqa: ASYNC110 - polling a counter
                    await asyncio.sleep(0.1)
        finally:
            await kill9(proc)
    finally:
        await runner.cleanup()
    lost = n_rows - len(set(state.event_ids) & {str(r.id) for r in page})
    dups = check_duplicates(state)
    print(
        f"{kills} kills: {lost} lost, {dups} duplicate event(s) all under their first batch "
        f"key, {state.duplicate_envelopes} duplicate envelope(s)"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--batch-rows", type=int, default=7)
    ap.add_argument("--store", help="store URL (default: SQLite in a temp dir)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        url = a.store or f"sqlite:///{d}/k9.db"
        sys.exit(asyncio.run(main(url, a.rows, a.kills, a.batch_rows, Path(d))))
