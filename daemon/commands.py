"""Commands from the ``command`` table (the dashboard's buttons), dispatched by kind.

The dashboard or a CLI calls ``store.enqueue_command(kind, args)``; a running
daemon's ``CommandLoop`` claims pending rows with ``store.claim_commands``,
runs the handler registered for the kind and finishes the row with its
result (or ``failed`` and the error message). Handlers are
``async (args: dict) -> dict | None``. This module registers the kinds that
need only the store and the domain; the shipper registers ``ship-now`` and
``gc`` on the same registry (``daemon.commands.register(kind, handler)``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from tuiaudit.daemon.logs import log_event
from tuiaudit.storage.base import DROP_PURGE, AuditFilter, StoreError

from tuiaudit import consent
from tuiaudit.timeutil import parse_timestamp

if TYPE_CHECKING:
    from tuiaudit.daemon.service import Daemon

log = logging.getLogger("tuiaudit.daemon.commands")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]

# Every kind the dashboard may send (SPEC: TUI actions).
KNOWN_KINDS = (
    "ship-now",
    "pause",
    "resume",
    "gc",
    "accept-policy",
    "revoke-policy",
    "release-quarantine",
    "purge-quarantine",
    "purge-pending",
)

PAUSED_PROPERTY = "shipping-paused"


class CommandError(Exception):
    """A command cannot run as asked; the message goes into the command's result."""


class CommandRegistry:
    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for command {kind!r} is already registered")
        self._handlers[kind] = handler

    def kinds(self) -> list[str]:
        return sorted(self._handlers)

    def get(self, kind: str) -> Handler | None:
        return self._handlers.get(kind)


class CommandLoop:
    """Background component: claim and run commands every ``poll_interval`` seconds."""

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
        """Claim every pending command and run it; return how many ran."""
        store = self.daemon.store
        commands = await store.claim_commands(self.daemon.daemon_id)
        for cmd in commands:
            handler = self.daemon.commands.get(cmd.kind)
            if handler is None:
                known = ", ".join(self.daemon.commands.kinds())
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
                result = await handler(dict(cmd.args or {}))
            except (CommandError, ValueError, StoreError) as exc:
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


# ------------------------------------------------------------------ filters as JSON


def filter_to_json(flt: AuditFilter) -> dict[str, Any]:
    """An ``AuditFilter`` as command args (the inverse of ``filter_from_json``)."""
    out: dict[str, Any] = {}
    for key, value in asdict(flt).items():
        if value is None:
            continue
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        out[key.replace("_", "-")] = value
    return out


def filter_from_json(data: Mapping[str, Any] | None) -> AuditFilter:
    if not data:
        return AuditFilter()
    if not isinstance(data, Mapping):
        raise CommandError("the filter must be a JSON object")
    known = {"source", "type", "name", "profile-id", "text", "since", "until"}
    values: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("_", "-")
        if key not in known:
            raise CommandError(f"unknown filter field {raw_key!r}: use {', '.join(sorted(known))}")
        if value is None:
            continue
        if key == "profile-id":
            try:
                value = uuid.UUID(str(value))
            except ValueError:
                raise CommandError(f"filter profile-id {value!r} is not a UUID") from None
        elif key in ("since", "until"):
            value = parse_timestamp(value)
        elif not isinstance(value, str):
            raise CommandError(f"filter {key} must be a string")
        values[key.replace("-", "_")] = value
    return AuditFilter(**values)


def _ids(args: Mapping[str, Any]) -> list[uuid.UUID] | None:
    ids = args.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list):
        raise CommandError("ids must be a list of UUID strings (or absent for all)")
    try:
        return [uuid.UUID(str(i)) for i in ids]
    except ValueError:
        raise CommandError("ids must be a list of UUID strings") from None


# ----------------------------------------------------------- store/domain handlers


def register_store_commands(daemon: Daemon) -> None:
    """The handlers that need only the store and the domain."""
    store = daemon.store
    reg = daemon.commands

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
            raise CommandError('accept-policy needs {"version": <policy version number>}')
        await consent.accept(store, version)
        return {"accepted-version": version}

    async def revoke_policy(args: dict[str, Any]) -> dict[str, Any]:
        return {"purged": await consent.revoke(store)}

    async def release_quarantine(args: dict[str, Any]) -> dict[str, Any]:
        return {"released": await store.release_quarantine(_ids(args))}

    async def purge_quarantine(args: dict[str, Any]) -> dict[str, Any]:
        return {"purged": await store.purge_quarantine(_ids(args))}

    async def purge_pending(args: dict[str, Any]) -> dict[str, Any]:
        # {"filter": {...}} or the filter's fields directly
        flt = filter_from_json(args["filter"] if "filter" in args else args)
        return {"purged": await store.purge_telemetry(flt, reason=DROP_PURGE)}

    reg.register("pause", pause)
    reg.register("resume", resume)
    reg.register("accept-policy", accept_policy)
    reg.register("revoke-policy", revoke_policy)
    reg.register("release-quarantine", release_quarantine)
    reg.register("purge-quarantine", purge_quarantine)
    reg.register("purge-pending", purge_pending)
