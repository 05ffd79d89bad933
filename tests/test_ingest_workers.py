"""``--workers 2``: HTTP in two worker processes, one writer; both back-ends (issue 20).

Real daemon processes on loopback: the workers are real subprocesses, the
store real files / the real PostgreSQL. Checked: a SIGTERM during a stream of
requests loses no acknowledged event and leaves no half-stored request, every
worker exits, and the daemon's final counters hold every worker's; /metrics
answers for the whole daemon whichever worker serves it; a request's rows
reach the store as one transaction (a duplicate id stores nothing of its batch);
a worker killed with -9 is replaced and ingest goes on; a second SIGTERM stops
workers that are still draining; kill -9 of the daemon mid-ingest loses no
acknowledged event (the reliability scenario with workers).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from reliability.harness import daemon_argv, post_events, start_daemon
from reliability.ingest_crash import ingest_crash_scenario

from tuiaudit.config import Settings
from tuiaudit.daemon.service import Daemon, running_daemon
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter

WORKERS = ("--workers", "2")


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def _stored(store_url: str) -> tuple[set[str], int]:
    async with open_store(store_url) as store:
        ids = {str(r.id) async for r in store.iter_rows(AuditFilter(source="backend", name="load"))}
        copies = await store.count_rows(AuditFilter(source="telemetry:backend", name="load"))
    return ids, copies


async def test_sigterm_drains_every_worker_and_loses_no_acknowledged_event(
    store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "daemon.log"
    d = await start_daemon(daemon_argv(store_url, extra=WORKERS), log)
    workers = _children(d.proc.pid)
    assert len(workers) == 2, workers
    acked: list[str] = []
    enough = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while True:
            ids = [str(uuid.uuid4()) for _ in range(20)]
            status = await post_events(session, d.url, ids)
            if status == 204:
                acked.extend(ids)
                if len(acked) >= 400:
                    enough.set()
            else:  # the daemon stopped taking requests: no answer, or a 503
                assert status in (0, 503), status
                return

    # One connection per client, handed out round robin: both workers serve.
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), timeout=aiohttp.ClientTimeout(total=30)
        )
        for _ in range(4)
    ]
    try:
        tasks = [asyncio.create_task(client(s)) for s in sessions]
        await asyncio.wait_for(enough.wait(), 120)
        code = await d.terminate()  # mid-stream: the clients are posting
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        for s in sessions:
            await s.close()

    assert code == 0, log.read_text()[-2000:]
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the daemon"
    stored, copies = await _stored(store_url)
    assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged event(s) lost"
    assert copies == len(stored), "a request's rows were half stored"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stopped = [line for line in lines if line.get("event") == "daemon-stopped"][-1]
    # The workers' final counters reach the daemon: every stored event was counted.
    assert stopped["events_accepted"] == len(stored)
    assert stopped["rows_stored"] == 2 * len(stored)
    assert not [line for line in lines if line.get("event") == "ingest-worker-killed"]


async def _log_line(log: Path, event: str, limit_s: float = 60.0) -> dict[str, object]:
    """The first log line of ``event`` (polls the file the daemon appends to)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        for line in (await asyncio.to_thread(log.read_text)).splitlines():
            if line.startswith("{") and json.loads(line).get("event") == event:
                return dict(json.loads(line))
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} line in {limit_s} s")


async def test_a_worker_that_dies_is_replaced_and_ingest_goes_on(
    store_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "daemon.log"
    d = await start_daemon(daemon_argv(store_url, extra=WORKERS), log)
    try:
        first = _children(d.proc.pid)
        assert len(first) == 2
        os.kill(first[0], 9)
        line = await _log_line(log, "ingest-worker-exited")
        assert line["code"] in (-9, None)
        await _log_line(log, "ingest-worker-replaced")
        now = _children(d.proc.pid)
        assert len(now) == 2 and first[0] not in now and first[1] in now
        # New connections (round robin over both workers, the new one included) are served.
        acked: list[str] = []
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(4):
                ids = [str(uuid.uuid4()) for _ in range(5)]
                assert await post_events(session, d.url, ids) == 204
                acked.extend(ids)
    finally:
        code = await d.terminate()
    assert code == 0
    stored, copies = await _stored(store_url)
    assert set(acked) <= stored
    assert copies == len(stored)


async def test_a_second_sigterm_stops_draining_workers_now(tmp_path: Path) -> None:
    # A request whose body never finishes keeps a worker draining: with the
    # timeouts this long, only the second signal (stop now) can end the daemon.
    config = tmp_path / "config.toml"
    config.write_text("body_timeout = 600\nheader_timeout = 600\n")
    argv = daemon_argv(
        f"sqlite:///{tmp_path / 'store.db'}",
        extra=[*WORKERS, "--config", str(config), "--shutdown-timeout", "600"],
    )
    log = tmp_path / "daemon.log"
    d = await start_daemon(argv, log)
    workers = _children(d.proc.pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
    try:
        head = (
            "POST /api/audit/submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{"
        )
        writer.write(head.encode())
        await writer.drain()
        # Later connections go round robin after it: once they are answered, the
        # worker holding the first one has read its head and waits for the body.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(2 * len(workers)):
                assert await post_events(session, d.url, [str(uuid.uuid4())]) == 204
        d.proc.send_signal(signal.SIGTERM)
        # Two signals sent together may arrive as one: the second follows the first's effect.
        await _log_line(log, "daemon-stopping")
        d.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(d.proc.wait(), 60)
        assert code == 0, log.read_text()[-2000:]
        assert await reader.read() == b""  # closed without an answer: nothing acknowledged
    finally:
        writer.close()
        await d.kill9()  # only if the assertions above failed: it has exited otherwise
    assert not [pid for pid in workers if _alive(pid)]


@asynccontextmanager
async def _daemon(store_url: str) -> AsyncIterator[Daemon]:
    settings = Settings(
        store=store_url, listen="127.0.0.1:0", flags=("audit-log", "telemetry"), workers=2
    )
    async with running_daemon(settings, components=[]) as daemon:
        yield daemon


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_every_worker_whichever_serves_the_scrape(store_url: str) -> None:
    async with _daemon(store_url) as daemon:
        base = f"http://127.0.0.1:{daemon.port}"
        # A new connection per request: round robin alternates the workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for i in range(6):
                body = {"events": [{"name": "login", "type": "action", "props": {"i": i}}] * 3}
                async with session.post(base + "/api/audit/submit", json=body) as r:
                    assert r.status == 204
            for _ in range(2):
                bad = {"events": [{"name": "login", "type": "action", "ip-addr": "nope"}] * 4}
                async with session.post(base + "/api/audit/submit", json=bad) as r:
                    assert r.status == 400
            async with session.get(base + "/healthz") as r:
                assert r.status == 200
            scrapes = []
            for _ in range(2):  # one scrape per worker
                async with session.get(base + "/metrics") as r:
                    assert r.status == 200
                    scrapes.append(_samples(await r.text()))
    route = (("route", "/api/audit/submit"),)
    for s in scrapes:
        assert s[("tuiaudit_events_accepted_total", ())] == 18
        assert s[("tuiaudit_rows_stored_total", ())] == 36
        assert s[("tuiaudit_events_rejected_total", ())] == 8
        assert s[("tuiaudit_http_requests_total", (("status", "204"),))] == 6
        assert s[("tuiaudit_http_requests_total", (("status", "400"),))] == 2
        assert s[("tuiaudit_http_requests_total", (("status", "200"),))] >= 1
        assert s[("tuiaudit_http_request_duration_seconds_count", route)] == 8
        assert s[("tuiaudit_store_up", ())] == 1
    # After the stop, the daemon's own counters hold both workers' final figures.
    assert daemon.metrics.events_accepted == 18
    assert daemon.metrics.events_stored == 36


async def test_a_duplicate_id_stores_nothing_of_its_request(store_url: str) -> None:
    taken = str(uuid.uuid4())
    async with _daemon(store_url) as daemon:
        base = f"http://127.0.0.1:{daemon.port}"
        async with aiohttp.ClientSession() as session:
            assert await post_events(session, base, [taken]) == 204
            fresh = [str(uuid.uuid4()) for _ in range(5)]
            body = {
                "events": [{"id": i, "name": "load", "type": "action"} for i in [*fresh, taken]]
            }
            async with session.post(base + "/api/audit/submit", json=body) as r:
                assert r.status == 409
                problem = await r.json()
                assert problem["code"] == "duplicate-event"
                # The worker asked the daemon process which ids the store holds.
                assert problem["errors"] == [
                    {"path": "events[5].id", "reason": f"{taken} is already stored"}
                ]
    stored, copies = await _stored(store_url)
    assert stored == {taken}
    assert copies == 1


@pytest.mark.slow
async def test_kill9_mid_ingest_with_workers_keeps_every_acknowledged_event(
    store_url: str, tmp_path: Path
) -> None:
    figures = await ingest_crash_scenario(store_url, tmp_path, kills=3, min_acked=10, extra=WORKERS)
    print(figures)
    assert figures["lost_acknowledged"] == 0
    assert figures["telemetry_copies"] == figures["stored_events"]
