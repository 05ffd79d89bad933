"""contrib/grafana and contrib/prometheus: every metric queried exists in /metrics; valid PromQL."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from metrics_support import Scraper, scraping
from prometheus_client.parser import text_string_to_metric_families

from tuiaudit.storage.base import Store
from tuiaudit.timeutil import utcnow

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "contrib" / "grafana" / "tuiaudit-dashboard.json"
ALERTS = ROOT / "contrib" / "prometheus" / "tuiaudit-alerts.yml"
METRIC = re.compile(r"\b(?:tuiaudit|process)_[a-z0-9_]+\b")
NEEDS_PROMTOOL = pytest.mark.skipif(
    shutil.which("promtool") is None and os.environ.get("CI") != "true",
    reason="promtool is not installed (Debian package: prometheus)",
)


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert exprs, "the dashboard queries nothing"
    return exprs


def concrete(expr: str) -> str:
    """A dashboard expression with its template variables filled in."""
    return expr.replace("$instance", ".*")


@pytest.fixture
async def scraper(store: Store) -> AsyncIterator[Scraper]:
    async with scraping(store) as s:
        yield s


async def _every_sample_name(scraper: Scraper) -> set[str]:
    """A daemon that has ingested, queued, dropped, shipped and failed: every metric has samples."""
    await scraper.submit(3)
    await scraper.store.add_drops("age", 1)
    started = utcnow() - timedelta(minutes=5)
    entry = await scraper.store.ledger_begin(
        kind="events",
        events=1,
        raw_bytes=1,
        encoded_bytes=1,
        body_sha256="0" * 64,
        batch_key="k",
        attempt=1,
        sink=None,
        started_at=started,
    )
    await scraper.store.ledger_finish(entry, status="ok", ended_at=started, http_status=204)
    scraper.metrics.send_seconds.observe(0.1)
    text = await scraper.text()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


async def test_every_dashboard_metric_exists(scraper: Scraper) -> None:
    exposed = await _every_sample_name(scraper)
    queried = {m for e in dashboard_exprs() for m in METRIC.findall(e)}
    assert queried >= {
        "tuiaudit_events_accepted_total",
        "tuiaudit_telemetry_pending_rows",
        "tuiaudit_telemetry_dropped_total",
        "tuiaudit_telemetry_send_duration_seconds_bucket",
        "tuiaudit_batches_failed_total",
    }, "the dashboard lost a panel the issue asks for"
    assert queried - exposed == set(), "the dashboard queries metrics /metrics does not have"


async def test_every_alert_metric_exists(scraper: Scraper) -> None:
    exposed = await _every_sample_name(scraper)
    queried = set(METRIC.findall(ALERTS.read_text()))
    assert queried and queried - exposed == set()


@NEEDS_PROMTOOL
def test_promtool_checks_the_alerts_and_the_dashboard_queries(tmp_path: Path) -> None:
    # Each dashboard query as a recording rule: promtool parses its PromQL.
    rules = tmp_path / "dashboard-rules.yml"
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs()):
        lines += [
            f"      - record: dashboard:query{i}",
            f"        expr: {json.dumps(concrete(expr))}",
        ]
    rules.write_text("\n".join(lines) + "\n")
    for path in (ALERTS, rules):
        out = subprocess.run(
            ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stdout + out.stderr


def test_dashboard_has_a_datasource_variable_and_unique_panel_ids() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert "datasource" in {v["name"] for v in board["templating"]["list"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
