"""A small userspace TCP proxy with latency, jitter and connection resets.

This machine's kernel has no netem qdisc and no iptables, so the fleet's link
faults besides partitions are made here: every chunk is delayed by
``latency ± jitter`` ms (in order, per direction), and ``reset-rate`` of the
connections are reset (RST both ways, SO_LINGER 0) at a random moment in their
first ``reset-within`` seconds. The client side has TCP keepalive and
TCP_USER_TIMEOUT, so a client that vanished (its link taken down) is noticed
and its upstream session closed, as a server would on a real network.

``python proxy.py CONFIG.json``; the config holds ``listeners`` (name, listen
[host, port], target [host, port]) and the fault settings. One JSON line per
connection event goes to ``log`` (the harness maps a PostgreSQL backend's
client port to the host it serves).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import struct
import sys
import time
from typing import Any


class Faults:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.latency = cfg.get("latency-ms", 0) / 1000
        self.jitter = cfg.get("jitter-ms", 0) / 1000
        self.reset_rate = cfg.get("reset-rate", 0.0)
        self.reset_within = cfg.get("reset-within", 10.0)
        self.rng = random.Random(cfg.get("seed", 1))


def _keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 8000)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Proxy:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.faults = Faults(cfg)
        self.log = open(cfg["log"], "a", buffering=1)  # lives as long as the process
        self.resets = 0

    def note(self, **kw: Any) -> None:
        self.log.write(json.dumps({"t": time.time(), **kw}) + "\n")

    async def pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        f = self.faults
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                if not data:
                    break
                delay = at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()

        writer = asyncio.create_task(deliver())
        last = 0.0
        try:
            while True:
                data = await src.read(65536)
                jitter = f.rng.uniform(-f.jitter, f.jitter) if f.jitter else 0.0
                last = max(last, loop.time() + max(0.0, f.latency + jitter))
                queue.put_nowait((last, data))
                if not data:
                    break
            await writer
            if dst.can_write_eof():
                dst.write_eof()
        finally:
            writer.cancel()

    async def handle(
        self, name: str, target: tuple[str, int], cr: asyncio.StreamReader, cw: asyncio.StreamWriter
    ) -> None:
        client = cw.get_extra_info("peername")
        _keepalive(cw.get_extra_info("socket"))
        try:
            ur, uw = await asyncio.wait_for(asyncio.open_connection(*target), 10)
        except (OSError, TimeoutError) as exc:
            self.note(event="upstream-failed", name=name, client=client, error=str(exc))
            _rst(cw)
            return
        local = uw.get_extra_info("sockname")
        self.note(event="open", name=name, client=client, upstream_port=local[1])
        tasks = [asyncio.create_task(self.pump(cr, uw)), asyncio.create_task(self.pump(ur, cw))]
        f = self.faults
        loop = asyncio.get_running_loop()
        reset_at = (
            loop.time() + f.rng.uniform(0.05, f.reset_within)
            if f.rng.random() < f.reset_rate
            else None
        )
        how = "close"
        try:
            while not all(t.done() for t in tasks):
                timeout = None if reset_at is None else max(0.0, reset_at - loop.time())
                await asyncio.wait(
                    [t for t in tasks if not t.done()],
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if any(t.done() and not t.cancelled() and t.exception() for t in tasks):
                    how = "failed"  # one side failed hard: pass it on as a reset, not a FIN
                    break
                if reset_at is not None and loop.time() >= reset_at:
                    how = "reset"
                    self.resets += 1
                    break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (cw, uw):
                if how == "close":
                    w.close()
                else:
                    _rst(w)
            self.note(event=how, name=name, client=client, upstream_port=local[1])

    async def serve(self) -> None:
        servers = []
        for lst in self.cfg["listeners"]:
            name, (lh, lp), (th, tp) = lst["name"], lst["listen"], lst["target"]

            async def on_conn(
                r: asyncio.StreamReader,
                w: asyncio.StreamWriter,
                name: str = name,
                target: tuple[str, int] = (th, tp),
            ) -> None:
                await self.handle(name, target, r, w)

            servers.append(await asyncio.start_server(on_conn, lh, lp, reuse_address=True))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print("proxy-ready", flush=True)
        await stop.wait()
        for s in servers:
            s.close()


def main() -> None:
    with open(sys.argv[1]) as fh:
        cfg = json.load(fh)
    asyncio.run(Proxy(cfg).serve())


if __name__ == "__main__":
    main()
