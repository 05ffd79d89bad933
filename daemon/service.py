"""The daemon's lifecycle: nested async context managers, heartbeat, components.

``running_daemon(settings)`` opens, in order and closes in reverse::

    store (migrations) → consent/instance-start → ClientSession → ingest server
    → daemon-state row → background components (heartbeat, command loop, …)

On exit (SIGTERM/SIGINT set the stop event; ``tuiaudit daemon`` wires them):
components get the stop event and ``shutdown_timeout`` seconds to return, then
are cancelled; the server stops accepting and drains in-flight requests
(each one is a single store transaction) within the same deadline; the
daemon-state row gets ``stopped_at``; the session and the store close.

Adding a background component is one line in ``COMPONENTS`` below: a factory
``(daemon) -> object with async run(stop: asyncio.Event)`` returning None when
the component does not apply (e.g. its flag is off).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from tuiaudit import __version__, consent
from tuiaudit.audit import AuditLog
from tuiaudit.config import ConfigError, Settings, record_settings
from tuiaudit.control import PAUSED_PROPERTY
from tuiaudit.daemon import guards, ingest_workers, notify
from tuiaudit.daemon.actions import ActionLoop, ActionRegistry, register_store_actions
from tuiaudit.daemon.archiver import archiver_component
from tuiaudit.daemon.clientip import parse_proxies
from tuiaudit.daemon.ingest import IngestContext, build_app
from tuiaudit.daemon.logs import log_event
from tuiaudit.daemon.metrics import CachedStats, Metrics, store_snapshot
from tuiaudit.daemon.search_indexer import search_indexer_component
from tuiaudit.daemon.shipper import shipper_component
from tuiaudit.daemon.webhook_test import register_webhook_test
from tuiaudit.daemon.webhooks import WebhookDispatcher
from tuiaudit.effective import SETTINGS_KEY
from tuiaudit.instance import get_instance_id, instance_start_event
from tuiaudit.liveness import HEARTBEAT_INTERVAL
from tuiaudit.storage import open_store
from tuiaudit.storage.base import DaemonState, Store, StoreError
from tuiaudit.timeutil import utcnow

log = logging.getLogger("tuiaudit.daemon")

DEFAULT_SHUTDOWN_TIMEOUT = 10.0


class DaemonError(RuntimeError):
    """The daemon cannot start; the message says what to do."""


class Component(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


ComponentFactory = Callable[["Daemon"], Component | None]


@dataclass(eq=False)
class Daemon:
    """The running service, as components and tests see it."""

    settings: Settings
    store: Store
    session: aiohttp.ClientSession
    audit: AuditLog
    instance_id: uuid.UUID
    metrics: Metrics
    clock: Callable[[], datetime]
    daemon_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: datetime = field(default_factory=utcnow)
    host: str = field(default_factory=socket.gethostname)
    port: int = 0
    paused: bool = False
    next_run_at: datetime | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Free-form facts for status/TUI (components add theirs: last error, back-off …)."""
    actions: ActionRegistry = field(default_factory=ActionRegistry)
    """What the daemon performs on request from the control queue (``tuiaudit.control``)."""
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    state_written: bool = False
    wake_shipper: Callable[[], None] | None = None
    hurry: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while stopping: stop now, cancel what is in flight (a second Ctrl+C)."""
    """Start a telemetry run now (set by the shipper component when it runs)."""

    @property
    def listen(self) -> str:
        host = self.settings.listen_host_port[0]
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def request_stop(self) -> None:
        """Begin a clean shutdown (signal handlers call this)."""
        self.stop_event.set()

    async def wait_stopped(self) -> None:
        await self.stop_event.wait()

    def state(self, *, stopped: bool = False) -> DaemonState:
        now = self.clock()
        return DaemonState(
            daemon_id=self.daemon_id,
            pid=os.getpid(),
            host=self.host,
            listen=self.listen,
            started_at=self.started_at,
            heartbeat_at=now,
            flags=list(self.settings.flags),
            paused=self.paused,
            next_run_at=self.next_run_at,
            stopped_at=now if stopped else None,
            info=dict(self.info),
        )

    async def write_state(self, *, stopped: bool = False) -> None:
        await self.store.put_daemon_state(self.state(stopped=stopped))

    async def set_paused(self, paused: bool) -> None:
        self.paused = paused
        await self.write_state()


class Heartbeat:
    """Keeps the daemon-state row fresh and picks up a pause or consent set elsewhere.

    When another process (``tuiaudit consent --accept``, the dashboard) gives
    consent or resumes shipping, the shipper is woken at the next beat instead
    of holding until its next scheduled run (DESIGN §7.1).
    """

    def __init__(self, daemon: Daemon, *, interval: float = HEARTBEAT_INTERVAL) -> None:
        self.daemon = daemon
        self.interval = interval
        self._allowed: bool | None = None  # consent given and not paused, at the last beat

    async def _allowed_now(self) -> tuple[bool, bool]:
        store = self.daemon.store
        paused = bool(await store.get_property(PAUSED_PROPERTY))
        return (await consent.consent_state(store)).ok and not paused, paused

    async def beat(self) -> None:
        allowed, paused = await self._allowed_now()
        if allowed and self._allowed is False and self.daemon.wake_shipper is not None:
            log_event(log, "shipping-allowed", message="consent given or shipping resumed")
            self.daemon.wake_shipper()
        self._allowed = allowed
        self.daemon.paused = paused
        await self.daemon.write_state()

    async def run(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(StoreError):
            self._allowed = (await self._allowed_now())[0]
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
            if stop.is_set():
                break
            try:
                await self.beat()
            except StoreError as exc:
                log_event(log, "heartbeat-failed", logging.WARNING, error=str(exc))
            # systemd's watchdog (WatchdogSec=) watches the event loop, not the
            # store: a store outage is answered 503 and logged, not restarted.
            notify.watchdog()


def _webhooks(daemon: Daemon) -> Component | None:
    if not daemon.settings.has("webhooks"):
        return None
    return WebhookDispatcher(daemon.store, daemon.session, clock=daemon.clock)


# Background components, started in this order once the server listens.
# Add one here (one line): a factory taking the Daemon, returning None to skip.
COMPONENTS: list[ComponentFactory] = [
    Heartbeat,
    ActionLoop,
    shipper_component,
    _webhooks,
    archiver_component,
    search_indexer_component,
]


RESTART_INITIAL_S = 1.0
RESTART_MAX_S = 60.0
HEALTHY_S = 60.0
"""A component that ran this long before crashing restarts after the initial delay again."""


async def _wait_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _supervise(
    name: str,
    component: Component,
    stop: asyncio.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[asyncio.Event, float], Awaitable[None]] = _wait_stop,
) -> None:
    """Run a component; a crash is logged and it restarts with back-off (until stop).

    The back-off doubles per crash (1 s, 2 s … 60 s) and starts over once the
    component has run ``HEALTHY_S`` without crashing (DESIGN §8.2): one bad
    input an hour must not leave it waiting a minute after every crash.
    """
    delay = RESTART_INITIAL_S
    while not stop.is_set():
        started = clock()
        try:
            await component.run(stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            if clock() - started >= HEALTHY_S:
                delay = RESTART_INITIAL_S
            log.exception(
                "component-crashed", extra={"fields": {"component": name, "retry_in_s": delay}}
            )
        await wait(stop, delay)
        delay = min(delay * 2, RESTART_MAX_S)


@contextlib.asynccontextmanager
async def _components(
    daemon: Daemon, factories: Sequence[ComponentFactory], deadline_s: float
) -> AsyncIterator[None]:
    built = [(getattr(f, "__name__", type(f).__name__), f(daemon)) for f in factories]
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_supervise(name, comp, stop), name=f"tuiaudit-{name}")
        for name, comp in built
        if comp is not None
    ]
    log_event(log, "components-started", components=[t.get_name() for t in tasks])
    try:
        yield
    finally:
        stop.set()
        if tasks:
            # Up to the deadline, or until told to hurry (a second Ctrl+C).
            finished = asyncio.ensure_future(asyncio.wait(tasks))
            hurry = asyncio.ensure_future(daemon.hurry.wait())
            await asyncio.wait(
                [finished, hurry], timeout=deadline_s, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in (finished, hurry):
                waiter.cancel()
            await asyncio.gather(finished, hurry, return_exceptions=True)
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                log_event(log, "component-cancelled", logging.WARNING, component=task.get_name())
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def _server(daemon: Daemon, deadline_s: float) -> AsyncIterator[None]:
    settings = daemon.settings
    ctx = IngestContext(
        store=daemon.store,
        audit=daemon.audit,
        settings=settings,
        metrics=daemon.metrics,
        trusted_proxies=parse_proxies(settings.trusted_proxies),
        stats=CachedStats(functools.partial(store_snapshot, daemon.store)),
    )
    if settings.workers > 1:  # HTTP in worker processes, rows stored here
        with ingest_workers.ingest_gc():  # fewer collector pauses (the writer waits on them)
            async with _worker_server(daemon, deadline_s, ctx.stats):
                yield
        return
    with ingest_workers.ingest_gc():
        async with _one_process_server(daemon, ctx, deadline_s):
            yield


@contextlib.asynccontextmanager
async def _one_process_server(
    daemon: Daemon, ctx: IngestContext, deadline_s: float
) -> AsyncIterator[None]:
    settings = daemon.settings
    app = build_app(ctx)
    guards.quiet_aiohttp_logs()  # no header value or body in aiohttp's own log lines
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=deadline_s,
        keepalive_timeout=settings.keepalive_timeout,
    )
    await runner.setup()
    host, port = settings.listen_host_port
    site = guards.GuardedSite(runner, host, port, app[guards.GUARD_KEY], backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise DaemonError(
                f"port in use: {settings.listen} is taken (another tuiaudit daemon? "
                "see `tuiaudit status`), or choose another with --listen"
            ) from None
        raise DaemonError(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from None
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    daemon.port = sockets[0].getsockname()[1] if sockets else port
    try:
        yield
    finally:
        await runner.cleanup()  # stop accepting, drain in-flight requests, close


@contextlib.asynccontextmanager
async def _worker_server(
    daemon: Daemon, deadline_s: float, stats: CachedStats | None
) -> AsyncIterator[None]:
    settings = daemon.settings
    host, port = settings.listen_host_port
    try:
        listen = ingest_workers.bind(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise DaemonError(
                f"port in use: {settings.listen} is taken (another tuiaudit daemon? "
                "see `tuiaudit status`), or choose another with --listen"
            ) from None
        raise DaemonError(f"cannot listen on {settings.listen}: {exc.strerror or exc}") from None
    daemon.port = listen.getsockname()[1]
    assert stats is not None
    try:
        async with ingest_workers.worker_pool(daemon, listen, settings.workers, deadline_s, stats):
            yield
    except RuntimeError as exc:
        raise DaemonError(str(exc)) from None


async def _startup_domain(
    store: Store, settings: Settings, clock: Callable[[], datetime]
) -> tuple[AuditLog, uuid.UUID]:
    await consent.record_site(store, settings.policy)  # the [policy] rules in force (§3.1)
    if settings.accept_policy is not None:
        try:
            applied, state = await consent.apply_accept_setting(
                store, settings.accept_policy, clock=clock
            )
        except ValueError as exc:
            raise ConfigError(f"--accept-policy {settings.accept_policy}: {exc}") from None
        if applied:
            log_event(log, "policy-accepted", version=settings.accept_policy)
        else:  # a revoke came after it, or the site rules share more (DESIGN §7.1)
            log_event(log, "policy-not-reaccepted", logging.WARNING, message=state.describe())
    if settings.do_not_track:
        log_event(
            log,
            "do-not-track",
            logging.WARNING,
            message="DO_NOT_TRACK is set: the telemetry flag is off, nothing will be shared",
        )
    instance_id = await get_instance_id(store)
    audit = AuditLog(store, settings.flags, clock=clock, site=settings.policy)
    await audit.submit_own(  # the daemon's own event: the policy may pass it through
        instance_start_event(
            version=__version__, flags=list(settings.flags), public_uri=settings.public_uri
        )
    )
    return audit, instance_id


@contextlib.asynccontextmanager
async def running_daemon(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utcnow,
    ready: Callable[[Daemon], None] | None = None,
    components: Sequence[ComponentFactory] | None = None,
    stop_event: asyncio.Event | None = None,
    hurry_event: asyncio.Event | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> AsyncIterator[Daemon]:
    """Run the daemon for the body of the ``async with``; see the module docstring."""
    factories = COMPONENTS if components is None else components
    async with contextlib.AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(open_store(settings.store_url))
        except StoreError as exc:
            raise DaemonError(f"cannot open the store {settings.store_url}: {exc}") from None
        audit, instance_id = await _startup_domain(store, settings, clock)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=settings.request_timeout, connect=settings.connect_timeout
                )
            )
        )
        daemon = Daemon(
            settings=settings,
            store=store,
            session=session,
            audit=audit,
            instance_id=instance_id,
            metrics=Metrics(),
            clock=clock,
            started_at=clock(),
            stop_event=stop_event or asyncio.Event(),
            hurry=hurry_event or asyncio.Event(),
        )
        daemon.paused = bool(await store.get_property(PAUSED_PROPERTY))
        daemon.info.update(
            {
                "version": __version__,
                "instance-id": str(instance_id),
                "do-not-track": settings.do_not_track,
                # Every command and the dashboard read the live daemon's settings
                # for what they were not given (DESIGN §8.1); secrets redacted.
                SETTINGS_KEY: record_settings(settings),
            }
        )
        register_store_actions(daemon)
        register_webhook_test(daemon)  # the dashboard's t on the Webhooks tab
        # Exit order (reverse): components stop, the server drains, then the
        # state row says stopped, then the session and the store close.
        stack.push_async_callback(_final_state, daemon)
        await stack.enter_async_context(_server(daemon, shutdown_timeout))
        await daemon.write_state()
        daemon.state_written = True
        await stack.enter_async_context(_components(daemon, factories, shutdown_timeout))
        log_event(
            log,
            "daemon-listening",
            port=daemon.port,
            listen=daemon.listen,
            daemon_id=daemon.daemon_id,
            flags=list(settings.flags),
            store=store.backend,
        )
        notify.ready(f"listening on {daemon.listen}")
        if ready is not None:
            ready(daemon)
        yield daemon
        notify.stopping()
        log_event(log, "daemon-stopping", daemon_id=daemon.daemon_id)
    log_event(
        log,
        "daemon-stopped",
        daemon_id=daemon.daemon_id,
        events_accepted=daemon.metrics.events_accepted,
        rows_stored=daemon.metrics.events_stored,
    )


async def _final_state(daemon: Daemon) -> None:
    if not daemon.state_written:
        return  # never listened: there is no state row to close
    try:
        await daemon.write_state(stopped=True)
    except StoreError as exc:
        log_event(log, "final-state-failed", logging.WARNING, error=str(exc))


__all__ = [
    "COMPONENTS",
    "Component",
    "ComponentFactory",
    "Daemon",
    "DaemonError",
    "Heartbeat",
    "running_daemon",
]
