"""Shared fixtures: a real store on each back-end, and the CI no-skip rule.

Every store test takes the ``store_url`` (or ``store``) fixture and so runs on
SQLite (a file in ``tmp_path``) and on the PostgreSQL server on
127.0.0.1:5432 (database ``test``, a fresh schema per test, dropped after).
Outside CI a PostgreSQL or interop test skips with a reason when its peer is
missing; with ``CI=true`` such a skip is turned into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

PG_DSN = os.environ.get("TUIAUDIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
NO_SKIP_MARKERS = ("postgres", "interop")


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
    if (
        IN_CI
        and report.skipped
        and not expected_failure
        and any(item.get_closest_marker(m) for m in NO_SKIP_MARKERS)
    ):
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
