# ruff: noqa: ASYNC230  (the output file is opened once, before the load starts)
"""The fleet's load: backend events POSTed to every host's ingest API, acks recorded.

``python load.py CONFIG.json`` (a process of its own, in the root namespace,
reaching the hosts over the ``cl`` network). Each request carries
``per-request`` events with client-made ids and a unique ``props.seq`` (a
number survives the telemetry policy, so the receiver's copy can be matched to
its event); every ``hook-every``-th event is a webhook event named
``fleet-hook``. One JSON line per request goes to ``out``: host, start and end
time, HTTP status (0: no answer) and the (id, seq) pairs. SIGTERM stops
sending; requests in flight finish (or time out) first.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from typing import Any

import aiohttp

LOAD_NAME, HOOK_NAME = "fleet-load", "fleet-hook"


async def host_loop(
    session: aiohttp.ClientSession,
    cfg: dict[str, Any],
    index: int,
    host: dict[str, str],
    stop: asyncio.Event,
    out: Any,
) -> None:
    period = 1.0 / cfg["rate"]
    per = cfg["per-request"]
    hook_every = cfg["hook-every"]
    seq = index * 1_000_000  # 7 digits: longer numbers are PII to the policy
    inflight: set[asyncio.Task[None]] = set()
    gate = asyncio.Semaphore(cfg.get("concurrency", 8))

    async def one(events: list[dict[str, Any]]) -> None:
        t0 = time.time()
        status = 0
        try:
            async with session.post(
                host["url"] + "/api/audit/submit", json={"events": events}
            ) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = 0
        finally:
            gate.release()
        pairs = [[e["id"], e["props"]["seq"], "webhook" in e] for e in events]
        line = {"host": host["name"], "t0": t0, "t1": time.time(), "status": status, "ev": pairs}
        out.write(json.dumps(line) + "\n")

    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        events = []
        for _ in range(per):
            seq += 1
            hook = seq % hook_every == 0
            ev: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "name": HOOK_NAME if hook else LOAD_NAME,
                "type": "action",
                "props": {"seq": seq},
            }
            if hook:
                ev["webhook"] = True
            events.append(ev)
        await gate.acquire()
        task = asyncio.create_task(one(events))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        next_at += period
        delay = next_at - loop.time()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
        else:
            next_at = loop.time()  # fell behind (a stalled host): do not burst to catch up
    await asyncio.gather(*inflight, return_exceptions=True)


async def main(cfg: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timeout = aiohttp.ClientTimeout(total=cfg.get("timeout", 20), connect=5)
    with open(cfg["out"], "a", buffering=1) as out:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            print("load-started", flush=True)
            await asyncio.gather(
                *(host_loop(session, cfg, i + 1, h, stop, out) for i, h in enumerate(cfg["hosts"]))
            )


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        asyncio.run(main(json.load(fh)))
