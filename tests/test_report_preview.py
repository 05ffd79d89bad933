"""The instance report is part of the preview (DESIGN §5 step 3, §5.2).

``tuiaudit preview`` (the real CLI) and the dashboard show the report the
shipper posts next, byte for byte: its SHA-256 is the SHA-256 of the body the
loopback receiver gets, even when counters move between the preview and the
run (the preview pins it). Its counters only count names the policy lets
through, and the consent text lists every field it holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
from shipper_support import ScriptedReceiver, consent, settings_for, telemetry_row
from tui_support import make_row

from tuiaudit import __version__
from tuiaudit.config import Settings
from tuiaudit.consent import revoke
from tuiaudit.daemon.shipper import Shipper
from tuiaudit.instance import get_instance_id
from tuiaudit.policy import anonymise
from tuiaudit.policy_words import describe_policy
from tuiaudit.report import (
    REPORT_FIELDS,
    REPORT_PIN_PROPERTY,
    build_report,
    next_report,
)
from tuiaudit.site_policy import site_policy_from_table
from tuiaudit.storage import open_store
from tuiaudit.timeutil import utcnow
from tuiaudit.tui.app import AuditApp

UNSAFE_NAME = "password-reset for ana@corp.example"


async def cli_json(*argv: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tuiaudit",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    value: dict[str, Any] = json.loads(out)
    return value


def today_rows(n: int, *, start: int = 0) -> list[Any]:
    now = utcnow()
    return [telemetry_row(start + i, created_at=now, name=f"event-{i % 2}") for i in range(n)]


async def test_preview_report_sha256_is_the_sha256_of_what_the_receiver_got(
    store_url: str,
) -> None:
    async with open_store(store_url) as store:
        # A row an older version queued with a name the policy now withholds.
        unsafe = replace(telemetry_row(99, created_at=utcnow()), name=UNSAFE_NAME)
        await store.insert_rows([*today_rows(4), unsafe])
        await consent(store)
    preview = await cli_json("preview", "--json", "--store", store_url)
    report = preview["report"]
    body = report["body"].encode()
    assert report["sha256"] == hashlib.sha256(body).hexdigest()
    assert report["bytes"] == len(body) and report["pinned-at"] is not None
    stats = report["stats"]
    assert stats == orjson.loads(body)["stats"]
    assert stats["event-counters"] == {"event-0": 2, "event-1": 2}
    assert stats["total-events"] == 4 and stats["pending-telemetry-rows"] == 5
    assert UNSAFE_NAME not in report["body"]

    async with open_store(store_url) as store:
        await store.insert_rows(today_rows(3, start=10))  # the counters move meanwhile
        async with ScriptedReceiver().serve() as rx, aiohttp.ClientSession() as session:
            shipper = Shipper(store, settings_for(rx.url), session=session, version=__version__)
            rr = await shipper.run_once(jitter=False)
        assert rr.report_ok is True
        [sent] = rx.report_requests()
        assert sent.body == body
        assert hashlib.sha256(sent.body).hexdigest() == report["sha256"]
        assert sent.headers["Idempotency-Key"] == report["idempotency-key"]
        ledger = [e for e in await store.ledger_recent() if e.kind == "report"]
        assert [e.body_sha256 for e in ledger] == [report["sha256"]]
        # Sent: the pin is gone, the next report is built from the store as it is now.
        assert await store.get_property(REPORT_PIN_PROPERTY) is None
    again = await cli_json("preview", "--json", "--store", store_url)
    assert again["count"] == 0 and again["report"]["sha256"] != report["sha256"]
    assert again["report"]["stats"]["pending-telemetry-rows"] == 0


async def test_preview_raw_report_is_the_exact_body(store_url: str) -> None:
    async with open_store(store_url) as store:
        await store.insert_rows(today_rows(2))
    shown = await cli_json("preview", "--json", "--store", store_url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tuiaudit",
        "preview",
        "--raw-report",
        "--store",
        store_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    # The first preview pinned it: the second shows the same bytes.
    assert out == shown["report"]["body"].encode()
    assert hashlib.sha256(out).hexdigest() == shown["report"]["sha256"]


async def test_the_report_holds_exactly_the_listed_fields_and_consent_lists_them(
    store: Any,
) -> None:
    report = await build_report(store, instance_id=uuid.uuid4(), version="1.0", now=utcnow())
    envelope = orjson.loads(report.body)
    assert list(envelope) == ["type", "version", "instance-id", "stats"]
    assert list(envelope["stats"]) == [name for name, _ in REPORT_FIELDS]
    words = describe_policy()
    for name, _ in REPORT_FIELDS:  # "- name: ..." or "- stats.name: ..."
        assert re.search(rf"- (stats\.)?{re.escape(name)}: ", words), name


async def test_counters_skip_withheld_names(store: Any) -> None:
    unsafe = replace(telemetry_row(0, created_at=utcnow()), name=UNSAFE_NAME)
    long_name = replace(telemetry_row(1, created_at=utcnow()), name="x" * 300)
    await store.insert_rows([unsafe, long_name, *today_rows(1, start=5)])
    report = await build_report(store, instance_id=uuid.uuid4(), version="1.0", now=utcnow())
    assert report.stats["event-counters"] == {"event-0": 1}
    assert report.stats["total-events"] == 1
    assert UNSAFE_NAME.encode() not in report.body and b"xxxxxxxx" not in report.body


async def test_counters_skip_names_the_site_policy_drops(store: Any) -> None:
    await store.insert_rows(today_rows(4))  # event-0 and event-1, twice each
    site = site_policy_from_table({"drop-events": ["event-1"]})
    report = await build_report(
        store, instance_id=uuid.uuid4(), version="1.0", now=utcnow(), site=site
    )
    assert report.stats["event-counters"] == {"event-0": 2}


async def test_a_pin_holds_for_its_day_version_and_instance_only(store: Any) -> None:
    instance = uuid.uuid4()
    now = utcnow()
    pinned = await next_report(store, instance_id=instance, version="1.0", now=now, pin=True)
    assert pinned.pinned_at is not None
    await store.insert_rows(today_rows(2))
    same = await next_report(store, instance_id=instance, version="1.0", now=now, pin=False)
    assert same.body == pinned.body  # counters moved, the pin holds
    for other in (
        {"instance_id": instance, "version": "1.1", "now": now},
        {"instance_id": uuid.uuid4(), "version": "1.0", "now": now},
        {"instance_id": instance, "version": "1.0", "now": now + timedelta(days=1)},
    ):
        fresh = await next_report(store, pin=False, **other)
        assert fresh.pinned_at is None and fresh.body != pinned.body
    # A pin of another day is replaced by a preview of today.
    tomorrow = now + timedelta(days=1)
    new = await next_report(store, instance_id=instance, version="1.0", now=tomorrow, pin=True)
    assert new.pinned_at is not None and new.body != pinned.body


async def test_revoke_drops_the_pinned_report(store: Any) -> None:
    await next_report(store, instance_id=uuid.uuid4(), version="1.0", now=utcnow(), pin=True)
    assert await store.get_property(REPORT_PIN_PROPERTY) is not None
    await revoke(store)
    assert await store.get_property(REPORT_PIN_PROPERTY) is None


async def test_next_batch_tab_shows_the_report_sha256(store_url: str) -> None:
    async with open_store(store_url) as store:
        instance_id = await get_instance_id(store)
        full = [make_row(i) for i in range(3)]
        await store.insert_rows(full + [c for c in map(anonymise, full) if c is not None])
        # What the shipper would post next (pinned, so the dashboard must show this one).
        expected = await next_report(
            store, instance_id=instance_id, version=__version__, now=utcnow(), pin=True
        )
        app = AuditApp(store, settings=Settings(), refresh_interval=None)
        async with app.run_test(size=(120, 40)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            await pilot.press("3")
            await app.workers.wait_for_complete()
            await pilot.pause()
            shown = str(app.query_one("#batch-report").render())
    assert expected.sha256 in shown
    assert expected.body.decode() in shown.replace("\n", "")
