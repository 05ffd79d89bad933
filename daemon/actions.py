"""The actions a running daemon performs on request, and the loop that runs them.

The dashboard or a CLI enqueues a request (``store.enqueue_command(kind,
args)``, protocol in ``tuiaudit.control``); the daemon's ``ActionLoop`` claims
pending rows with ``store.claim_commands``, performs the action registered
for the kind and finishes the row with its result (or ``failed`` and the
error message). Actions are ``async (args: dict) -> dict | None``. This module
registers the actions that need only the store and the domain; the shipper
registers ``ship-now`` and ``gc`` on the same registry (``Daemon.actions``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tuiaudit import approval, consent
from tuiaudit.control import PAUSED_PROPERTY, ControlError, filter_from_json, ids_from_args
from tuiaudit.daemon.logs import log_event
from tuiaudit.storage.base import DROP_PURGE, StoreError

if TYPE_CHECKING:
    # Annotation only: the service builds the Daemon and imports this module.
    from tuiaudit.daemon.service import Daemon

log = logging.getLogger("tuiaudit.daemon.actions")

Action = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class ActionRegistry:
    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, kind: str, action: Action) -> None:
        if kind in self._actions:
            raise ValueError(f"an action for request kind {kind!r} is already registered")
        self._actions[kind] = action

    def kinds(self) -> list[str]:
        return sorted(self._actions)

    def get(self, kind: str) -> Action | None:
        return self._actions.get(kind)


class ActionLoop:
    """Background component: claim and perform requests every ``poll_interval`` seconds."""

    def __init__(self, daemon: Daemon, *, poll_interval: float = 1.0) -> None:
        self.daemon = daemon
        self.poll_interval = poll_interval

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.poll_once()
            except StoreError as exc:  # store briefly down: try again next tick
                log_event(log, "command-poll-failed", logging.WARNING, error=str(exc))
            try:
                await asyncio.wait_for(stop.wait(), self.poll_interval)
            except TimeoutError:
                pass

    async def poll_once(self) -> int:
        """Claim every pending request and perform it; return how many ran."""
        store = self.daemon.store
        commands = await store.claim_commands(self.daemon.daemon_id)
        for cmd in commands:
            action = self.daemon.actions.get(cmd.kind)
            if action is None:
                known = ", ".join(self.daemon.actions.kinds())
                await store.finish_command(
                    cmd.id,
                    ok=False,
                    result={
                        "error": f"unknown command kind {cmd.kind!r}: this daemon runs {known}"
                    },
                )
                log_event(log, "command-unknown", logging.WARNING, id=cmd.id, kind=cmd.kind)
                continue
            try:
                result = await action(dict(cmd.args or {}))
            except (ControlError, ValueError, StoreError) as exc:
                await store.finish_command(cmd.id, ok=False, result={"error": str(exc)})
                log_event(
                    log, "command-failed", logging.WARNING, id=cmd.id, kind=cmd.kind, error=str(exc)
                )
                continue
            except Exception as exc:  # a bug must not kill the loop; the row says what failed
                await store.finish_command(
                    cmd.id, ok=False, result={"error": f"{exc.__class__.__name__}: {exc}"}
                )
                log.exception("command-crashed", extra={"fields": {"id": cmd.id, "kind": cmd.kind}})
                continue
            await store.finish_command(cmd.id, ok=True, result=result or {})
            log_event(log, "command-done", id=cmd.id, kind=cmd.kind)
        return len(commands)


# ------------------------------------------------------------ store/domain actions


def register_store_actions(daemon: Daemon) -> None:
    """The actions that need only the store and the domain."""
    store = daemon.store
    reg = daemon.actions

    async def pause(args: dict[str, Any]) -> dict[str, Any]:
        await store.set_property(PAUSED_PROPERTY, True)
        await daemon.set_paused(True)
        return {"paused": True}

    async def resume(args: dict[str, Any]) -> dict[str, Any]:
        await store.set_property(PAUSED_PROPERTY, False)
        await daemon.set_paused(False)
        return {"paused": False}

    async def accept_policy(args: dict[str, Any]) -> dict[str, Any]:
        version = args.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ControlError('accept-policy needs {"version": <policy version number>}')
        await consent.accept(store, version)
        return {"accepted-version": version}

    async def revoke_policy(args: dict[str, Any]) -> dict[str, Any]:
        return {"purged": await consent.revoke(store)}

    async def release_quarantine(args: dict[str, Any]) -> dict[str, Any]:
        return {"released": await store.release_quarantine(ids_from_args(args))}

    async def purge_quarantine(args: dict[str, Any]) -> dict[str, Any]:
        return {"purged": await store.purge_quarantine(ids_from_args(args))}

    async def purge_pending(args: dict[str, Any]) -> dict[str, Any]:
        # {"filter": {...}} or the filter's fields directly
        flt = filter_from_json(args["filter"] if "filter" in args else args)
        return {"purged": await store.purge_telemetry(flt, reason=DROP_PURGE)}

    async def approve(args: dict[str, Any]) -> dict[str, Any]:
        sha = args.get("sha256")
        if not isinstance(sha, str):
            raise ControlError('approve needs {"sha256": <the body\'s SHA-256>}')
        await approval.approve(store, [sha], now=daemon.clock())
        if daemon.wake_shipper is not None:  # the approved body leaves now, not next run
            daemon.wake_shipper()
        return {"approved": sha}

    async def reject(args: dict[str, Any]) -> dict[str, Any]:
        sha = args.get("sha256")
        if not isinstance(sha, str):
            raise ControlError('reject needs {"sha256": <the body\'s SHA-256>}')
        body, moved = await approval.reject(store, sha)
        return {"rejected": body.sha256, "kind": body.kind, "quarantined": moved}

    reg.register("pause", pause)
    reg.register("resume", resume)
    reg.register("accept-policy", accept_policy)
    reg.register("revoke-policy", revoke_policy)
    reg.register("release-quarantine", release_quarantine)
    reg.register("purge-quarantine", purge_quarantine)
    reg.register("purge-pending", purge_pending)
    reg.register("approve", approve)
    reg.register("reject", reject)
