# ruff: noqa: ASYNC230, ASYNC240  (small files and ip commands between phases: blocking is fine)
"""Fleet proof: three daemons in three network namespaces sharing one PostgreSQL.

``python bench/fleet/run.py [--ci] [--json FILE] [--keep DIR]`` (as root). What it
builds (``netns.py``, ``pgprivate.py``, ``proxy.py``, ``receiver.py``,
``load.py``), the faults it injects (``plan.py``) and what it checks
(``report.py``) are described in docs/RELIABILITY.md, "Fleet". Prints the
figures as JSON; exit status 0 when every check passed, 1 when one failed, 2
when the machine cannot run it (not root, no namespaces, no PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import netns
import pgprivate
import report
from netns import RECEIVER_ADDR, RECEIVER_NS, Host, gateway, netns_exec
from plan import CI, FULL, Plan

from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage.postgres_conn import lock_key

HERE = Path(__file__).resolve().parent
TMP_PREFIX = "tuiaudit-fleet-"
HOSTS = [Host(1), Host(2), Host(3)]
PG_CUT, RX_CUT, STEPPED = HOSTS[0], HOSTS[2], HOSTS[1]
INGEST_PORT, RECEIVER_PORT = 6061, 8080
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


class DaemonExited(RuntimeError):
    """A daemon exited while starting."""


class Unavailable(Exception):
    """The machine cannot run the fleet (the reason is the message)."""


def unavailable() -> str | None:
    return netns.available() or pgprivate.available()


async def wait_line(proc: asyncio.subprocess.Process, word: bytes, limit_s: float = 60) -> None:
    assert proc.stdout is not None

    async def read() -> None:
        while True:
            line = await proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError(f"process exited before saying {word!r}")
            if word in line:
                return

    await asyncio.wait_for(read(), limit_s)


class Fleet:
    def __init__(self, plan: Plan, tmp: Path) -> None:
        self.plan = plan
        self.tmp = tmp
        self.pg = pgprivate.PrivatePostgres(tmp, listen=gateway("db"), subnet="10.231.1.0/24")
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.pg_ports: dict[str, int] = {}
        self.rx_port = 0
        self.windows: list[dict[str, Any]] = []
        self.events: dict[str, Any] = {}
        self.restarts: dict[str, int] = {h.name: 0 for h in HOSTS}
        self.start_retries: dict[str, int] = {}
        self.t0 = 0.0

    # ------------------------------------------------------------------ setup

    def store_url(self, h: Host) -> str:
        return f"postgresql://postgres@{gateway('db')}:{self.pg_ports[h.name]}/fleet"

    @property
    def direct(self) -> str:
        return self.pg.dsn("fleet")

    async def spawn(self, key: str, argv: list[str], *, env: dict[str, str] | None = None,
                    log: Path | None = None, ready: bytes | None = None) -> None:  # fmt: skip
        err = open(log or self.tmp / f"{key}.log", "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=err, env=env,
            )  # fmt: skip
        finally:
            err.close()
        self.procs[key] = proc
        if ready is not None:
            await wait_line(proc, ready)

    async def setup(self) -> None:
        netns.setup(HOSTS)
        await asyncio.to_thread(self.pg.start)
        conn = await asyncpg.connect(self.pg.dsn(), timeout=10)
        try:
            await conn.execute("CREATE DATABASE fleet")
        finally:
            await conn.close()
        for h in HOSTS:
            self.pg_ports[h.name] = pgprivate.free_port(gateway("db"))
        self.rx_port = pgprivate.free_port(gateway("rx"))
        p = self.plan
        proxy_cfg = {
            "log": str(self.tmp / "proxy-conns.jsonl"),
            "latency-ms": p.latency_ms, "jitter-ms": p.jitter_ms,
            "reset-rate": p.reset_rate, "reset-within": p.reset_within,
            "listeners": [
                {"name": h.name, "listen": [gateway("db"), self.pg_ports[h.name]],
                 "target": ["127.0.0.1", self.pg.port]}
                for h in HOSTS
            ] + [{"name": "rx", "listen": [gateway("rx"), self.rx_port],
                  "target": [RECEIVER_ADDR, RECEIVER_PORT]}],
        }  # fmt: skip
        (self.tmp / "proxy.json").write_text(json.dumps(proxy_cfg))
        await self.spawn("proxy", [sys.executable, str(HERE / "proxy.py"),
                                   str(self.tmp / "proxy.json")], ready=b"proxy-ready")  # fmt: skip
        (self.tmp / "rx").mkdir()
        await self.spawn(
            "receiver",
            [*netns_exec(RECEIVER_NS), sys.executable, str(HERE / "receiver.py"), RECEIVER_ADDR,
             str(RECEIVER_PORT), str(self.tmp / "rx")],
            ready=b"receiver-ready",
        )  # fmt: skip
        await self.cli("migrate")
        hook = f"http://{gateway('rx')}:{self.rx_port}/hook"
        await self.cli("webhooks", "add", hook, "--event", "fleet-hook", "--retries", "12")
        (self.tmp / "config.toml").write_text(
            f"backoff-initial = {p.backoff_initial}\nconnect-timeout = 5.0\n"
            "request-timeout = 15.0\n"
        )
        (self.tmp / "h2.faketime").write_text("+0\n")
        await asyncio.gather(*(self.start_daemon(h) for h in HOSTS))

    async def cli(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tuiaudit", "--store", self.direct, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=clean_env(),
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"tuiaudit {' '.join(args)}: {out.decode(errors='replace')}")

    async def start_daemon(self, h: Host) -> None:
        """Start ``h``'s daemon; like systemd (Restart=on-failure), again if it exits while
        starting (a proxy reset can hit its first store connection), counted."""
        for attempt in range(5):
            try:
                return await self._start_daemon(h)
            except DaemonExited:
                if attempt == 4:
                    raise
                self.start_retries[h.name] = self.start_retries.get(h.name, 0) + 1

    async def _start_daemon(self, h: Host) -> None:
        env = clean_env()
        entry = ["-m", "tuiaudit"]
        if h is STEPPED and FAKETIME_LIB.exists():
            env |= {
                "LD_PRELOAD": str(FAKETIME_LIB),
                "FAKETIME_TIMESTAMP_FILE": str(self.tmp / "h2.faketime"),
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "FAKETIME_CACHE_DURATION": "1",
            }
            entry = [str(HERE / "_stepped.py")]
        p = self.plan
        argv = [*netns_exec(h.ns), sys.executable, *entry, "daemon",
            "--store", self.store_url(h), "--listen", f"{h.addr('cl')}:{INGEST_PORT}",
            "--flags", "audit-log,telemetry,webhooks",
            "--telemetry-uri", f"http://{gateway('rx')}:{self.rx_port}/t/",
            "--interval", str(p.interval), "--jitter", "0",
            "--accept-policy", str(POLICY_VERSION), "--config", str(self.tmp / "config.toml"),
            "--log-level", "info"]  # fmt: skip
        log = self.tmp / f"{h.name}.log"
        offset = log.stat().st_size if log.exists() else 0  # a restart appends
        await self.spawn(h.name, argv, env=env, log=log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if b'"daemon-listening"' in log.read_bytes()[offset:]:
                return
            if self.procs[h.name].returncode is not None:
                raise DaemonExited(f"daemon {h.name} exited:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"daemon {h.name} did not start:\n{log.read_text()[-3000:]}")

    # ----------------------------------------------------------------- faults

    def now(self) -> float:
        return time.time()

    async def at(self, offset: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + offset - time.time()))

    async def partition(self, h: Host, net: str, at: float, seconds: float) -> None:
        await self.at(at)
        start = self.now()
        netns.set_link(h.veth(net), False)
        await asyncio.sleep(seconds)
        netns.set_link(h.veth(net), True)
        kind = "partition-db" if net == "db" else "partition-rx"
        self.windows.append({"fault": kind, "host": h.name, "start": start, "end": self.now()})

    async def pg_restart(self, at: float) -> None:
        await self.at(at)
        start = self.now()
        await asyncio.to_thread(self.pg.restart)
        self.windows.append({"fault": "pg-restart", "host": "*", "start": start,
                             "end": self.now()})  # fmt: skip

    async def clock_step(self, at: float) -> None:
        await self.at(at)
        if not FAKETIME_LIB.exists():
            self.events["clock-step"] = "skipped: libfaketime is not installed"
            return
        (self.tmp / "h2.faketime").write_text(f"+{int(self.plan.clock_step_s)}\n")
        t = self.now()
        self.events["clock-step"] = {"host": STEPPED.name, "seconds": self.plan.clock_step_s,
                                     "mechanism": "libfaketime"}  # fmt: skip
        self.windows.append({"fault": "clock-step", "host": STEPPED.name, "start": t, "end": t})

    async def lock_holder(self, conn: asyncpg.Connection) -> str | None:
        """The host whose session holds the shipper's advisory lock (via the proxy's ports)."""
        key = lock_key("shipper", "public")
        hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
        port = await conn.fetchval(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 "
            "AND l.objid::bigint = $2 AND l.objsubid = 1 AND a.datname = 'fleet'",
            hi, lo,
        )  # fmt: skip
        if port is None:
            return None
        return report.host_of_port(self.tmp / "proxy-conns.jsonl", int(port))

    async def kill_holder(self, at: float) -> None:
        await self.at(at)
        conn = await asyncpg.connect(self.direct, timeout=10)
        try:
            holder = None
            deadline = time.monotonic() + 6 * self.plan.interval + 10
            while holder is None and time.monotonic() < deadline:
                holder = await self.lock_holder(conn)
                if holder is None:
                    await asyncio.sleep(0.01)
            if holder is None:
                self.events["kill"] = "no host held the shipper lock"
                return
            proc = self.procs[holder]
            proc.send_signal(signal.SIGKILL)
            killed_at = self.now()
            await proc.wait()
            new = None
            while time.monotonic() < deadline + 120:
                new = await self.lock_holder(conn)
                if new is not None and new != holder:
                    break
                await asyncio.sleep(0.02)
            moved = self.now() - killed_at if new and new != holder else None
            self.events["kill"] = {"host": holder, "lock-moved-to": new, "lock-move-s": moved}
            self.windows.append({"fault": "kill-9", "host": holder, "start": killed_at,
                                 "end": self.now()})  # fmt: skip
            # A supervisor (systemd Restart=on-failure) starts it again.
            self.restarts[holder] += 1
            await self.start_daemon(next(h for h in HOSTS if h.name == holder))
            self.windows[-1]["end"] = self.now()
            self.events["kill"]["back-listening-s"] = round(self.now() - killed_at, 2)
        finally:
            await conn.close()

    # -------------------------------------------------------------------- run

    async def run(self) -> dict[str, Any]:
        p = self.plan
        load_cfg = {
            "out": str(self.tmp / "load.jsonl"), "rate": p.rate, "per-request": p.per_request,
            "hook-every": p.hook_every, "timeout": 20,
            "hosts": [{"name": h.name, "url": f"http://{h.addr('cl')}:{INGEST_PORT}"}
                      for h in HOSTS],
        }  # fmt: skip
        (self.tmp / "load.json").write_text(json.dumps(load_cfg))
        await self.spawn("load", [sys.executable, str(HERE / "load.py"),
                                  str(self.tmp / "load.json")], ready=b"load-started")  # fmt: skip
        self.t0 = time.time()
        faults = [
            self.partition(PG_CUT, "db", *p.pg_partition),
            self.partition(RX_CUT, "rx", *p.rx_partition),
            self.pg_restart(p.pg_restart_at),
            self.clock_step(p.clock_step_at),
            self.kill_holder(p.kill_at),
        ]
        await asyncio.gather(*faults)
        await self.at(p.load_s)
        load = self.procs["load"]
        load.send_signal(signal.SIGTERM)
        await asyncio.wait_for(load.wait(), 60)
        load_end = self.now()
        drained = await self.drain(p.drain_limit_s)
        figures = await report.collect(self, load_end=load_end, drained=drained)
        return figures

    async def drain(self, limit_s: float) -> float | None:
        """Seconds until no telemetry row and no open webhook delivery is left (None: never)."""
        start = time.monotonic()
        conn = await asyncpg.connect(self.direct, timeout=10)
        try:
            while time.monotonic() - start < limit_s:
                # A delivery still claimed is being sent, or its dispatcher died (the
                # kill -9) and it waits for the claim's lease: reported, not awaited.
                claimed = (
                    ""
                    if self.plan.await_dead_claims
                    else (" AND (claim_until IS NULL OR claim_until <= now())")
                )
                left = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM audit_log WHERE source LIKE 'telemetry:%') + "
                    "(SELECT count(*) FROM webhook_delivery "
                    f" WHERE status NOT IN ('delivered', 'failed'){claimed})"
                )
                if left == 0:
                    return time.monotonic() - start
                await asyncio.sleep(0.5)
        finally:
            await conn.close()
        return None

    async def teardown(self) -> None:
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in list(self.procs.values()):
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUIAUDIT_", "FAKETIME"))}
    env.pop("DO_NOT_TRACK", None)
    env.pop("LD_PRELOAD", None)
    return env


async def fleet_run(plan: Plan, keep: Path | None = None) -> dict[str, Any]:
    reason = unavailable()
    if reason:
        raise Unavailable(reason)
    netns.cleanup()
    pgprivate.cleanup_leftovers(Path(tempfile.gettempdir()), TMP_PREFIX)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
    fleet = Fleet(plan, tmp)
    try:
        await fleet.setup()
        return await fleet.run()
    finally:
        try:
            await fleet.teardown()
        finally:
            await asyncio.to_thread(fleet.pg.remove)
            netns.cleanup()
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                for f in tmp.glob("*"):
                    if f.is_file():
                        shutil.copy(f, keep / f.name)
                if (tmp / "rx").is_dir():
                    shutil.copytree(tmp / "rx", keep / "rx", dirs_exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ci", action="store_true", help="the CI-sized run (under 90 s)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--keep", type=Path, help="copy the logs here before cleaning up")
    ap.add_argument("--check", action="store_true", help="only say whether it can run here")
    args = ap.parse_args(argv)
    if args.check:
        reason = unavailable()
        print(f"fleet: cannot run here: {reason}" if reason else "fleet: can run here")
        return 2 if reason else 0
    try:
        figures = asyncio.run(fleet_run(CI if args.ci else FULL, args.keep))
    except Unavailable as exc:
        print(f"fleet: cannot run here: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(figures, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if all(c["ok"] for c in figures["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
