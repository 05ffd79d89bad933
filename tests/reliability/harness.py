# ruff: noqa: ASYNC230, ASYNC240  (small log files read between polls: blocking is fine here)
"""Shared parts of the reliability scenarios (bench/reliability/*.py and tests/test_reliability_*).

Each scenario is an async function that takes its sizes as arguments and
returns a dict of figures; the scripts run it big (``--full``), the tests run
it small, so CI and the report measure the same way. Everything is real: a
``python -m tuiaudit daemon`` subprocess, SQLite files or the PostgreSQL test
server, an in-process receiver (``daemon.receiver.make_receiver_app``) on
127.0.0.1 port 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tuiaudit.daemon.receiver import STATE_KEY, ReceiverState, make_receiver_app, serve
from tuiaudit.ids import uuid7
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditRow

HERE = Path(__file__).resolve().parent
PG_DSN = os.environ.get("TUIAUDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BUSY_WORDS = ("busy", "locked")


# ----------------------------------------------------------------- stores


@contextlib.contextmanager
def temp_store(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh store URL: a SQLite file in ``tmp`` or a new PostgreSQL schema (dropped after)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/store.db"
        return
    import asyncpg

    schema = f"rel_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_DSN}?schema={schema}"
    finally:
        asyncio.run(run(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


@contextlib.asynccontextmanager
async def atemp_store(backend: str, tmp: Path) -> AsyncIterator[str]:
    """:func:`temp_store` for code already inside an event loop."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/store.db"
        return
    import asyncpg

    schema = f"rel_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_DSN}?schema={schema}"
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


def sqlite_path(store_url: str) -> Path | None:
    return Path(store_url[len("sqlite:///") :]) if store_url.startswith("sqlite:///") else None


def integrity_check(store_url: str) -> str:
    """``PRAGMA integrity_check`` of a SQLite store ("ok" when sound); "n/a" on PostgreSQL."""
    path = sqlite_path(store_url)
    if path is None:
        return "n/a"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(r[0]) for r in rows)


def telemetry_rows(n: int, *, start: datetime, name: str = "backlog") -> list[AuditRow]:
    """``n`` small telemetry rows, one millisecond apart from ``start`` (oldest first)."""
    out = []
    for i in range(n):
        created = start + timedelta(milliseconds=i)
        out.append(
            AuditRow(
                id=uuid7(created),
                name=name,
                type="action",
                source="telemetry:backend",
                profile_id=uuid.UUID(int=i + 1),
                ip_addr="0.0.0.0",
                props={"n": i, "ok": True, "file-id": str(uuid.UUID(int=7 * i + 3))},
                context={"version": "2.4.1"},
                tracked_at=created.replace(hour=0, minute=0, second=0, microsecond=0),
                created_at=created,
            )
        )
    return out


def anonymised_rows(n: int, *, now: datetime, offset: int = 0) -> list[AuditRow]:
    """The telemetry copies the ingest path stores for ``n`` backend events (mode C):
    ids and timestamps of the day, as ``policy.anonymise`` makes them."""
    from tuiaudit.events import prepare_backend_events
    from tuiaudit.policy import anonymise

    raws = [
        {
            "name": "backlog",
            "type": "action",
            "profile-id": str(uuid.UUID(int=offset + i + 1)),
            "props": {"n": offset + i, "ok": True, "file-id": str(uuid.UUID(int=7 * i + 3))},
            "context": {"version": "2.4.1", "initiator": "app"},
        }
        for i in range(n)
    ]
    return [anonymise(p.row) for p in prepare_backend_events(raws, now=now)]


async def seed_backlog(
    store_url: str, n: int, *, chunk: int = 10_000, realistic: bool = True
) -> list[str]:
    """Insert ``n`` telemetry rows, accept the policy; return their ids, oldest first.

    ``realistic``: rows as the ingest path makes them (created-at and id time of
    the day); else rows one millisecond apart an hour ago (a strict FIFO order).
    """
    from tuiaudit.consent import accept

    start = datetime.now(UTC) - timedelta(hours=1)
    ids: list[str] = []
    async with open_store(store_url) as store:
        await accept(store, POLICY_VERSION)
        for offset in range(0, n, chunk):
            size = min(chunk, n - offset)
            if realistic:
                page = anonymised_rows(size, now=start, offset=offset)
            else:
                page = telemetry_rows(size, start=start + timedelta(seconds=offset))
            await store.insert_rows(page)
            ids.extend(str(r.id) for r in page)
    return ids


# ---------------------------------------------------------------- daemon


@dataclass
class DaemonProc:
    proc: asyncio.subprocess.Process
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.returncode is None

    async def kill9(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def terminate(self, limit_s: float = 60.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), limit_s)
        except TimeoutError:
            await self.kill9()
            return -9


def daemon_argv(
    store_url: str,
    *,
    flags: str = "audit-log,telemetry",
    telemetry_uri: str | None = None,
    lease_ttl: float | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``python -m tuiaudit daemon …``; with ``lease_ttl`` the same daemon run through
    ``_daemon.py``, which only shortens the shipper lease (SQLite waits one TTL after
    a kill -9 before another process may ship: 30 s by design)."""
    if lease_ttl is None:
        argv = [sys.executable, "-m", "tuiaudit", "daemon"]
    else:
        argv = [sys.executable, str(HERE / "_daemon.py"), str(lease_ttl), "daemon"]
    argv += ["--store", store_url, "--listen", "127.0.0.1:0", "--flags", flags]
    argv += ["--accept-policy", str(POLICY_VERSION), "--jitter", "0"]
    if telemetry_uri:
        argv += ["--telemetry-uri", telemetry_uri]
    return argv + list(extra)


async def start_daemon(argv: Sequence[str], log: Path, *, limit_s: float = 60.0) -> DaemonProc:
    """Spawn the daemon with stderr to ``log``; return once it logged its port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_")}
    env.pop("DO_NOT_TRACK", None)
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=err, env=env,
        )  # fmt: skip
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        with open(log, "rb") as fh:
            fh.seek(offset)
            for line in fh.read().splitlines():
                if b'"daemon-listening"' in line:
                    return DaemonProc(proc, log, int(json.loads(line)["port"]))
        if proc.returncode is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        await asyncio.sleep(0.02)
    proc.kill()
    await proc.wait()
    raise RuntimeError(f"daemon did not start within {limit_s} s:\n{log.read_text()[-4000:]}")


def log_lines_with(log: Path, words: Sequence[str]) -> list[str]:
    """Log lines mentioning any of ``words`` (case-insensitive)."""
    if not log.exists():
        return []
    return [
        line
        for line in log.read_text(errors="replace").splitlines()
        if any(w in line.lower() for w in words)
    ]


# --------------------------------------------------------------- receiver


@contextlib.asynccontextmanager
async def receiver(out: Path | None = None, **kw: Any) -> AsyncIterator[tuple[ReceiverState, str]]:
    """The local telemetry receiver in this process; yields its state and URL."""
    app = make_receiver_app(out, **kw)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield app[STATE_KEY], f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


def keys_by_id(state: ReceiverState) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = {}
    for key, ids in state.log:
        for i in ids:
            out.setdefault(i, set()).add(key)
    return out


# ------------------------------------------------------------------ misc


async def post_events(
    session: aiohttp.ClientSession, url: str, ids: Sequence[str], *, pad: int = 0
) -> int:
    """POST a backend batch with these event ids; return the status (0: no answer)."""
    props: dict[str, Any] = {"n": 1}
    if pad:
        props["pad"] = "x" * pad
    body = {"events": [{"id": i, "name": "load", "type": "action", "props": props} for i in ids]}
    try:
        async with session.post(url + "/api/audit/submit", json=body) as resp:
            await resp.read()
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def stored_ids(store_url: str, name: str = "load") -> set[str]:
    from tuiaudit.storage.base import AuditFilter

    async with open_store(store_url) as store:
        return {str(r.id) async for r in store.iter_rows(AuditFilter(source="backend", name=name))}


def tmpdir(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"tuiaudit-{prefix}-")


def print_figures(title: str, figures: dict[str, Any]) -> None:
    print(f"{title}: " + json.dumps(figures, default=str))


async def run_per_backend(
    name: str,
    backends: str,
    scenario: Callable[[str, Path], Awaitable[dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """Run ``scenario(store_url, tmp)`` on each back-end of the comma list, printing figures.

    A back-end that cannot be opened (PostgreSQL not answering) is reported
    as skipped, and the others still run.
    """
    results = []
    for backend in backends.split(","):
        with tmpdir(name) as tmp:
            try:
                async with atemp_store(backend, Path(tmp)) as url:
                    figures = await scenario(url, Path(tmp))
            except OSError as exc:
                print(f"{name} {backend}: skipped ({exc})")
                continue
        print_figures(f"{name} {backend}", figures)
        results.append((backend, figures))
    return results
