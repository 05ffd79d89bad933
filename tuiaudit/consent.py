"""Consent to the telemetry policy (DESIGN §7.1), kept as a server property.

Nothing is shipped unless the accepted version equals ``POLICY_VERSION``;
raising the version (because the policy would share more) holds shipping until
the new version is accepted. Revoking withdraws consent and deletes every
pending telemetry row, counted as ``consent-revoked`` drops, the report a
preview pinned, and the approval queue (DESIGN §10).

A headless acceptance (``--accept-policy`` / ``TUIAUDIT_ACCEPT_POLICY``) is
applied at each daemon start, but never over a revoke made after it was last
applied (DESIGN §7.1): both times are recorded, and only an explicit
``tuiaudit consent --accept`` lifts the revoke.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tuiaudit.policy import POLICY_VERSION
from tuiaudit.report import REPORT_PIN_PROPERTY
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy, site_policy_from_table
from tuiaudit.storage.base import DROP_CONSENT, Store
from tuiaudit.timeutil import parse_timestamp, to_rfc3339, utcnow

CONSENT_KEY = "telemetry-policy-accepted"
REVOKED_KEY = "telemetry-policy-revoked"
"""``{"at": ...}``: the last revoke not since lifted by an explicit acceptance."""
SITE_KEY = "telemetry-site-policy"
"""``{"table", "fingerprint"}``: the site rules ([policy]) the daemon last started with,
so status and the dashboard judge consent against them (DESIGN §3.1)."""
SETTING_KEY = "telemetry-policy-setting-applied"
"""``{"version", "at"}``: when ``--accept-policy`` / ``TUIAUDIT_ACCEPT_POLICY`` last accepted."""


@dataclass(frozen=True, slots=True)
class ConsentState:
    accepted_version: int | None
    current_version: int
    accepted_at: datetime | None
    revoked_at: datetime | None = None
    setting_applied_at: datetime | None = None
    """When the accept-policy setting last accepted (None: never)."""
    site_shares_more: tuple[str, ...] = ()
    """Why the site rules in force share more than the accepted ones (DESIGN §3.1)."""

    @property
    def ok(self) -> bool:
        """True when the current policy version, and site rules sharing no more, are accepted."""
        return self.accepted_version == self.current_version and not self.site_shares_more

    @property
    def setting_overruled(self) -> bool:
        """A revoke came after the accept-policy setting was last applied: it may not re-accept."""
        return self.revoked_at is not None and (
            self.setting_applied_at is None or self.revoked_at >= self.setting_applied_at
        )

    def describe(self) -> str:
        if self.ok:
            return f"policy version {self.current_version} accepted"
        if self.accepted_version == self.current_version and self.site_shares_more:
            return (
                "the site rules ([policy]) share more than the accepted ones ("
                + "; ".join(self.site_shares_more)
                + "): shipping holds until `tuiaudit consent --accept`"
            )
        if self.revoked_at is not None:
            applied = (
                f" (last applied at {to_rfc3339(self.setting_applied_at)})"
                if self.setting_applied_at is not None
                else ""
            )
            return (
                f"consent revoked at {to_rfc3339(self.revoked_at)}: nothing is sent; "
                f"--accept-policy / TUIAUDIT_ACCEPT_POLICY{applied} does not re-accept after "
                "a revoke; accept again with `tuiaudit consent --accept`"
            )
        if self.accepted_version is None:
            return (
                f"policy version {self.current_version} not accepted: nothing is sent; "
                "read it with `tuiaudit consent`, accept with `tuiaudit consent --accept`"
            )
        return (
            f"policy version {self.accepted_version} was accepted, but the current one is "
            f"{self.current_version}: shipping holds until `tuiaudit consent --accept`"
        )


def _at(value: object) -> datetime | None:
    if not isinstance(value, dict):
        return None
    try:
        return parse_timestamp(value.get("at"))
    except ValueError:
        return None


def _site(value: object) -> SitePolicy:
    """A site policy recorded as its table; an unreadable one counts as the default."""
    table = value.get("site") if isinstance(value, dict) else None
    if table is None:
        return DEFAULT_SITE
    try:
        return site_policy_from_table(table)
    except ValueError:
        return SitePolicy(strict=True, profile_id="drop")  # shares least: any site is more


async def effective_site(store: Store) -> SitePolicy:
    """The site rules the daemon last started with (``record_site``); default if none."""
    value = await store.get_property(SITE_KEY)
    return _site({"site": value.get("table")} if isinstance(value, dict) else None)


async def record_site(store: Store, site: SitePolicy) -> None:
    """The daemon at start: the site rules in force, for status and the dashboard."""
    await store.set_property(SITE_KEY, {"table": site.table(), "fingerprint": site.fingerprint})


async def consent_state(store: Store, site: SitePolicy | None = None) -> ConsentState:
    """The consent in force; ``site``: the site rules to judge (default: the daemon's)."""
    value = await store.get_property(CONSENT_KEY)
    version: int | None = None
    if isinstance(value, dict):
        v = value.get("version")
        if type(v) is int:
            version = v
    if site is None:
        site = await effective_site(store)
    more = tuple(site.shares_more_than(_site(value))) if value is not None else ()
    return ConsentState(
        version,
        POLICY_VERSION,
        _at(value),
        revoked_at=_at(await store.get_property(REVOKED_KEY)),
        setting_applied_at=_at(await store.get_property(SETTING_KEY)),
        site_shares_more=more,
    )


async def accept(
    store: Store,
    version: int,
    *,
    clock: Callable[[], datetime] = utcnow,
    site: SitePolicy | None = None,
) -> ConsentState:
    """Record acceptance of ``version``; it must be the current policy version.

    The site rules accepted with it (``site``, default the daemon's) are
    recorded too: rules that later share more need a new acceptance.
    """
    if version != POLICY_VERSION:
        raise ValueError(
            f"policy version {version} cannot be accepted: the current version is "
            f"{POLICY_VERSION}; read it with `tuiaudit consent`, then accept {POLICY_VERSION}"
        )
    at = clock()
    if site is None:
        site = await effective_site(store)
    await store.set_property(
        CONSENT_KEY,
        {
            "version": version,
            "at": to_rfc3339(at),
            "site": site.table(),
            "site-fingerprint": site.fingerprint,
        },
    )
    await store.delete_property(REVOKED_KEY)  # an explicit acceptance lifts a revoke
    return await consent_state(store, site)


async def apply_accept_setting(
    store: Store, version: int, *, clock: Callable[[], datetime] = utcnow
) -> tuple[bool, ConsentState]:
    """The daemon's ``--accept-policy VERSION`` at start: (applied?, the state after).

    Not applied when a revoke came after the setting last accepted: a setting
    left in a unit file must not undo a person's revoke. ``ValueError`` when
    ``version`` is not the current one.
    """
    state = await consent_state(store)
    if state.setting_overruled:
        return False, state
    if state.accepted_version is not None and state.site_shares_more:
        # Site rules that share more need a person's acceptance, like a version bump.
        return False, state
    await accept(store, version, clock=clock)
    await store.set_property(SETTING_KEY, {"version": version, "at": to_rfc3339(clock())})
    return True, await consent_state(store)


async def revoke(store: Store, *, clock: Callable[[], datetime] = utcnow) -> int:
    """Withdraw consent and delete every pending telemetry row; return how many.

    The revoke time is recorded first, so a daemon starting meanwhile with
    the accept-policy setting already sees it.
    """
    await store.set_property(REVOKED_KEY, {"at": to_rfc3339(clock())})
    await store.delete_property(CONSENT_KEY)
    await store.delete_property(REPORT_PIN_PROPERTY)  # built ahead: never sent after a revoke
    await store.approval_clear()  # nothing approved before a revoke leaves (DESIGN §10)
    return await store.purge_telemetry(None, reason=DROP_CONSENT)
