"""A scraper of the ingest app's /metrics on loopback (tests/test_metrics.py, test_grafana.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tuiaudit.audit import AuditLog
from tuiaudit.config import Settings
from tuiaudit.daemon.ingest import IngestContext, build_app
from tuiaudit.daemon.metrics import Metrics
from tuiaudit.storage.base import Store


@dataclass
class Scraper:
    store: Store
    metrics: Metrics
    session: aiohttp.ClientSession
    base: str

    async def text(self) -> str:
        async with self.session.get(self.base + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return await r.text()

    async def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in text_string_to_metric_families(await self.text()):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    async def submit(self, n: int = 1) -> None:
        body = {"events": [{"name": "login", "type": "action"}] * n}
        async with self.session.post(self.base + "/api/audit/submit", json=body) as r:
            assert r.status == 204


@asynccontextmanager
async def scraping(store: Store) -> AsyncIterator[Scraper]:
    """The ingest app on loopback, reading the store at every scrape (no cache)."""
    settings = Settings(store="unused", flags=("audit-log", "telemetry"))
    metrics = Metrics()
    ctx = IngestContext(
        store=store, audit=AuditLog(store, settings.flags), settings=settings, metrics=metrics
    )
    runner = web.AppRunner(build_app(ctx))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            yield Scraper(store, metrics, session, base)
    finally:
        await runner.cleanup()
