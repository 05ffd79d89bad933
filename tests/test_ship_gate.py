"""Consent and pause are asked before every POST; the off switches (DESIGN §7.1).

A revoke or a pause that returns while a batch is on the wire of a slow
loopback receiver stops the run before its next request, although batches
were already built ahead; ``--accept-policy`` / ``TUIAUDIT_ACCEPT_POLICY``
never re-accepts over a later revoke; ``DO_NOT_TRACK`` means "off" for any
value but empty or ``0``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from shipper_support import (
    Received,
    ScriptedReceiver,
    consent,
    rows,
    settings_for,
    shipper_for,
)

from tuiaudit import batch as batch_module
from tuiaudit.batch import Batch
from tuiaudit.codec import decode_envelope, kw
from tuiaudit.config import load_settings
from tuiaudit.consent import accept, consent_state, revoke
from tuiaudit.daemon.service import running_daemon
from tuiaudit.daemon.shipper import PAUSED_PROPERTY
from tuiaudit.holds import PAUSED
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage import open_store

BATCH_ROWS = 5
ROWS = 30  # six batches


class SlowReceiver(ScriptedReceiver):
    """Holds each events request until the test releases it (a slow receiver it controls)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Received(request.path, dict(request.headers), await request.read())
        self.requests.append(rec)
        if rec.json.get("type") == "telemetry-events":
            self.arrived.set()
            await self.release.wait()
        return web.Response(status=204)


class BuildSpy:
    """Counts the batches the sender built; ``enough`` is set once ``n`` exist."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
        self.built: list[Batch] = []
        self.enough = asyncio.Event()
        loop = asyncio.get_running_loop()
        real = batch_module.plan_batches

        def spy(*args: Any, **kwargs: Any) -> Iterator[Batch]:
            for batch in real(*args, **kwargs):  # runs in a worker thread
                self.built.append(batch)
                if len(self.built) >= n:
                    loop.call_soon_threadsafe(self.enough.set)
                yield batch

        # The one cut of the queue (tuiaudit.batch.queue_batches) plans here.
        monkeypatch.setattr(batch_module, "plan_batches", spy)


def shipped_ids(rx: ScriptedReceiver) -> list[uuid.UUID]:
    return [e[kw("id")] for r in rx.events_requests() for e in decode_envelope(r.body)["events"]]


async def start_run_and_hold_the_first_batch(
    rx: SlowReceiver, sh: Any, spy: BuildSpy
) -> asyncio.Task[Any]:
    run = asyncio.create_task(sh.run_once(jitter=False))
    await asyncio.wait_for(rx.arrived.wait(), 30)
    # Batch 1 is on the wire; batch 2 waits in the queue, batch 3 is built.
    await asyncio.wait_for(spy.enough.wait(), 30)
    return run


async def test_revoke_during_a_run_stops_before_the_next_request(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.insert_rows(rows(ROWS))
    await consent(store)
    spy = BuildSpy(monkeypatch, 3)
    async with SlowReceiver().serve() as rx:
        async with shipper_for(store, settings_for(rx.url, batch_rows=BATCH_ROWS)) as sh:
            run = await start_run_and_hold_the_first_batch(rx, sh, spy)
            purged = await revoke(store)
            started_before_revoke_returned = len(rx.requests)
            rx.release.set()  # the request on the wire completes
            rr = await asyncio.wait_for(run, 30)
    assert purged == ROWS  # the batch on the wire was still pending too
    assert len(spy.built) >= 3
    # No request started after the revoke returned: only the report and batch 1.
    assert len(rx.requests) == started_before_revoke_returned == 2
    assert len(rx.events_requests()) == 1
    assert rr.held == f"policy v{POLICY_VERSION} not accepted: `tuiaudit consent --accept`"
    assert rr.batches_sent == 1 and rr.error is None
    assert (await store.queue_stats()).pending == 0
    assert sh.state_info()["held"] == rr.held


async def test_pause_during_a_run_stops_before_the_next_request_and_resume_finishes(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued = rows(ROWS)
    await store.insert_rows(queued)
    await consent(store)
    spy = BuildSpy(monkeypatch, 3)
    async with SlowReceiver().serve() as rx:
        async with shipper_for(store, settings_for(rx.url, batch_rows=BATCH_ROWS)) as sh:
            run = await start_run_and_hold_the_first_batch(rx, sh, spy)
            await store.set_property(PAUSED_PROPERTY, True)  # what the pause command does
            started_before_pause_returned = len(rx.requests)
            rx.release.set()
            rr = await asyncio.wait_for(run, 30)
            assert len(rx.requests) == started_before_pause_returned == 2
            assert rr.held == PAUSED and rr.batches_sent == 1
            assert (await store.queue_stats()).pending == ROWS - BATCH_ROWS
            # Paused: a new run sends nothing either.
            assert (await sh.run_once(jitter=False)).held == PAUSED
            assert len(rx.requests) == 2
            # Resumed: the rest goes, in order, each row once.
            await store.set_property(PAUSED_PROPERTY, False)
            rr = await asyncio.wait_for(sh.run_once(jitter=False), 30)
    assert rr.held is None and rr.ok
    assert shipped_ids(rx) == [r.id for r in queued]
    assert (await store.queue_stats()).pending == 0


async def test_revoke_after_the_run_started_stops_the_report_too(store: Any) -> None:
    """A hold that comes between the run's start and the report: nothing is posted."""
    await store.insert_rows(rows(3))
    await consent(store)
    async with ScriptedReceiver().serve() as rx:
        async with shipper_for(store, settings_for(rx.url)) as sh:
            real_gc = sh.gc

            async def gc_then_revoke(now: Any = None) -> Any:  # the revoke lands mid-run
                result = await real_gc(now)
                await revoke(store)
                return result

            sh.gc = gc_then_revoke  # type: ignore[method-assign]
            rr = await sh.run_once(jitter=False)
    # The run's own start check passed before the revoke; the per-POST check did not.
    assert rr.held == f"policy v{POLICY_VERSION} not accepted: `tuiaudit consent --accept`"
    assert rx.requests == []


# ------------------------------------------------------- accept-policy setting


async def test_accept_policy_setting_never_overrides_a_later_revoke(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {"TUIAUDIT_ACCEPT_POLICY": str(POLICY_VERSION)}
    settings = load_settings({"store": store_url, "listen": "127.0.0.1:0"}, environ=env)
    assert settings.accept_policy == POLICY_VERSION
    async with running_daemon(settings, components=[]) as d:
        first = await consent_state(d.store)
        assert first.ok and first.setting_applied_at is not None
    async with open_store(store_url) as store:
        await revoke(store)  # what `tuiaudit consent --revoke` does
    with caplog.at_level(logging.INFO, logger="tuiaudit.daemon"):
        async with running_daemon(settings, components=[]) as d:
            state = await consent_state(d.store)
    assert not state.ok and state.setting_overruled
    assert any(r.getMessage() == "policy-not-reaccepted" for r in caplog.records)
    assert not any(r.getMessage() == "policy-accepted" for r in caplog.records)
    # `tuiaudit status` says why, in words (the real CLI).
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tuiaudit",
        "status",
        "--store",
        store_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    text = out.decode()
    assert "consent revoked at" in text, (text, err.decode())
    assert "TUIAUDIT_ACCEPT_POLICY" in text and "does not re-accept after a revoke" in text
    # A third start still does not re-accept; an explicit acceptance lifts the revoke.
    async with running_daemon(settings, components=[]) as d:
        assert not (await consent_state(d.store)).ok
        await accept(d.store, POLICY_VERSION)
    async with running_daemon(settings, components=[]) as d:
        state = await consent_state(d.store)
    assert state.ok and state.revoked_at is None and not state.setting_overruled


async def test_a_revoke_before_the_setting_was_ever_recorded_also_holds(store_url: str) -> None:
    """An older daemon may have applied the setting without recording it: a revoke wins."""
    async with open_store(store_url) as store:
        await accept(store, POLICY_VERSION)
        await revoke(store)
    settings = load_settings(
        {"store": store_url, "listen": "127.0.0.1:0", "accept_policy": POLICY_VERSION},
        environ={},
    )
    async with running_daemon(settings, components=[]) as d:
        assert not (await consent_state(d.store)).ok


# ---------------------------------------------------------------- DO_NOT_TRACK


@pytest.mark.parametrize("value", ["1", "2", "true", "yes", "TRUE", "please", " 1 "])
def test_do_not_track_any_value_but_empty_or_zero_turns_telemetry_off(value: str) -> None:
    settings = load_settings({}, environ={"DO_NOT_TRACK": value})
    assert settings.do_not_track and not settings.has("telemetry")


@pytest.mark.parametrize("value", ["", "0", " 0 ", None])
def test_do_not_track_empty_or_zero_leaves_telemetry_on(value: str | None) -> None:
    settings = load_settings({}, environ={} if value is None else {"DO_NOT_TRACK": value})
    assert not settings.do_not_track and settings.has("telemetry")


async def test_the_daemon_says_do_not_track_at_start(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        {"store": store_url, "listen": "127.0.0.1:0"}, environ={"DO_NOT_TRACK": "yes"}
    )
    with caplog.at_level(logging.INFO, logger="tuiaudit.daemon"):
        async with running_daemon(settings) as d:
            assert not d.settings.has("telemetry")
            assert d.info["do-not-track"] is True
    said = [r for r in caplog.records if r.getMessage() == "do-not-track"]
    assert said and said[0].levelno == logging.WARNING
