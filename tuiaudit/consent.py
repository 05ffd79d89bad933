"""Consent to the telemetry policy (SPEC §7.1), kept as a server property.

Nothing is shipped unless the accepted version equals ``POLICY_VERSION``;
raising the version (because the policy would share more) holds shipping until
the new version is accepted. Revoking withdraws consent and deletes every
pending telemetry row, counted as ``consent-revoked`` drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage.base import DROP_CONSENT, Store
from tuiaudit.timeutil import parse_timestamp, to_rfc3339, utcnow

CONSENT_KEY = "telemetry-policy-accepted"


@dataclass(frozen=True, slots=True)
class ConsentState:
    accepted_version: int | None
    current_version: int
    accepted_at: datetime | None

    @property
    def ok(self) -> bool:
        """True when the current policy version has been accepted."""
        return self.accepted_version == self.current_version

    def describe(self) -> str:
        if self.ok:
            return f"policy version {self.current_version} accepted"
        if self.accepted_version is None:
            return (
                f"policy version {self.current_version} not accepted: nothing is sent; "
                "read it with `tuiaudit consent`, accept with `tuiaudit consent --accept`"
            )
        return (
            f"policy version {self.accepted_version} was accepted, but the current one is "
            f"{self.current_version}: shipping holds until `tuiaudit consent --accept`"
        )


async def consent_state(store: Store) -> ConsentState:
    value = await store.get_property(CONSENT_KEY)
    version: int | None = None
    at: datetime | None = None
    if isinstance(value, dict):
        v = value.get("version")
        if type(v) is int:
            version = v
        try:
            at = parse_timestamp(value.get("at"))
        except ValueError:
            at = None
    return ConsentState(version, POLICY_VERSION, at)


async def accept(
    store: Store, version: int, *, clock: Callable[[], datetime] = utcnow
) -> ConsentState:
    """Record acceptance of ``version``; it must be the current policy version."""
    if version != POLICY_VERSION:
        raise ValueError(
            f"policy version {version} cannot be accepted: the current version is "
            f"{POLICY_VERSION}; read it with `tuiaudit consent`, then accept {POLICY_VERSION}"
        )
    at = clock()
    await store.set_property(CONSENT_KEY, {"version": version, "at": to_rfc3339(at)})
    return ConsentState(version, POLICY_VERSION, parse_timestamp(to_rfc3339(at)))


async def revoke(store: Store) -> int:
    """Withdraw consent and delete every pending telemetry row; return how many."""
    await store.delete_property(CONSENT_KEY)
    return await store.purge_telemetry(None, reason=DROP_CONSENT)
