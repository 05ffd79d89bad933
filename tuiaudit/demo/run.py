"""``tuiaudit demo``: a throw-away store, the daemon, a flaky local receiver, traffic.

``async with Demo(workdir) as demo:`` starts, in order, the local receiver
(in process, port 0, failing now and then so failures and retries show), the
daemon (in process, port 0, short interval, no jitter, the policy accepted for
the demo, telemetry sent only to that local receiver), and the traffic
generator posting to the daemon's ingest API. Leaving the block stops them in
reverse order; the caller owns ``workdir`` and deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tuiaudit.config import Settings
from tuiaudit.daemon.receiver import STATE_KEY, ReceiverState, make_receiver_app, serve
from tuiaudit.daemon.service import Daemon, running_daemon
from tuiaudit.demo.traffic import TrafficStats, post_traffic
from tuiaudit.policy import POLICY_VERSION


@dataclass(frozen=True)
class DemoSummary:
    seconds: float
    requests: int
    events_ingested: int
    rows_stored: int
    events_shipped: int
    batches_ok: int
    batches_failed: int
    dropped: int
    pending: int
    quarantined: int
    receiver_events: int
    failures_injected: int

    def progress(self) -> str:
        """One line while the demo runs (headless): where it stands now."""
        return (
            f"tuiaudit demo: {self.seconds:.0f} s: {self.events_ingested:,} events ingested, "
            f"{self.events_shipped:,} shipped in {self.batches_ok:,} batches, "
            f"{self.batches_failed:,} failed and retried, {self.pending:,} pending"
        )

    def text(self) -> str:
        return "\n".join(
            (
                f"tuiaudit demo: {self.seconds:.0f} s",
                f"  events ingested   {self.events_ingested:>8,}  ({self.requests:,} requests)",
                f"  rows stored       {self.rows_stored:>8,}  (audit rows and telemetry copies)",
                f"  events shipped    {self.events_shipped:>8,}  in {self.batches_ok:,} batches",
                f"  batches failed    {self.batches_failed:>8,}  "
                f"({self.failures_injected:,} failures injected by the receiver, retried)",
                f"  dropped           {self.dropped:>8,}",
                f"  still pending     {self.pending:>8,}  (quarantined {self.quarantined:,})",
                f"  receiver got      {self.receiver_events:>8,}  distinct events",
            )
        )


class Demo:
    def __init__(
        self,
        workdir: Path,
        *,
        fail_rate: float = 0.2,
        interval: float = 15.0,
        rate: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.store_url = f"sqlite:///{workdir / 'demo.db'}"
        self.fail_rate = fail_rate
        self.interval = interval
        self.rate = rate
        self.rng = random.Random(seed)
        self.daemon: Daemon | None = None
        self.receiver: ReceiverState | None = None
        self.traffic = TrafficStats()
        self.settings: Settings | None = None
        self._stack = contextlib.AsyncExitStack()
        self._stop = asyncio.Event()
        self._started = 0.0

    async def __aenter__(self) -> Demo:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        app = make_receiver_app(
            self.workdir / "received.jsonl",
            fail_rate=self.fail_rate,
            rng=random.Random(self.rng.getrandbits(32)),
        )
        runner, port = await serve(app, "127.0.0.1", 0)
        self._stack.push_async_callback(runner.cleanup)
        self.receiver = app[STATE_KEY]
        self.settings = Settings(
            store=self.store_url,
            listen="127.0.0.1:0",
            flags=("audit-log", "telemetry"),
            telemetry_uri=f"http://127.0.0.1:{port}/api/telemetry",
            interval=self.interval,
            jitter=0.0,
            accept_policy=POLICY_VERSION,
            trusted_proxies=("127.0.0.1",),
            backoff_initial=2.0,
            batch_rows=500,
        )
        self.daemon = await self._stack.enter_async_context(running_daemon(self.settings))
        base = f"http://{self.daemon.listen}"
        task = asyncio.create_task(
            post_traffic(
                base,
                self._stop,
                rate=self.rate,
                rng=random.Random(self.rng.getrandbits(32)),
                stats=self.traffic,
            ),
            name="demo-traffic",
        )
        self._stack.push_async_callback(self._stop_traffic, task)

    async def _stop_traffic(self, task: asyncio.Task[Any]) -> None:
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def summary(self) -> DemoSummary:
        assert self.daemon is not None and self.receiver is not None
        store = self.daemon.store
        metrics = self.daemon.metrics
        queue = await store.queue_stats()
        drops = await store.drop_counts()
        return DemoSummary(
            seconds=asyncio.get_running_loop().time() - self._started,
            requests=self.traffic.requests,
            events_ingested=metrics.events_accepted,
            rows_stored=metrics.events_stored,
            events_shipped=metrics.events_sent,
            batches_ok=metrics.batches_ok,
            batches_failed=metrics.batches_failed,
            dropped=sum(drops.values()),
            pending=queue.pending,
            quarantined=queue.quarantined,
            receiver_events=self.receiver.events,
            failures_injected=self.receiver.failures_injected,
        )

    async def ship_now(self) -> None:
        """Enqueue a ``ship-now`` command (the headless run ends with one)."""
        assert self.daemon is not None
        await self.daemon.store.enqueue_command("ship-now", {})

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
