"""Shared fixtures: a real store on each back-end, and the CI no-skip rule.

Every store test takes the ``store_url`` (or ``store``) fixture and so runs on
SQLite (a file in ``tmp_path``) and on the PostgreSQL server on
127.0.0.1:5432 (database ``test``, a fresh schema per test, dropped after).
Outside CI a test may skip only when an external need is absent (the
PostgreSQL server, Java and the reference codec's jars, the right to mount a
tmpfs), with a reason naming it; with ``CI=true`` every skip is a failure.

Tests are hermetic: the user's own settings never reach them. Each test (and
the session, for wider fixtures) runs with ``XDG_*`` directories of its own and
without any ``TUIAUDIT_*`` or ``DO_NOT_TRACK`` variable. Hypothesis runs with
the ``ci`` profile under ``CI=true`` (derandomized: the same examples every run,
so a build never goes red at random) and ``dev`` otherwise (random, with the
local example database replaying past failures).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Test knobs are read here, at import, before the hermetic fixtures clear TUIAUDIT_*.
PG_DSN = os.environ.get("TUIAUDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if IN_CI else "dev")

XDG_DIRS = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


def _hermetic(mp: pytest.MonkeyPatch, home: Path) -> None:
    """Point every XDG directory into ``home``; drop the user's tuiaudit variables."""
    for name in XDG_DIRS:
        mp.setenv(name, str(home / name.removeprefix("XDG_").lower()))
    for name in list(os.environ):
        if name.startswith("TUIAUDIT_") or name == "DO_NOT_TRACK":
            mp.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def hermetic_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same for session- and module-scoped fixtures, which start before a test's own."""
    with pytest.MonkeyPatch.context() as mp:
        _hermetic(mp, tmp_path_factory.mktemp("session-home"))
        yield


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test gets empty XDG directories of its own (not in its tmp_path, which it owns)."""
    _hermetic(monkeypatch, tmp_path_factory.mktemp("home"))


def _pg_reachable() -> str | None:
    """None when the test server answers, else the reason it does not."""
    import asyncio

    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # any failure means "not usable here"
        return f"PostgreSQL at {PG_DSN} is not answering ({exc.__class__.__name__}: {exc})"
    return None


_pg_problem: str | bool | None = False  # False = not probed yet


def require_postgres() -> None:
    global _pg_problem
    if _pg_problem is False:
        _pg_problem = _pg_reachable()
    if _pg_problem:
        pytest.skip(str(_pg_problem))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    expected_failure = hasattr(report, "wasxfail")  # an xfail ran; it was not skipped
    if IN_CI and report.skipped and not expected_failure:
        report.outcome = "failed"
        report.longrepr = f"CI=true: {item.nodeid} must run, but it was skipped: {report.longrepr}"


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL store URL on a fresh schema, dropped after the test."""
    import asyncio

    import asyncpg

    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_DSN}?schema={schema}"
    finally:
        asyncio.run(run(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """A fresh, empty store URL on each back-end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[object]:
    """An open, migrated store on each back-end."""
    from tuiaudit.storage import open_store

    async with open_store(store_url) as s:
        yield s
