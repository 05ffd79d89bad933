"""Security properties: the token guards every ``/api/`` route, the SQLite files are private,
and no payload value reaches a log line.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from reliability.harness import daemon_argv, receiver, start_daemon

from tuiaudit.config import Settings
from tuiaudit.daemon.ingest import build_app
from tuiaudit.daemon.service import running_daemon
from tuiaudit.demo.traffic import DOMAINS, FILE_NAMES, FIRST, LAST, TrafficGenerator

TOKEN = "s3cret-token-value"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def api_paths() -> list[str]:
    """Every route the ingest app serves under /api/ (read from its router, so a new route
    is covered without editing this test), plus unknown ones."""
    from unittest.mock import MagicMock

    app = build_app(MagicMock())
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    api = sorted(p for p in paths if p.startswith("/api/"))
    assert len(api) >= 3
    return [*api, "/api/", "/api/audit/nope", "/api/../api/audit/flags"]


BAD_HEADERS: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"X-Token": TOKEN},
]


async def test_every_api_route_needs_the_token(tmp_path: Path) -> None:
    settings = Settings(store=f"{tmp_path}/s.db", listen="127.0.0.1:0", token=TOKEN)
    async with running_daemon(settings, components=[]) as d, aiohttp.ClientSession() as s:
        base = f"http://127.0.0.1:{d.port}"
        answers: dict[tuple[str, str, int], int] = {}
        for path, method, (i, headers) in itertools.product(
            api_paths(), METHODS, enumerate(BAD_HEADERS)
        ):
            async with s.request(method, base + path, headers=headers, json={"events": []}) as r:
                await r.read()
                answers[(path, method, i)] = r.status
        wrong = {k: v for k, v in answers.items() if v != 401}
        assert not wrong, wrong
        stored_before = await d.store.total_rows()
        # With the token the routes answer (and nothing was stored by the refused ones).
        ok = {"Authorization": f"Bearer {TOKEN}"}
        async with s.get(base + "/api/audit/flags", headers=ok) as r:
            assert r.status == 200
        async with s.post(
            base + "/api/audit/submit", headers=ok, json={"name": "x", "type": "action"}
        ) as r:
            assert r.status == 204
        assert await d.store.total_rows() > stored_before
        async with s.get(base + "/healthz") as r:  # outside /api/: no token needed
            assert r.status == 200


def _modes(path: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        if p.exists()
    }


async def test_the_daemon_creates_its_sqlite_files_private(tmp_path: Path) -> None:
    db = tmp_path / "new-dir" / "store.db"
    old = os.umask(0o022)  # a permissive umask: the store must not rely on it
    try:
        d = await start_daemon(daemon_argv(f"sqlite:///{db}"), tmp_path / "d.log")
    finally:
        os.umask(old)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(d.url + "/api/audit/submit", json={"name": "x", "type": "a"}) as r:
                assert r.status == 204
        modes = _modes(db)  # while it runs: the WAL and shared-memory files exist
        assert set(modes) == {"store.db", "store.db-wal", "store.db-shm"}
        assert all(m == 0o600 for m in modes.values()), {k: oct(v) for k, v in modes.items()}
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    finally:
        assert await d.terminate() == 0
    assert all(m == 0o600 for m in _modes(db).values())


# ------------------------------------------------------------------ no PII in logs


def pii_strings() -> set[str]:
    """Every name and email the demo traffic can make, in every spelling it uses."""
    out = set(FILE_NAMES) | {"never-stored"}
    for first, last in itertools.product(FIRST, LAST):
        out.add(f"{first} {last}")
        for domain in DOMAINS:
            email = f"{first.lower()}.{last.lower()}@{domain}"
            out |= {email, email.upper()}
    return out


def request_secrets(body: Any) -> set[str]:
    """Session ids, token ids, referrers, layer names, IPs: values under these keys."""
    keys = {"session", "external-session-id", "session-id", "access-token-id", "referrer"}
    keys |= {"layer-name", "ip-addr", "password"}
    found: set[str] = set()
    if isinstance(body, dict):
        for k, v in body.items():
            if k in keys and isinstance(v, str) and len(v) >= 6:
                found.add(v)
            found |= request_secrets(v)
    elif isinstance(body, list):
        for v in body:
            found |= request_secrets(v)
    return found


@pytest.mark.slow
async def test_no_payload_value_reaches_the_daemon_log(tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    gen = TrafficGenerator(random.Random(7))
    secrets = pii_strings() | {p.ip for p in gen.profiles}
    async with receiver(tmp_path / "rx.jsonl", fail_rate=0.3, rng=random.Random(1)) as (rx, uri):
        argv = daemon_argv(
            f"sqlite:///{tmp_path}/s.db",
            flags="audit-log,telemetry,audit-log-logger,webhooks",
            telemetry_uri=uri,
            extra=["--log-level", "debug", "--interval", "1", "--token", TOKEN],
        )
        d = await start_daemon(argv, log)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with aiohttp.ClientSession() as s:
                for _ in range(150):
                    req = gen.next_request()
                    secrets |= request_secrets(req.body)
                    async with s.post(
                        d.url + req.path, json=req.body, headers={**req.headers, **auth}
                    ) as r:
                        assert r.status == 204, await r.text()
                # Refused requests carrying PII: validation errors, a duplicate id, no token.
                email = "ana.silva@example.com"
                for body in (
                    {"name": email, "type": ""},
                    {"events": [{"name": "x", "type": "a", "ip-addr": "Ana Silva"}]},
                    {"id": "0190d5c1-0000-7000-8000-000000000001", "name": "x", "type": "a"},
                    {"id": "0190d5c1-0000-7000-8000-000000000001", "name": "x", "type": "a"},
                ):
                    async with s.post(d.url + "/api/audit/submit", json=body, headers=auth) as r:
                        assert r.status in (204, 400, 409, 500)
                async with s.post(d.url + "/api/audit/submit", json={"props": {"e": email}}) as r:
                    assert r.status == 401
            async with asyncio.timeout(60):
                while rx.events == 0 or rx.failures_injected == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
        finally:
            assert await d.terminate() == 0
    text = log.read_text()
    assert '"event":"daemon-stopped"' in text.replace(" ", "")
    assert '"logger":"tuiaudit.audit"' in text.replace(" ", "")  # the audit-log-logger ran
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked, f"payload values in the daemon log: {leaked[:10]}"


@pytest.mark.slow
def test_the_headless_demo_prints_no_payload_value(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "tuiaudit", "demo", "--headless", "--duration", "4", "--seed", "3"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert out.strip(), "the demo printed no summary"
    leaked = sorted(s for s in pii_strings() if s in out)
    assert not leaked, f"payload values in the demo output: {leaked[:10]}"
