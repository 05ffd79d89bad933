"""The telemetry shipper: GC, consent hold, instance report, batch loop, back-off (DESIGN §5).

One :class:`Shipper` per daemon. :meth:`Shipper.run` is the background
component (a run at start, then every ``interval``, earlier for a back-off
retry); :meth:`Shipper.run_once` is one run, also used by ``tuiaudit ship``
and the ``ship-now`` command. Runs never overlap in a process (a lock) nor
across processes sharing a store (the store's shipper lease). The batch
loop itself (build ahead, POST, delete, split, quarantine) is
:class:`daemon.batch_sender.BatchSender`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

from tuiaudit import __version__
from tuiaudit.approval import APPROVAL_MANUAL, approved_report, sync_queue, waiting
from tuiaudit.config import Settings
from tuiaudit.consent import consent_state
from tuiaudit.control import PAUSED_PROPERTY
from tuiaudit.daemon.batch_sender import BatchSender
from tuiaudit.daemon.metrics import Metrics
from tuiaudit.daemon.report import prepare_report, send_report
from tuiaudit.daemon.run_log import RecordingSink, log_run
from tuiaudit.daemon.schedule import Clock, Periodic, Sleep, iso
from tuiaudit.daemon.sinks import Sink, check_uri, make_sink, redact_uri
from tuiaudit.holds import bad_uri, settings_hold, store_hold
from tuiaudit.instance import get_instance_id
from tuiaudit.report import clear_pin
from tuiaudit.retention import collect_garbage
from tuiaudit.storage.base import GcResult, Store
from tuiaudit.timeutil import utcnow

if TYPE_CHECKING:
    from tuiaudit.daemon.service import Daemon  # annotation only: the service imports this module

log = logging.getLogger("tuiaudit.shipper")

HOLD_ANOTHER_SHIPPER = "another shipper holds the lease"
LEASE_TTL_S = 30.0


@dataclass
class RunReport:
    """What one telemetry run did (printed by ``tuiaudit ship``, stored as a command result)."""

    started_at: datetime
    ended_at: datetime | None = None
    gc: GcResult | None = None
    held: str | None = None
    report_ok: bool | None = None  # None: not attempted
    batches_sent: int = 0
    batches_failed: int = 0
    rows_sent: int = 0
    bytes_sent: int = 0
    quarantined: int = 0
    awaiting_approval: int | None = None
    """Approval mode (DESIGN §10): bodies still waiting for a person after the run."""
    refused: int = 0
    """Approved bodies not sent: rebuilt, their bytes no longer had the approved SHA-256."""
    error: str | None = None
    error_class: str | None = None
    retry_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """The batch loop was not stopped by a failure (rejected rows were quarantined)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["gc"] = {"age": self.gc.age, "cap": self.gc.cap} if self.gc else None
        for key in ("started_at", "ended_at", "retry_at"):
            value = getattr(self, key)
            out[key] = value.isoformat() if value else None
        out["ok"] = self.ok
        return {k.replace("_", "-"): v for k, v in out.items()}

    def summary(self) -> str:
        parts = []
        if self.gc is not None:
            parts.append(f"gc dropped {self.gc.total} (age {self.gc.age}, cap {self.gc.cap})")
        if self.held:
            parts.append(f"held: {self.held}")
        if self.report_ok is not None:
            parts.append(f"report {'sent' if self.report_ok else 'failed'}")
        parts.append(
            f"{self.batches_sent} batch(es) sent, {self.rows_sent} rows, {self.bytes_sent} bytes"
        )
        if self.quarantined:
            parts.append(f"{self.quarantined} row(s) quarantined")
        if self.refused:
            parts.append(
                f"{self.refused} approved body(ies) refused: rebuilt with other bytes, "
                "a new approval is needed"
            )
        if self.awaiting_approval:
            parts.append(
                f"{self.awaiting_approval} body(ies) waiting for approval (tuiaudit approve)"
            )
        if self.batches_failed:
            parts.append(f"{self.batches_failed} failed attempt(s)")
        if self.error:
            parts.append(f"error ({self.error_class}): {self.error}")
        if self.retry_at:
            parts.append(f"retry at {self.retry_at.isoformat(timespec='seconds')}")
        return "; ".join(parts)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Shipper(Periodic[None]):
    """Ships telemetry rows from ``store`` to ``settings.telemetry_uri``."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        session: aiohttp.ClientSession | None = None,
        instance_id: uuid.UUID | None = None,
        version: str = __version__,
        metrics: Metrics | None = None,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        holder: str | None = None,
        lease_ttl_s: float = LEASE_TTL_S,
    ) -> None:
        super().__init__(clock=clock, sleep=sleep, rng=rng)
        self.store = store
        self.settings = settings
        self.session = session
        self.instance_id = instance_id
        self.version = version
        self.metrics = metrics if metrics is not None else Metrics()
        self.holder = holder or default_holder()
        self.lease_ttl_s = lease_ttl_s
        """A killed shipper blocks others at most this long (SQLite; PostgreSQL frees at once)."""
        self._lease_renewed = 0.0  # time.monotonic() of the last successful renewal
        self._lease_lost = False

        self.last_run: RunReport | None = None
        self.held: str | None = None
        self.config_error: str | None = None
        self.last_error: str | None = None
        self._sink: Sink | None = None
        self.attempts: dict[str, int] = {}
        """Attempts so far of each batch not yet accepted, by batch key (for the ledger)."""

    # ---------------------------------------------------------------- settings

    def update_settings(self, settings: Settings) -> None:
        """New settings (e.g. a reload): a configuration error is shown until they differ."""
        if settings != self.settings:
            self.settings = settings
            self.config_error = None
            self._sink = None

    def _get_sink(self) -> Sink:
        if self._sink is None:
            assert self.settings.telemetry_uri  # checked by hold_reason()
            self._sink = make_sink(
                self.settings.telemetry_uri,
                self.session,
                connect_timeout=self.settings.connect_timeout,
                request_timeout=self.settings.request_timeout,
            )
        return self._sink

    async def hold_reason(self) -> str | None:
        """Why nothing may be sent now (DESIGN §7.1), or None.

        Asked at the start of a run and again right before every POST (the
        report and each batch), so a revoke or a pause stops a run in progress
        before its next request; only the request already on the wire completes.
        """
        s = self.settings
        held = settings_hold(s)  # the words every reader uses (tuiaudit.holds)
        if held is not None or s.telemetry_uri is None:
            return held
        problem = check_uri(s.telemetry_uri)
        if problem:
            return bad_uri(problem)
        if s.telemetry_uri.startswith(("http:", "https:")) and self.session is None:
            return "no HTTP session"
        consent = await consent_state(self.store, self.settings.policy)
        return store_hold(consent, bool(await self.store.get_property(PAUSED_PROPERTY)))

    # ------------------------------------------------------------------- runs

    async def gc(self, now: datetime | None = None) -> GcResult:
        result = await collect_garbage(self.store, self.settings, now or self.clock())
        if result.total:
            log.info(
                "telemetry gc dropped %d rows (age %d, cap %d)",
                result.total,
                result.age,
                result.cap,
            )
        return result

    async def run_once(self, *, jitter: bool = True, report: bool = True) -> RunReport:
        """One run: GC, then (unless held) jitter, the instance report and the batch loop."""
        async with self._lock:
            self.running = True
            self._publish()  # "shipping" in the daemon's state: a stop says it finishes it
            try:
                return await self._run(jitter=jitter, report=report)
            finally:
                self.running = False
                self._publish()

    async def _run(self, *, jitter: bool, report: bool) -> RunReport:
        run_report = RunReport(started_at=self.clock())
        if not await self.store.try_acquire_shipper(self.holder, ttl_s=self.lease_ttl_s):
            run_report.held = HOLD_ANOTHER_SHIPPER
            run_report.ended_at = self.clock()
            self.last_run = run_report
            return run_report
        self._lease_renewed, self._lease_lost = time.monotonic(), False
        keeper = asyncio.create_task(self._keep_lease(), name="tuiaudit-shipper-lease")
        sink: RecordingSink | None = None  # notes each body's SHA-256 for the run's log line
        try:
            run_report.gc = await self.gc(run_report.started_at)
            self.held = run_report.held = await self.hold_reason()
            if run_report.held is None:
                sink = RecordingSink(self._get_sink())
                if jitter and self.settings.jitter > 0:
                    await self.sleep(self.rng.uniform(0.0, self.settings.jitter))
                if self.instance_id is None:
                    self.instance_id = await get_instance_id(self.store)
                if self.settings.approval == APPROVAL_MANUAL:
                    # What waits for a person is brought up to date before anything
                    # leaves: bodies whose rows changed are void, new rows queued.
                    await sync_queue(
                        self.store,
                        self.settings,
                        instance_id=self.instance_id,
                        version=self.version,
                        now=self.clock(),
                        site=self.settings.policy,
                        report=report,
                    )
                if report:
                    run_report.report_ok = await self._send_report(sink, run_report)
                if run_report.held is None:
                    await BatchSender(self, sink, run_report).run()
                if self.settings.approval == APPROVAL_MANUAL:
                    left = waiting(await self.store.approval_list())
                    run_report.awaiting_approval = left.bodies - left.approved
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            try:
                await self.store.release_shipper(self.holder)
            except Exception:  # the lease expires by itself; never mask the run's outcome
                log.warning("could not release the shipper lease", exc_info=True)
            run_report.ended_at = self.clock()
            self.last_run = run_report
            log_run(run_report, sink)
        return run_report

    async def _keep_lease(self) -> None:
        """Renew the lease every third of its TTL while a run goes on (real time: the
        store's lease clock is real, whatever clock the shipper was given)."""
        while not self._lease_lost:
            await asyncio.sleep(self.lease_ttl_s / 3)
            try:
                ok = await self.store.try_acquire_shipper(self.holder, ttl_s=self.lease_ttl_s)
            except Exception as exc:  # store hiccup: the next renewal or renew_lease() decides
                log.warning("could not renew the shipper lease: %s", exc)
                continue
            if ok:
                self._lease_renewed = time.monotonic()
            else:
                self._lease_lost = True

    async def renew_lease(self) -> bool:
        """True while the lease is ours; renews now if the keeper has fallen behind."""
        if self._lease_lost:
            return False
        if time.monotonic() - self._lease_renewed > self.lease_ttl_s / 2:
            if not await self.store.try_acquire_shipper(self.holder, ttl_s=self.lease_ttl_s):
                self._lease_lost = True
                return False
            self._lease_renewed = time.monotonic()
        return True

    async def _send_report(self, sink: Sink, run_report: RunReport) -> bool | None:
        """POST the instance report; a failure is logged and recorded, never raised.

        None when a hold (revoke, pause) came since the run started: not sent.
        """
        assert self.instance_id is not None
        manual = self.settings.approval == APPROVAL_MANUAL
        if manual:
            # Only the approved report's stored body leaves (DESIGN §10).
            rep = approved_report(await self.store.approval_list())
            if rep is None:
                return None  # waiting for a person
        else:
            rep = await prepare_report(
                self.store,
                instance_id=self.instance_id,
                version=self.version,
                now=self.clock(),
                site=self.settings.policy,
            )
            if rep is None:
                return False
        held = await self.hold_reason()
        if held is not None:
            self.stop_held(run_report, held)
            return None
        ok = await send_report(self.store, sink, rep, clock=self.clock)
        if ok and manual:
            await self.store.approval_remove([rep.sha256])
            await clear_pin(self.store, rep)
        return ok

    def stop_held(self, run_report: RunReport, held: str) -> None:
        """A hold came during a run: nothing more is sent, what was built ahead is dropped."""
        self.held = run_report.held = held
        log.info("telemetry run stopped before its next request: %s", held)

    # -------------------------------------------------------------- scheduler

    # The one back-off (Periodic.back_off): both the run loop (a store error, a
    # bug) and the batch sender (a retryable answer) count a failure there.

    async def run(self, stop: asyncio.Event) -> None:
        """The background component: a run at start, then every interval or back-off."""
        await self.store.ledger_mark_interrupted(ended_at=self.clock())
        await super().run(stop)

    def _interval_s(self) -> float:
        return self.settings.interval

    def _is_retry(self, now: datetime, woken: bool) -> bool:
        return (
            not woken
            and self.retry_at is not None
            and self.retry_at <= now
            and (self.next_run_at is None or self.next_run_at > now)
        )

    async def _run_due(
        self, now: datetime, stop: asyncio.Event, *, is_retry: bool, woken: bool
    ) -> None:
        run_report = await self.run_once(jitter=not (is_retry or woken), report=not is_retry)
        if run_report.held == HOLD_ANOTHER_SHIPPER:
            # Another process is shipping (or died holding the lease, which
            # expires): look again after one TTL, without a second report.
            self.retry_at = self.clock() + timedelta(seconds=self.lease_ttl_s)

    def _run_failed(self, started: datetime, exc: Exception) -> None:
        self.last_error = f"{exc.__class__.__name__}: {exc}"
        log.exception("telemetry run failed; retrying with back-off")
        self.back_off(retry_after=None, next_run_at=self.next_run_at)

    # --------------------------------------------------------------- commands

    async def handle_ship_now(self, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """``ship-now``: one run without jitter; its report is the command's result."""
        run_report = await self.run_once(jitter=False)
        self._publish()
        return run_report.to_dict()

    async def handle_gc(self, args: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self._lock:
            result = await self.gc()
        return {"age": result.age, "cap": result.cap, "total": result.total}

    def state_info(self) -> dict[str, Any]:
        """Shipper facts for ``daemon_state.info`` (JSON-safe)."""
        last = self.last_run
        return {
            "telemetry-uri": redact_uri(self.settings.telemetry_uri),
            "held": self.held,
            "config-error": self.config_error,
            "last-error": self.last_error,
            "failures": self.failures,
            "retry-at": iso(self.retry_at),
            "next-run-at": iso(self.next_run_at),
            "shipping": self.running,
            "last-run": last.to_dict() if last else None,
        }


def shipper_component(daemon: Daemon) -> Shipper | None:
    """The daemon's component factory: build the shipper, register its commands.

    Returns None when the ``telemetry`` flag is off (nothing to ship; rows
    already queued stay under ``tuiaudit gc``).
    """
    if not daemon.settings.has("telemetry"):
        return None
    shipper = Shipper(
        daemon.store,
        daemon.settings,
        session=daemon.session,
        instance_id=daemon.instance_id,
        metrics=daemon.metrics,
        clock=daemon.clock,
        holder=f"{daemon.host}:{os.getpid()}:{daemon.daemon_id}",
    )

    def publish(s: Shipper) -> None:
        daemon.next_run_at = (
            s.retry_at
            if s.retry_at and (s.next_run_at is None or s.retry_at < s.next_run_at)
            else s.next_run_at
        )
        daemon.info.update(s.state_info())

    shipper.on_state = publish
    daemon.wake_shipper = shipper.wake  # consent given / resumed elsewhere: run now
    publish(shipper)
    daemon.actions.register("ship-now", shipper.handle_ship_now)
    daemon.actions.register("gc", shipper.handle_gc)
    return shipper
