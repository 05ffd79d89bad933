"""One truth about shipping for every reader: the live daemon's settings and the hold now.

A command or the dashboard runs with its own settings (flags, environment,
TOML), which need not be the running daemon's. The daemon records its
effective settings in its state row (``config.record_settings``); readers
take from it every value they were not given themselves (DESIGN §8.1), and
judge "held or active" from the consent and pause in the store *now*, not
from what the daemon's last run found (DESIGN §7.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tuiaudit.config import Settings, with_recorded
from tuiaudit.consent import consent_state
from tuiaudit.control import PAUSED_PROPERTY
from tuiaudit.holds import hold_reason
from tuiaudit.liveness import ALIVE, daemon_liveness
from tuiaudit.storage.base import DaemonState, Store

SETTINGS_KEY = "settings"
"""Where in ``DaemonState.info`` the daemon records its settings."""


def live_daemon(states: list[DaemonState], now: datetime) -> DaemonState | None:
    """The newest daemon whose heartbeat is fresh, or None."""
    return next((s for s in states if daemon_liveness(s, now) == ALIVE), None)


def daemon_settings(settings: Settings, daemon: DaemonState | None) -> Settings:
    """``settings`` completed by what ``daemon`` recorded (values given by the user win)."""
    if daemon is None:
        return settings
    record = daemon.info.get(SETTINGS_KEY)
    return with_recorded(settings, record if isinstance(record, dict) else None)


def uri_is_redacted(daemon: DaemonState | None) -> bool:
    """True when the daemon's recorded telemetry URI hides credentials (never send to it)."""
    if daemon is None:
        return False
    record: Any = daemon.info.get(SETTINGS_KEY) or {}
    return bool(record.get("telemetry-uri-redacted")) if isinstance(record, dict) else False


@dataclass(frozen=True, slots=True)
class Hold:
    """Why nothing is sent now (``reason``), or None when shipping is active."""

    reason: str | None
    paused: bool
    consent_ok: bool

    @property
    def text(self) -> str:
        return "active" if self.reason is None else f"held ({self.reason})"


async def hold_now(store: Store, settings: Settings, *, daemon_alive: bool = True) -> Hold:
    """Whether a run starting now would send, from the store's consent and pause now.

    The same checks, in the same order and words, as the shipper's own hold
    reason (``tuiaudit.holds``).
    """
    consent = await consent_state(store)
    paused = bool(await store.get_property(PAUSED_PROPERTY))
    reason = hold_reason(settings, consent, paused, daemon_alive=daemon_alive)
    return Hold(reason, paused, consent.ok)
