"""The site's own rules, ``[policy]`` in the settings (DESIGN §3.1), and their consent (§7.1)."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tuiaudit.audit import AuditLog
from tuiaudit.config import ConfigError, load_settings
from tuiaudit.consent import accept, consent_state, record_site
from tuiaudit.events import prepare_backend_event
from tuiaudit.ids import ZERO_UUID
from tuiaudit.policy import POLICY_VERSION, anonymise, explain
from tuiaudit.policy_words import describe_policy
from tuiaudit.site_policy import DEFAULT_SITE, DailyKeys, SitePolicy, site_policy_from_table
from tuiaudit.storage.base import AuditRow

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
PROFILE = uuid.UUID("0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b")


def row(name: str = "create-file", **props: Any) -> AuditRow:
    event = {"name": name, "type": "action", "profile-id": str(PROFILE), "props": props}
    return prepare_backend_event(event, now=NOW).row


def settings_with(tmp_path: Path, toml: str) -> Any:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    return load_settings({"config": str(path)}, environ={})


def test_policy_table_from_toml(tmp_path: Path) -> None:
    s = settings_with(
        tmp_path,
        """
[policy]
profile-id = "daily-hash"
drop-events = ["debug-dump"]
[policy.keep]
"*" = { page-count = "count" }
create-file = { template = "enum" }
[policy.drop]
"*" = ["internal-score"]
""",
    )
    site = s.policy
    assert site.profile_id == "daily-hash" and not site.strict
    assert site.keep_for("create-file") == {"page-count": "count", "template": "enum"}
    assert site.keep_for("other") == {"page-count": "count"}
    assert site.dropped_for("x") == {"internal-score"} and "debug-dump" in site.drop_events
    assert site_policy_from_table(site.table()) == site  # the recorded form reads back
    assert len(site.fingerprint) == 64 and site.fingerprint != DEFAULT_SITE.fingerprint
    assert load_settings({"config": ""}, environ={}).policy == DEFAULT_SITE


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('profile-id = "hash"', "profile-id must be keep, daily-hash or drop"),
        ('strict = "yes"', "strict must be true or false"),
        ('keep = { "*" = { n = "number" } }', "must be count, enum or identifier"),
        ("drop = { x = 3 }", "must be a list of keys"),
        ("sharing = true", "unknown key(s) sharing"),
    ],
)
def test_a_bad_policy_table_is_one_clear_line(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match="policy") as info:
        settings_with(tmp_path, f"[policy]\n{toml}\n")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_keep_relaxes_a_hardening_rule_for_its_keys_only() -> None:
    site = site_policy_from_table(
        {"keep": {"*": {"bytes": "count"}, "create-file": {"template": "enum"}}}
    )
    r = row(bytes=12_345_678_901, other=12_345_678_901, template="blank-a4", note="x")
    assert anonymise(r, site=site).props == {"bytes": 12_345_678_901, "template": "blank-a4"}  # type: ignore[union-attr]
    # The kind's shape and the last scan still apply.
    bad = row(template="ana@corp.example")
    assert anonymise(bad, site=site).props == {}  # type: ignore[union-attr]
    assert anonymise(r).props == {}  # type: ignore[union-attr]  # no site rules: both removed


def test_drop_and_strict() -> None:
    site = site_policy_from_table({"drop-events": ["create-file"], "drop": {"*": ["n"]}})
    assert anonymise(row(), site=site) is None
    ex = explain(row(), site=site)
    assert ex.withheld == "site-policy"
    kept = anonymise(row("open-file", n=1, m=2), site=site)
    assert kept is not None and kept.props == {"m": 2}
    strict = site_policy_from_table({"strict": True, "keep": {"open-file": {"m": "count"}}})
    assert anonymise(row("create-file", m=1), site=strict) is None  # not listed
    kept = anonymise(row("open-file", n=1, m=2), site=strict)
    assert kept is not None and kept.props == {"m": 2}
    rules = {c.field: c.rule_id for c in explain(row("open-file", n=1), site=strict).changes}
    assert rules["props.n"] == "site-strict-key"


def test_profile_id_drop_and_daily_hash(tmp_path: Path) -> None:
    keys = DailyKeys(tmp_path / "keys")
    daily = SitePolicy(profile_id="daily-hash", daily_keys=keys)
    dropped = site_policy_from_table({"profile-id": "drop"})
    r = row()
    a = anonymise(r, site=daily)
    b = anonymise(row(), site=daily)
    assert a is not None and b is not None
    assert a.profile_id == b.profile_id != PROFILE  # one pseudonym per person per day
    assert a.profile_id.version == 8
    other_day = keys.pseudonym(PROFILE, date(2024, 5, 2))
    assert other_day != a.profile_id  # not followed across days
    copy = anonymise(r, site=dropped)
    assert copy is not None and copy.profile_id == ZERO_UUID
    # The key lives outside the store, readable by its owner only, one file per day.
    (key_file,) = (tmp_path / "keys").iterdir()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.name == "daily-hash-2024-05-02.key"  # yesterday's key is gone
    # A second daemon on this machine agrees on the day's key.
    assert DailyKeys(tmp_path / "keys").pseudonym(PROFILE, date(2024, 5, 2)) == other_day


def test_shares_more_than() -> None:
    base = DEFAULT_SITE
    assert site_policy_from_table({"profile-id": "daily-hash"}).shares_more_than(base) == []
    assert site_policy_from_table({"drop-events": ["x"]}).shares_more_than(base) == []
    assert site_policy_from_table({"strict": True}).shares_more_than(base) == []
    kept = site_policy_from_table({"keep": {"*": {"n": "count"}}})
    assert kept.shares_more_than(base) == ["keeps n (count) for *"]
    hashed = site_policy_from_table({"profile-id": "daily-hash"})
    assert base.shares_more_than(hashed) == ["profile-id daily-hash -> keep"]
    dropping = site_policy_from_table({"drop": {"*": ["n"]}})
    assert base.shares_more_than(dropping) == ["no longer drops n for *"]


async def test_site_rules_that_share_more_need_a_new_acceptance(store: Any) -> None:
    await accept(store, POLICY_VERSION)
    assert (await consent_state(store)).ok
    less = site_policy_from_table({"profile-id": "daily-hash"})
    assert (await consent_state(store, less)).ok  # sharing less needs nothing
    more = site_policy_from_table({"keep": {"*": {"n": "count"}}})
    state = await consent_state(store, more)
    assert not state.ok and "keeps n (count)" in state.describe()
    # The daemon records the rules it runs with; status and the dashboard judge them.
    await record_site(store, more)
    assert not (await consent_state(store)).ok
    await accept(store, POLICY_VERSION)  # a person accepts the rules in force
    assert (await consent_state(store)).ok and (await consent_state(store, more)).ok


async def test_audit_log_applies_the_site_rules_and_counts_withheld_events(store: Any) -> None:
    site = site_policy_from_table({"drop-events": ["debug-dump"]})
    audit = AuditLog(store, ["audit-log", "telemetry"], clock=lambda: NOW, site=site)
    await audit.submit_many(
        [
            {"name": "debug-dump", "type": "action"},
            {"name": "bad name!", "type": "action"},
            {"name": "ok", "type": "action"},
        ]
    )
    rows = await store.fetch_rows_after(None, limit=100)
    assert sorted((r.name, r.source) for r in rows) == [
        ("bad name!", "backend"),
        ("debug-dump", "backend"),
        ("ok", "backend"),
        ("ok", "telemetry:backend"),
    ]
    drops = await store.drop_counts()
    assert drops["site-policy"] == 1 and drops["unsafe-name"] == 1


def test_consent_text_tells_the_site_rules() -> None:
    site = site_policy_from_table(
        {"profile-id": "daily-hash", "strict": True, "keep": {"open-file": {"m": "count"}}}
    )
    text = describe_policy(site)
    assert "daily pseudonym" in text and "strict" in text and "m (count)" in text
    assert site.fingerprint[:12] in text
    default = describe_policy()
    assert "pseudonym" in default and "not personal data" not in default
    assert "every other text is removed" not in default.lower()
    for field in ("event-counters", "os-release", "timezone", "instance-id"):
        assert field in default
