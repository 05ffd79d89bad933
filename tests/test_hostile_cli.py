"""Issue 13: webhooks, CLI output, exports and store files against hostile data.

Webhooks deliver on loopback from a real store; the CLI runs as the user runs
it (``python -m tuiaudit``, or ``cli.main`` for the in-process ones).
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tuiaudit.daemon.webhooks import WebhookDispatcher
from tuiaudit.ids import ZERO_UUID
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditRow, StoreError, WebhookJob
from tuiaudit.webhook_payload import SIGNATURE_HEADER, webhook_event

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
README = Path(__file__).resolve().parents[1] / "README.md"


def row(name: str, **props: Any) -> AuditRow:
    return AuditRow(
        id=uuid.uuid4(), name=name, type="action", source="backend", profile_id=ZERO_UUID,
        ip_addr="10.0.0.1", props=props or {"n": 1}, context={}, tracked_at=T0, created_at=T0,
    )  # fmt: skip


def cli(*args: str, store: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--store", str(store)] if store is not None else []
    return subprocess.run(
        [sys.executable, "-m", "tuiaudit", *args[:1], *extra, *args[1:]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
async def hook_receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    got: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append((dict(request.headers), await request.read()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", got
    await runner.cleanup()


# ----------------------------------------- 2 and 12. webhooks: headers, signatures


async def test_hostile_event_names_never_reach_headers_and_deliveries_end(
    tmp_path: Path, hook_receiver: Any
) -> None:
    base, got = hook_receiver
    later = lambda: datetime.now(UTC) + timedelta(hours=1)  # noqa: E731
    async with open_store(tmp_path / "s.db") as store, aiohttp.ClientSession() as session:
        await store.add_webhook(base + "/good", secret="k", event_names=[])
        # Stored before issue 13 refused control characters at ingest:
        evil, fine = row("login\r\nX-Injected: yes"), row("logout")
        await store.insert_rows(
            [evil, fine],
            [WebhookJob(event=webhook_event(r), event_name=r.name) for r in (evil, fine)],
        )
        dispatcher = WebhookDispatcher(store, session, clock=later, poll_interval=0)
        assert await dispatcher.deliver_due() == 2
        assert await dispatcher.deliver_due() == 0  # nothing left claimed to crash again
        statuses = sorted(d.status for d in await store.recent_deliveries())
    assert statuses == ["delivered", "delivered"]
    for headers, _ in got:
        assert "X-Injected" not in headers and "X-Tuiaudit-Event" not in headers
    assert sorted(orjson.loads(b)["name"] for _, b in got) == sorted([evil.name, fine.name])


def _readme_verifier() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Verifying webhook signatures", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


async def test_signature_has_a_timestamp_and_the_readme_verifier_refuses_replays(
    tmp_path: Path, hook_receiver: Any
) -> None:
    base, got = hook_receiver
    async with open_store(tmp_path / "s.db") as store, aiohttp.ClientSession() as session:
        await store.add_webhook(base + "/h", secret="whsec", event_names=[])
        r = row("login")
        await store.insert_rows([r], [WebhookJob(event=webhook_event(r), event_name=r.name)])
        soon = datetime.now(UTC) + timedelta(hours=1)
        await WebhookDispatcher(store, session, clock=lambda: soon).deliver_due()
    [(headers, body)] = got
    header = headers[SIGNATURE_HEADER]
    sent_at = int(header.split(",")[0].removeprefix("t="))
    assert abs(time.time() - sent_at) < 600
    # The README's snippet, executed as a receiver would run it.
    scope: dict[str, Any] = {}
    exec(_readme_verifier(), scope)
    verify = scope["verify"]
    assert verify(body, header, "whsec")
    assert not verify(body, header, "other-secret")
    assert not verify(body + b" ", header, "whsec")
    assert not verify(body, header, "whsec", now=sent_at + 3600)  # a replay an hour later


# -------------------------------------------- 8. secrets: listings, files, empty


def test_webhook_urls_are_redacted_and_secrets_come_from_files(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    assert cli("migrate", store=store).returncode == 0
    secret = tmp_path / "secret"
    secret.write_text("s3cret-from-file\n")
    url = "http://user:pa55@127.0.0.1:9/hook?api_key=KEY123&x=1"
    added = cli("webhooks", "add", url, "--secret-file", str(secret), store=store)
    assert added.returncode == 0, added.stderr
    listed = (
        cli("webhooks", "list", store=store).stdout
        + cli("webhooks", "list", "--json", store=store).stdout
    )
    tested = cli("webhooks", "test", "1", store=store)  # port 9: refused
    for text in (added.stdout, listed, tested.stderr):
        assert "pa55" not in text and "KEY123" not in text and "user:" not in text
    assert "api_key=***" in listed and tested.returncode == 1
    assert '"signed": true' in listed
    empty = cli("webhooks", "add", "http://127.0.0.1:9/h", "--secret", "", store=store)
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_token_file_and_empty_token(tmp_path: Path) -> None:
    from tuiaudit.config import ConfigError, load_settings

    token = tmp_path / "token"
    token.write_text("t0ken\n")
    assert load_settings({"token_file": str(token)}, environ={}).token == "t0ken"
    assert load_settings({}, environ={"TUIAUDIT_TOKEN_FILE": str(token)}).token == "t0ken"
    with pytest.raises(ConfigError, match="empty"):
        load_settings({"token": ""}, environ={})
    result = cli("daemon", "--token", "", "--listen", "127.0.0.1:0", store=tmp_path / "d.db")
    assert result.returncode != 0
    assert "--token: is empty" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------- 9. terminal escapes


def test_cli_output_escapes_control_characters(tmp_path: Path) -> None:
    store = tmp_path / "s.db"

    async def seed() -> None:
        async with open_store(store) as s:
            await s.insert_rows([row("\x1b[2Jwiped", note="\x9b31mred")])
            hook = await s.add_webhook(
                "http://127.0.0.1:9/\x1b]0;title\x07", secret=None, event_names=[]
            )
            await s.insert_rows([row("x")], [])
            del hook

    asyncio.run(seed())
    outputs = [
        cli("webhooks", "list", "--deliveries", "5", store=store).stdout,
        cli("export", store=store).stdout,
        cli("status", store=store).stdout,
    ]
    for out in outputs:
        assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out
    assert "\\x1b[2Jwiped" in outputs[1] or "\\u001b[2Jwiped" in outputs[1]


# ------------------------------------------------------ 10. CSV and file modes


def test_csv_export_neutralises_formulas_and_round_trips(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    names = ['=HYPERLINK("http://evil")', "+1", "-2", "@SUM(A1)", "'quoted", "plain"]

    async def seed() -> None:
        async with open_store(store) as s:
            await s.insert_rows([row(n) for n in names])

    asyncio.run(seed())
    out = tmp_path / "out.csv"
    assert cli("export", "--format", "csv", "-o", str(out), store=store).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with out.open(newline="") as fh:
        cells = [r["name"] for r in csv.DictReader(fh)]
    assert sorted(cells) == sorted(["'" + n if n != "plain" else n for n in names])
    assert not any(c[:1] in "=+-@" for c in cells)
    again = tmp_path / "again.db"
    assert cli("migrate", store=again).returncode == 0
    imported = cli("import", str(out), "--format", "csv", store=again)
    assert imported.returncode == 0, imported.stderr

    async def names_in(path: Path) -> list[str]:
        from tuiaudit.storage.base import AuditFilter

        async with open_store(path) as s:
            return sorted(r.name for r in await s.fetch_rows(AuditFilter(), limit=100))

    assert [n for n in asyncio.run(names_in(again)) if n in names] == sorted(names)


# ---------------------------------------------------------- 11. store files


async def test_store_files_planted_or_open_to_others_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    async with open_store(real):
        pass
    link = tmp_path / "link.db"
    link.symlink_to(real)
    with pytest.raises(StoreError, match="symbolic link"):
        async with open_store(link):
            pass
    os.chmod(real, 0o666)
    with pytest.raises(StoreError, match="writable by other users"):
        async with open_store(real):
            pass
    os.chmod(real, 0o600)
    wal = Path(f"{real}-wal")
    os.close(os.open(wal, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chown(wal, 4242, 4242)  # we run as root in CI: another user's planted -wal
    with pytest.raises(StoreError, match="belongs to uid 4242"):
        async with open_store(real):
            pass
    os.unlink(wal)
    # A file the user made read-only is never made writable again.
    os.chmod(real, 0o444)
    async with open_store(real, read_only=True):
        pass
    assert stat.S_IMODE(real.stat().st_mode) == 0o444
    cmd = cli("status", store=link)
    assert cmd.returncode != 0 and "symbolic link" in cmd.stderr
    assert cmd.stderr.count("\n") == 1 and "Traceback" not in cmd.stderr
