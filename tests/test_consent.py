"""Consent to the telemetry policy (DESIGN §7.1), on both back-ends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tuiaudit.audit import AuditLog
from tuiaudit.consent import ConsentState, accept, consent_state, revoke
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.site_policy import DEFAULT_SITE
from tuiaudit.storage.base import AuditFilter

AT = datetime(2024, 5, 1, 9, 0, 0, 250000, tzinfo=UTC)


def test_state_ok_only_for_the_current_version() -> None:
    assert ConsentState(POLICY_VERSION, POLICY_VERSION, AT).ok
    assert not ConsentState(None, POLICY_VERSION, None).ok
    assert not ConsentState(POLICY_VERSION, POLICY_VERSION + 1, AT).ok
    assert "not accepted" in ConsentState(None, POLICY_VERSION, None).describe()
    assert "shipping holds" in ConsentState(1, 2, AT).describe()


async def test_accept_and_read_back(store: Any) -> None:
    state = await consent_state(store)
    assert state == ConsentState(None, POLICY_VERSION, None) and not state.ok
    await accept(store, POLICY_VERSION, clock=lambda: AT)
    state = await consent_state(store)
    assert state.ok and state.accepted_at == AT
    # Issue 11: the site rules accepted with the version are recorded too (DESIGN §3.1).
    assert await store.get_property("telemetry-policy-accepted") == {
        "version": POLICY_VERSION,
        "at": "2024-05-01T09:00:00.250Z",
        "site": DEFAULT_SITE.table(),
        "site-fingerprint": DEFAULT_SITE.fingerprint,
    }


async def test_accepting_another_version_is_refused(store: Any) -> None:
    with pytest.raises(ValueError, match=f"current version is {POLICY_VERSION}"):
        await accept(store, POLICY_VERSION + 1)
    assert not (await consent_state(store)).ok


async def test_an_older_acceptance_holds_shipping(store: Any) -> None:
    await store.set_property("telemetry-policy-accepted", {"version": 0, "at": "garbage"})
    state = await consent_state(store)
    assert state.accepted_version == 0 and state.accepted_at is None and not state.ok


async def test_revoke_withdraws_and_purges_pending_telemetry(store: Any) -> None:
    await accept(store, POLICY_VERSION)
    audit = AuditLog(store, ["audit-log", "telemetry"])
    await audit.submit_many([{"name": f"e{i}", "type": "action"} for i in range(3)])
    assert await revoke(store) == 3
    assert not (await consent_state(store)).ok
    assert await store.count_rows(AuditFilter(source="telemetry:*")) == 0
    assert await store.count_rows(AuditFilter(source="backend")) == 3  # the audit log stays
    assert (await store.drop_counts())["consent-revoked"] == 3
    assert await revoke(store) == 0
