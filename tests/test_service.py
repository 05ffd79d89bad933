"""The daemon's lifecycle: state row, consent, components, commands, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tuiaudit.commands.status import collect
from tuiaudit.config import ConfigError, Settings, load_settings
from tuiaudit.consent import consent_state
from tuiaudit.control import filter_from_json, filter_to_json
from tuiaudit.daemon.actions import ActionLoop
from tuiaudit.daemon.logs import JsonFormatter
from tuiaudit.daemon.service import Daemon, DaemonError, Heartbeat, running_daemon
from tuiaudit.liveness import daemon_liveness
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter, AuditRow, DaemonState


def settings_for(store_url: str, **kw: Any) -> Settings:
    return replace(Settings(store=store_url, listen="127.0.0.1:0", jitter=0), **kw)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


# ----------------------------------------------------------------- lifecycle


async def test_start_writes_state_instance_start_and_stops_cleanly(store_url: str) -> None:
    clock = Clock()
    ready: list[Daemon] = []
    async with running_daemon(
        settings_for(store_url), clock=clock, components=[], ready=ready.append
    ) as daemon:
        assert ready == [daemon] and daemon.port > 0
        [state] = await daemon.store.daemon_states()
        assert state.daemon_id == daemon.daemon_id and state.pid == os.getpid()
        assert state.listen == f"127.0.0.1:{daemon.port}"
        assert state.flags == ["audit-log", "telemetry"] and state.stopped_at is None
        assert daemon_liveness(state, clock.now, 2.0) == "alive"
        rows = await daemon.store.fetch_rows(AuditFilter(name="instance-start"))
        assert {r.source for r in rows} == {"backend", "telemetry:backend"}
        full = next(r for r in rows if r.source == "backend")
        assert full.type == "trigger" and full.props["flags"] == ["audit-log", "telemetry"]
        first_instance = daemon.instance_id
    async with open_store(store_url) as store:
        [state] = await store.daemon_states()
        assert state.stopped_at is not None
        assert daemon_liveness(state, clock.now, 2.0) == "stopped"
    async with running_daemon(settings_for(store_url), components=[]) as daemon:
        assert daemon.instance_id == first_instance  # created once, reused


def test_liveness_stale_after_three_intervals() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    st = DaemonState("d", 1, "h", "x:1", now, now - timedelta(seconds=7), ["audit-log"])
    assert daemon_liveness(st, now, 2.0) == "stale"
    assert (
        daemon_liveness(replace(st, heartbeat_at=now - timedelta(seconds=5)), now, 2.0) == "alive"
    )


async def test_second_daemon_same_port_fails_fast_other_port_ok(store_url: str) -> None:
    async with running_daemon(settings_for(store_url), components=[]) as first:
        same = settings_for(store_url, listen=f"127.0.0.1:{first.port}")
        with pytest.raises(DaemonError, match=r"port in use.*tuiaudit status"):
            async with running_daemon(same, components=[]):
                pass
        async with running_daemon(settings_for(store_url), components=[]) as second:
            assert second.port != first.port
            states = await second.store.daemon_states()
            assert {s.daemon_id for s in states} >= {first.daemon_id, second.daemon_id}


async def test_accept_policy_at_start(store_url: str) -> None:
    with pytest.raises(ConfigError, match="accept-policy"):
        async with running_daemon(
            settings_for(store_url, accept_policy=POLICY_VERSION + 7), components=[]
        ):
            pass
    async with running_daemon(
        settings_for(store_url, accept_policy=POLICY_VERSION), components=[]
    ) as d:
        assert (await consent_state(d.store)).ok


async def test_do_not_track_turns_telemetry_off_and_says_so(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        {"store": store_url, "listen": "127.0.0.1:0"}, environ={"DO_NOT_TRACK": "1"}
    )
    assert settings.do_not_track and not settings.has("telemetry")
    with caplog.at_level(logging.INFO, logger="tuiaudit.daemon"):
        async with running_daemon(settings, components=[]) as daemon, aiohttp.ClientSession() as c:
            async with c.get(f"http://127.0.0.1:{daemon.port}/api/audit/flags") as r:
                assert await r.json() == {"audit-log": True, "telemetry": False}
            async with c.post(
                f"http://127.0.0.1:{daemon.port}/api/audit/submit", json={"name": "a", "type": "b"}
            ) as r:
                assert r.status == 204
            assert (await daemon.store.queue_stats()).pending == 0
            assert daemon.info["do-not-track"] is True
    assert any(r.getMessage() == "do-not-track" for r in caplog.records)


# ---------------------------------------------------------------- components


class Recorder:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = False

    async def run(self, stop: asyncio.Event) -> None:
        self.started.set()
        await stop.wait()
        self.stopped = True


class Crashy:
    def __init__(self) -> None:
        self.runs = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("boom")
        await stop.wait()


async def test_components_start_and_get_the_stop_signal(store_url: str) -> None:
    rec, skipped = Recorder(), []
    async with running_daemon(
        settings_for(store_url), components=[lambda d: rec, lambda d: skipped.append(d)]
    ):
        await asyncio.wait_for(rec.started.wait(), 30)
    assert rec.stopped and len(skipped) == 1  # a factory returning None is skipped


class Stubborn:
    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.Event().wait()  # ignores stop: must be cancelled at the deadline


async def test_a_component_ignoring_stop_is_cancelled(store_url: str) -> None:
    async with running_daemon(
        settings_for(store_url), components=[lambda d: Stubborn()], shutdown_timeout=0.05
    ):
        pass  # exiting at all is the assertion


async def test_heartbeat_refreshes_state_and_picks_up_pause(store_url: str) -> None:
    clock = Clock()
    async with running_daemon(settings_for(store_url), clock=clock, components=[]) as daemon:
        clock.now += timedelta(seconds=30)
        await daemon.store.set_property("shipping-paused", True)  # e.g. another daemon
        await Heartbeat(daemon).beat()
        [state] = await daemon.store.daemon_states()
        assert state.heartbeat_at == clock.now and state.paused and daemon.paused


# ------------------------------------------------------------------ commands


def _row(source: str = "telemetry:backend") -> AuditRow:
    now = datetime.now(UTC).replace(microsecond=0)
    return AuditRow(uuid.uuid4(), "ev", "action", source, uuid.uuid4(), "0.0.0.0", {}, {}, now, now)


async def test_command_loop_handlers(store_url: str) -> None:
    async with running_daemon(settings_for(store_url), components=[]) as daemon:
        store, loop = daemon.store, ActionLoop(daemon)

        async def run(kind: str, args: dict[str, Any] | None = None) -> Any:
            cid = await store.enqueue_command(kind, args)
            assert await loop.poll_once() == 1
            return await store.get_command(cid)

        cmd = await run("pause")
        assert (
            cmd.status == "done" and daemon.paused and await store.get_property("shipping-paused")
        )
        assert (await store.daemon_states())[0].paused
        cmd = await run("resume")
        assert cmd.status == "done" and not daemon.paused

        cmd = await run("launch-rockets")
        assert (
            cmd.status == "failed"
            and "unknown command kind 'launch-rockets'" in cmd.result["error"]
        )

        cmd = await run("accept-policy", {"version": POLICY_VERSION + 1})
        assert cmd.status == "failed" and "current version" in cmd.result["error"]
        cmd = await run("accept-policy", {"version": POLICY_VERSION})
        assert cmd.status == "done" and (await consent_state(store)).ok

        await store.insert_rows([_row() for _ in range(3)])
        cmd = await run("revoke-policy")
        assert cmd.status == "done" and cmd.result == {"purged": 4}  # 3 + the instance-start copy
        assert not (await consent_state(store)).ok

        keep, drop = _row(), _row()
        drop = replace(drop, name="purge-me")
        await store.insert_rows([keep, drop])
        cmd = await run("purge-pending", {"filter": filter_to_json(AuditFilter(name="purge-me"))})
        assert cmd.status == "done" and cmd.result == {"purged": 1}
        assert (await store.drop_counts())["user-purge"] == 1
        cmd = await run("purge-pending", {"colour": "red"})
        assert cmd.status == "failed" and "unknown filter field" in cmd.result["error"]

        a, b = _row(), _row()
        await store.insert_rows([a, b])
        assert await store.quarantine([a.id, b.id], reason="test") == 2
        cmd = await run("release-quarantine", {"ids": [str(a.id)]})
        assert cmd.result == {"released": 1}
        cmd = await run("purge-quarantine")
        assert cmd.result == {"purged": 1}
        cmd = await run("release-quarantine", {"ids": "nope"})
        assert cmd.status == "failed"


def test_filter_json_round_trip() -> None:
    flt = AuditFilter(
        source="telemetry:*",
        profile_id=uuid.uuid4(),
        since=datetime(2030, 1, 1, tzinfo=UTC),
        text="x",
    )
    assert filter_from_json(filter_to_json(flt)) == flt
    assert filter_from_json(None) == AuditFilter()


async def test_status_sees_a_running_daemon(store_url: str) -> None:
    async with running_daemon(settings_for(store_url), components=[]) as daemon:
        data = await collect(daemon.store, daemon.settings)
        assert data["daemon"] == "alive" and data["daemons"][0]["daemon-id"] == daemon.daemon_id
        assert data["queue"]["pending"] == 1  # the instance-start telemetry copy
        assert data["consent"]["ok"] is False
        json.dumps(data)


def test_log_lines_are_json_objects() -> None:
    fmt = JsonFormatter()
    rec = logging.LogRecord("tuiaudit.x", logging.INFO, __file__, 1, "thing-done", None, None)
    rec.fields = {"count": 3}  # type: ignore[attr-defined]
    out = json.loads(fmt.format(rec))
    assert out["event"] == "thing-done" and out["count"] == 3 and out["level"] == "info"
    rec = logging.LogRecord(
        "tuiaudit.audit", logging.INFO, __file__, 1, '{"event":"audit","id":"1"}', None, None
    )
    assert json.loads(fmt.format(rec))["id"] == "1"


def test_asyncpg_pool_errors_are_one_json_line() -> None:
    """The fleet run (docs/RELIABILITY.md): during a PostgreSQL restart asyncpg's pool
    logged "Failed to restore the pool connection floor" with a whole traceback."""
    import io

    from tuiaudit.daemon.logs import configure

    out = io.StringIO()
    loggers = [
        logging.getLogger(n) for n in ("tuiaudit", "daemon", "storage", "aiohttp", "asyncpg")
    ]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    configure("info", out)
    try:
        try:
            raise ConnectionRefusedError("connect call failed")
        except ConnectionRefusedError:
            logging.getLogger("asyncpg.pool").warning("Failed to restore", exc_info=True)
    finally:  # the other tests' logging as it was
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["logger"] == "asyncpg.pool" and record["event"] == "Failed to restore"
    assert record["error"] == "ConnectionRefusedError: connect call failed"


# ------------------------------------------------------------------- SIGTERM


def _wait_for_port(log: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        for line in log.read_text().splitlines():
            if '"daemon-listening"' in line:
                return int(json.loads(line)["port"])
        time.sleep(0.05)
    raise AssertionError(f"daemon did not start:\n{log.read_text()}")


def _spawn_daemon(store_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_")}
    argv = [sys.executable, "-m", "tuiaudit", "daemon", "--store", store_url]
    argv += ["--listen", "127.0.0.1:0", "--flags", "audit-log,telemetry"]
    with open(log, "wb") as err:
        return subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL, env=env)


async def test_sigterm_during_a_request_stream_loses_no_acknowledged_event(
    store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "daemon.log"
    proc = await asyncio.to_thread(_spawn_daemon, store_url, log)
    try:
        port = await asyncio.to_thread(_wait_for_port, log, proc)
        url = f"http://127.0.0.1:{port}/api/audit/submit"
        acked: list[str] = []
        enough = asyncio.Event()
        stop_posting = asyncio.Event()

        async def client() -> None:
            async with aiohttp.ClientSession() as c:
                while not stop_posting.is_set():
                    ids = [str(uuid.uuid4()) for _ in range(20)]
                    body = {"events": [{"id": i, "name": "load", "type": "action"} for i in ids]}
                    try:
                        async with c.post(url, json=body) as r:
                            if r.status == 204:
                                acked.extend(ids)
                            else:
                                assert r.status == 503, await r.text()
                    except aiohttp.ClientError:
                        return  # the daemon went away: unacknowledged, fine
                    if len(acked) >= 400:
                        enough.set()

        clients = [asyncio.create_task(client()) for _ in range(4)]
        waiter = asyncio.create_task(enough.wait())
        await asyncio.wait([waiter, *clients], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        assert enough.is_set(), "the clients stopped before 400 events were acknowledged"
        proc.send_signal(signal.SIGTERM)  # while the clients keep posting
        code = await asyncio.to_thread(proc.wait, 60)
        stop_posting.set()
        await asyncio.gather(*clients)
        assert code == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    async with open_store(store_url) as store:
        stored = {
            str(r.id) async for r in store.iter_rows(AuditFilter(source="backend", name="load"))
        }
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged events lost"
        [state] = await store.daemon_states()
        assert state.stopped_at is not None
    assert '"daemon-stopped"' in log.read_text()
