"""Ingest on several cores: worker processes parse, one writer stores (DESIGN §8.2).

With ``workers = N`` (N > 1) the daemon process keeps everything it did
before (the store, its single writer and group commit, the shipper and the
other components) except serving HTTP, which N worker processes do::

    clients ──TCP──▶ daemon: accept ──fd──▶ worker i (aiohttp, the same app:
                      │                        parse, validate, anonymise,
                      │◀── rows, one frame ────  the rows packed)
                      └─ store.insert_packed: group commit, then the answer

Why this shape. SQLite allows one writer, and the store's group commit merges
concurrent requests into one transaction only if they reach ONE writer; so
the workers never open the store. Everything per event that is pure CPU (HTTP
parsing, JSON, validation, the policy, the rows' values) runs in the workers,
in parallel; the daemon process receives each request's rows already as the
store's column values (packed as msgpack bytes in one frame, which the
writer's compiled insert binds as they are: no per-row Python work in this
process) and only inserts them; PostgreSQL's rows come typed (msgspec) for
its binary COPY. A
worker answers 204 only after the daemon answered that frame, and the daemon
answers after COMMIT: a 204 still means stored. A request's rows travel in
one frame and one ``insert`` call, so "both rows or neither" (DESIGN §1) and
all-or-nothing per request hold as in one process.

Connections, not a shared listening socket: the daemon accepts and hands each
connection to the next worker (SCM_RIGHTS over a unix datagram pair). With a
socket shared by every process (or ``SO_REUSEPORT``'s hash) a few long
keep-alive connections often all land on one worker, leaving the other core
idle; round robin spreads them. The daemon keeps the bound port, so port 0,
``EADDRINUSE`` and the port in ``tuiaudit status`` work as before.

``/metrics`` and ``/healthz`` are served by whichever worker has the
connection: healthz pings the store through the daemon; metrics asks the
daemon, which collects every worker's request counters and latency
histogram, adds its own (shipper, archiver) and the store snapshot, and
renders one exposition, so a scrape sees the whole daemon. The max-connection
guard counts per worker.

Stopping (SIGTERM to the daemon): the daemon stops accepting, sends SIGTERM
to every worker and keeps answering their frames; each worker stops reading
new requests, lets in-flight ones finish (``--shutdown-timeout``), reports its
final counters and exits; then the daemon's components stop and the store
closes. A worker whose daemon is gone (kill -9) sees its channel close,
answers 503 to what is in flight (nothing acknowledged that is not stored) and
exits. A worker that exits on its own is replaced after a second.

The writer's share per event (DESIGN §8.2, docs/BENCHMARKS.md "ingest_wrk"):
the frame's packed rows are bound by the compiled bulk insert (without it:
decoded and inserted with ``executemany``) in one transaction per group
(storage/sqlite_writer.py); the event loop of this process only moves
frames. The search indexer yields to this writer
(daemon/search_indexer.py). Both kinds of process run with a higher young-
generation GC threshold while they serve (``GC_THRESHOLD``).

When to raise ``--workers`` (docs/BENCHMARKS.md, "ingest_http --wrk"): the
single process already overlaps two cores in part (SQLite's insert releases
the GIL on the writer thread), and a worker costs an interpreter (~45 MB RSS) and
a copy of each request's rows over a socket. Raise it to 2 when the host has a
second core to spare and ``tuiaudit_http_request_duration_seconds`` grows with
ingest load while the store is not the bottleneck; more workers than cores
only add switching. Measured on two shared cores (load average 3, rounds
alternating both settings): 2 workers took 1.5x the events/s of one process
on SQLite, 0.84x on PostgreSQL (its server shares the two cores); with the
writer-side changes and the default components at load 2, 1.40x on SQLite
(26,725 against 19,104 events/s) and 1.03x on PostgreSQL at load 3-4; with
the packed rows and the compiled one pass (round 6, load 1), 1.44x on SQLite
(50,622 against 35,077 events/s) and 0.99x on PostgreSQL (bound by its
commits' fsyncs). 1 stays the default, so a daemon is one process unless asked (tests, the
demo, small hosts).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import pickle
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web

from tuiaudit.audit import AuditLog
from tuiaudit.config import Settings
from tuiaudit.daemon import guards
from tuiaudit.daemon.clientip import parse_proxies
from tuiaudit.daemon.ingest import IngestContext, build_app, stored_ids
from tuiaudit.daemon.ingest_channel import (
    MAX_FRAME,
    Channel,
    RemoteStore,
    add_counters,
    counters_of,
    decode_pg_rows,
    merged,
)
from tuiaudit.daemon.logs import configure, log_event
from tuiaudit.daemon.metrics import CachedStats, Metrics, render
from tuiaudit.storage.base import (
    Store,
    StoreError,
    WebhookJob,
)

if TYPE_CHECKING:
    from tuiaudit.daemon.service import Daemon

log = logging.getLogger("tuiaudit.daemon.workers")

START_TIMEOUT_S = 60.0
"""How long the daemon waits for a worker to say it is ready."""
RESPAWN_DELAY_S = 1.0
"""A worker that exits on its own is replaced after this: a crash loop costs one start a second."""

# ------------------------------------------------------------ the daemon side


@dataclass(eq=False)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    fds: socket.socket  # connections go here (SCM_RIGHTS)
    channel: Channel
    served: asyncio.Task[None]
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    final: dict[str, Any] | None = None


class WorkerPool:
    """The daemon's side: accept, hand connections out, store the workers' rows."""

    def __init__(
        self,
        daemon: Daemon,
        listen: socket.socket,
        count: int,
        deadline_s: float,
        stats: CachedStats,
    ) -> None:
        self.daemon = daemon
        self.stats = stats
        self.listen = listen
        self.count = count
        self.deadline_s = deadline_s
        self.workers: list[_Worker] = []
        self._turn = 0
        self._insert_params = getattr(daemon.store, "insert_params", None)
        self._stopping = False
        self._replacing: set[asyncio.Task[None]] = set()

    # -- start and stop

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.count):
            self.workers.append(await self._spawn(i))
        waits = [asyncio.ensure_future(w.ready.wait()) for w in self.workers]
        gone = [asyncio.ensure_future(w.channel.closed.wait()) for w in self.workers]
        all_ready: asyncio.Future[Any] = asyncio.gather(*waits)
        await asyncio.wait(
            [all_ready, *gone],
            timeout=START_TIMEOUT_S,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for f in (*waits, *gone):
            f.cancel()
        if not all(w.ready.is_set() for w in self.workers):
            await self.stop()
            raise RuntimeError("an ingest worker process did not start (see its log lines)")
        self.listen.setblocking(False)
        loop.add_reader(self.listen.fileno(), self._accept)
        log_event(log, "ingest-workers-started", workers=self.count)

    async def _spawn(self, index: int) -> _Worker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds_ours, fds_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        config = {
            "settings": self.daemon.settings,
            "index": index,
            "ipc_fd": theirs.fileno(),
            "fds_fd": fds_theirs.fileno(),
            "backend": self.daemon.store.backend,
            "deadline_s": self.deadline_s,
            "log_level": logging.getLogger("tuiaudit").getEffectiveLevel(),
        }
        proc = _start_process(config, (theirs.fileno(), fds_theirs.fileno()))
        theirs.close()
        fds_theirs.close()
        fds_ours.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_FRAME)
        channel = Channel(reader, writer)
        worker = _Worker(index, proc, fds_ours, channel, cast(asyncio.Task[None], None))

        async def handle(kind: str, body: Any) -> Any:
            return await self._handle(worker, kind, body)

        worker.served = asyncio.create_task(channel.serve(handle), name=f"ingest-worker-{index}")
        worker.served.add_done_callback(lambda _: self._exited(worker))
        return worker

    def _exited(self, worker: _Worker) -> None:
        """A worker's channel closed: expected while stopping, else it crashed (replace it).

        Its in-flight requests got no 204 (their connections closed with it); its
        request counters since the last scrape are lost to /metrics."""
        if self._stopping or worker.final is not None:
            return
        log_event(
            log,
            "ingest-worker-exited",
            logging.WARNING,
            worker=worker.index,
            code=worker.proc.poll(),
        )
        task = asyncio.create_task(self._replace(worker))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace(self, old: _Worker) -> None:
        await asyncio.sleep(RESPAWN_DELAY_S)
        if self._stopping:
            return
        old.fds.close()
        old.channel.close()
        if old.proc.poll() is None:
            old.proc.kill()
        await asyncio.to_thread(old.proc.wait)
        new = await self._spawn(old.index)
        self.workers[self.workers.index(old)] = new
        log_event(log, "ingest-worker-replaced", worker=old.index)

    async def stop(self) -> None:
        """Stop accepting; every worker drains and reports; kill what outlives the deadline."""
        self._stopping = True
        for task in list(self._replacing):
            task.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(self.listen.fileno())
        self.listen.close()
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.deadline_s + 5.0
        hurry = asyncio.ensure_future(self.daemon.hurry.wait())  # a second Ctrl+C
        for w in self.workers:
            # The worker's channel closes when it exits; its frames are served meanwhile.
            closed = asyncio.ensure_future(w.channel.closed.wait())
            await asyncio.wait(
                [closed, hurry],
                timeout=max(0.1, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            closed.cancel()
            if hurry.done() and w.proc.poll() is None:
                w.proc.kill()  # stop now: its in-flight requests get no answer (none acknowledged)
            try:
                await asyncio.to_thread(w.proc.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log_event(log, "ingest-worker-killed", logging.WARNING, worker=w.index)
                w.proc.kill()
                await asyncio.to_thread(w.proc.wait)
            w.channel.close()
            w.fds.close()
            await asyncio.gather(w.served, return_exceptions=True)
        hurry.cancel()

    # -- connections

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: log, keep the loop alive
                log_event(log, "accept-failed", logging.WARNING, error=str(exc))
                return
            with conn:
                self._hand_out(conn)

    def _hand_out(self, conn: socket.socket) -> None:
        for _ in range(len(self.workers)):
            worker = self.workers[self._turn % len(self.workers)]
            self._turn += 1
            if worker.channel.closed.is_set() or not worker.ready.is_set():
                continue
            try:
                socket.send_fds(worker.fds, [b"c"], [conn.fileno()])
                return
            except (BlockingIOError, OSError):
                continue
        log_event(log, "connection-dropped", logging.WARNING, reason="no worker can take it")

    # -- asks from the workers

    async def _handle(self, worker: _Worker, kind: str, body: Any) -> Any:
        store = self.daemon.store
        if kind == "packed":  # SQLite: the rows packed, bound from the bytes by the writer
            packed, count, jobs = body
            await store.insert_packed(  # type: ignore[attr-defined]
                packed, count, [WebhookJob(e, n, k, t) for e, n, k, t in jobs]
            )
            return None
        if kind == "rows":
            rows, jobs = body
            webhook_jobs = [WebhookJob(e, n, k, t) for e, n, k, t in jobs]
            if self._insert_params is not None:
                await self._insert_params(rows, webhook_jobs)
            else:
                await store.insert_rows(decode_pg_rows(rows), webhook_jobs)
            return None
        if kind == "drops":
            reason, n = body
            await store.add_drops(reason, n)
            return None
        if kind == "ping":
            await store.ping()
            return None
        if kind == "stored-ids":  # a worker's 409 names the ids already stored
            return [str(i) for i in await stored_ids(store, [uuid.UUID(s) for s in body])]
        if kind == "metrics":
            return await self.exposition()
        if kind == "ready":
            worker.ready.set()
            return None
        if kind == "final":
            worker.final = body
            add_counters(self.daemon.metrics, body)  # the daemon-stopped line counts them
            return None
        raise StoreError(f"unknown ask {kind!r}")

    async def exposition(self) -> bytes:
        """Every process's metrics as one exposition (the workers are asked now)."""
        parts: list[dict[str, Any]] = []
        for w in self.workers:
            if w.final is not None or w.channel.closed.is_set():
                continue  # a finished worker's counters are in the daemon's own already
            with contextlib.suppress(StoreError, TimeoutError):
                parts.append(await asyncio.wait_for(w.channel.ask("counters"), 10.0))
        view = merged(self.daemon.metrics, parts)
        try:
            snapshot = await self.stats.get()
        except StoreError:
            snapshot = None  # counters still render; the store gauges are absent
        body: bytes = render(view, snapshot)
        return body


def _start_process(config: dict[str, Any], fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """A worker: this interpreter, its config pickled on stdin (parent to child only)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuiaudit.daemon.ingest_workers"],
        stdin=subprocess.PIPE,
        pass_fds=fds,
    )
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(config))
    proc.stdin.close()
    return proc


def bind(host: str, port: int) -> socket.socket:
    """The daemon's listening socket (not inherited by the workers)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


@contextlib.asynccontextmanager
async def worker_pool(
    daemon: Daemon, listen: socket.socket, count: int, deadline_s: float, stats: CachedStats
) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(daemon, listen, count, deadline_s, stats)
    try:
        await pool.start()
    except BaseException:
        listen.close()
        raise
    try:
        yield pool
    finally:
        await pool.stop()


# ------------------------------------------------------------ the worker side


async def _ask_stored(channel: Channel, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """A 409's duplicate ids, looked up by the daemon process (which owns the store)."""
    found = await channel.ask("stored-ids", [str(i) for i in ids])
    return {uuid.UUID(s) for s in found}


async def run_worker(config: dict[str, Any]) -> None:
    settings: Settings = config["settings"]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl+C reaches the whole process group: the daemon decides, then SIGTERMs us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ipc = socket.socket(fileno=config["ipc_fd"])
    fds = socket.socket(fileno=config["fds_fd"])
    fds.setblocking(False)
    reader, writer = await asyncio.open_unix_connection(sock=ipc, limit=MAX_FRAME)
    channel = Channel(reader, writer)
    remote = RemoteStore(channel, config["backend"])
    metrics = Metrics()

    async def handle(kind: str, body: Any) -> Any:
        if kind == "counters":
            return counters_of(metrics)
        raise StoreError(f"unknown ask {kind!r}")

    served = asyncio.create_task(channel.serve(handle))
    served.add_done_callback(lambda _: stop.set())  # the daemon is gone: stop too
    store = cast(Store, remote)
    audit = AuditLog(store, settings.flags, site=settings.policy)
    ctx = IngestContext(
        store=store,
        audit=audit,
        settings=settings,
        metrics=metrics,
        trusted_proxies=parse_proxies(settings.trusted_proxies),
        exposition=lambda: channel.ask("metrics"),
        stored_ids=lambda ids: _ask_stored(channel, ids),
    )
    app = build_app(ctx)
    guards.quiet_aiohttp_logs()
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=config["deadline_s"],
        keepalive_timeout=settings.keepalive_timeout,
    )
    await runner.setup()
    assert runner.server is not None
    factory = app[guards.GUARD_KEY].protocol_factory(runner.server)
    opening: set[asyncio.Task[Any]] = set()

    def take() -> None:
        while True:
            try:
                _, fd_list, _, _ = socket.recv_fds(fds, 16, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                stop.set()
                return
            if not fd_list:
                stop.set()  # the daemon closed its end
                return
            for fd in fd_list:
                conn = socket.socket(fileno=fd)
                conn.setblocking(False)
                task = asyncio.ensure_future(loop.connect_accepted_socket(factory, conn))
                opening.add(task)
                task.add_done_callback(opening.discard)

    loop.add_reader(fds.fileno(), take)
    await channel.ask("ready")
    await stop.wait()
    loop.remove_reader(fds.fileno())
    await asyncio.gather(*opening, return_exceptions=True)
    await runner.cleanup()  # finish in-flight requests, close the connections
    with contextlib.suppress(StoreError):
        await channel.ask("final", counters_of(metrics))
    channel.close()
    await asyncio.gather(served, return_exceptions=True)


GC_THRESHOLD = (10_000, 20, 20)
"""The cyclic collector's thresholds while a daemon serves ingest (its process, its workers).

A request's containers (events, rows, dicts) almost all die by reference count,
yet with the default 700 the young generation was collected ~900 times per
worker in 12 s of wrk, and each 20th collection of the middle one took up to
10-26 ms (a request stalled behind it, and in the daemon process the writer
thread waits for the GIL meanwhile). At 10,000 it ran 6-8 times, 3-15 ms each,
for a fifth of the GC time (measured with gc.callbacks in every process). A
one-process daemon: ~2,000 collections (up to 22-31 ms for the oldest
generation) against 11 of 3-6 ms, and its event loop's thread 24.0-27.5
against 27.2-32.4 us of CPU per event (3 alternating pairs, load 1.8-2.9)."""


@dataclass
class _GcUse:
    users: int = 0
    before: tuple[int, int, int] = (700, 10, 10)


_GC = _GcUse()


@contextlib.contextmanager
def ingest_gc() -> Iterator[None]:
    """``GC_THRESHOLD`` for the body (a daemon's serving, a worker's life), then back.

    Several daemons may serve in one process (tests, benchmarks) and end in any
    order: the thresholds in force before the first come back after the last."""
    if not _GC.users:
        _GC.before = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLD)
    _GC.users += 1
    try:
        yield
    finally:
        _GC.users -= 1
        if not _GC.users:
            gc.set_threshold(*_GC.before)


def main() -> int:
    config = pickle.loads(sys.stdin.buffer.read())
    configure(config["log_level"])
    gc.freeze()  # as the daemon does: loaded modules live as long as the process
    with ingest_gc():
        asyncio.run(run_worker(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
