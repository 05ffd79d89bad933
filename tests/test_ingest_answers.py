"""What the ingest API says besides yes and no (issue 14 item 8), on both back-ends.

A 409 names every event whose id is already stored or repeated in its batch;
a ``"webhook"`` mark on a daemon without the webhooks flag is stored but gets
a warning (200 with ``warnings``) instead of a silent 204.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from tuiaudit.config import Settings
from tuiaudit.daemon.service import running_daemon
from tuiaudit.storage.base import AuditFilter

SUBMIT = "/api/audit/submit"
IGNORED = "ignored: this daemon runs without the webhooks flag (add webhooks to --flags)"


class Client:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def post(self, body: Any) -> tuple[int, Any, str]:
        async with self.session.post(self.base + SUBMIT, json=body) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None, resp.content_type


@pytest.fixture
def flags() -> tuple[str, ...]:
    return ("audit-log",)


@pytest.fixture
async def client(store_url: str, flags: tuple[str, ...]) -> AsyncIterator[tuple[Client, Any]]:
    settings = replace(Settings(store=store_url, listen="127.0.0.1:0", jitter=0), flags=flags)
    async with running_daemon(settings, components=[]) as daemon, aiohttp.ClientSession() as s:
        yield Client(f"http://127.0.0.1:{daemon.port}", s), daemon.store


def event(**kw: Any) -> dict[str, Any]:
    return {"name": "team-created", "type": "action", "props": {"n": 1}, **kw}


async def _names(store: Any) -> list[str]:
    rows = await store.fetch_rows(AuditFilter(source="backend"), limit=100)
    return sorted(r.name for r in rows if r.name != "instance-start")  # the daemon's own


async def test_a_409_names_the_stored_and_the_repeated_ids(client: tuple[Client, Any]) -> None:
    api, store = client
    taken, twice = str(uuid.uuid4()), str(uuid.uuid4())
    assert (await api.post(event(id=taken)))[0] == 204
    batch = [event(), event(id=twice), event(id=taken), event(id=twice, name="other")]
    status, problem, kind = await api.post({"events": batch})
    assert status == 409 and kind == "application/problem+json"
    assert problem["code"] == "duplicate-event"
    assert "(2 listed in errors)" in problem["detail"] and "nothing" in problem["detail"]
    assert problem["errors"] == [
        {"path": "events[2].id", "reason": f"{taken} is already stored"},
        {"path": "events[3].id", "reason": f"{twice} is also events[1]"},
    ]
    assert await _names(store) == ["team-created"]  # only the first request's event

    status, problem, _ = await api.post(event(id=taken))  # one bare event: its own path
    assert status == 409
    assert problem["errors"] == [{"path": "id", "reason": f"{taken} is already stored"}]


async def test_a_webhook_mark_without_the_flag_is_stored_with_a_warning(
    client: tuple[Client, Any],
) -> None:
    api, store = client
    status, body, kind = await api.post(event(webhook=True))
    assert (status, kind) == (200, "application/json")
    assert body == {"warnings": [{"path": "webhook", "reason": IGNORED}]}

    marked = event(name="marked", webhook={"batch-key": "k"})
    status, body, _ = await api.post({"events": [event(), marked, event(webhook=False)]})
    assert status == 200
    assert body == {"warnings": [{"path": "events[1].webhook", "reason": IGNORED}]}
    assert await _names(store) == ["marked", "team-created", "team-created", "team-created"]

    assert (await api.post(event()))[0] == 204  # nothing to say: no body


@pytest.mark.parametrize("flags", [("audit-log", "webhooks")])
async def test_with_the_webhooks_flag_a_mark_is_a_plain_204(client: tuple[Client, Any]) -> None:
    api, _ = client
    assert (await api.post(event(webhook=True)))[:2] == (204, None)
