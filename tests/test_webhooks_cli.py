"""``tuiaudit webhooks`` against real stores and a loopback receiver."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tuiaudit.cli import main
from tuiaudit.webhook_payload import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature


@pytest.fixture(autouse=True)
def existing_store(store_url: str) -> None:
    """Only daemon, migrate and import create a store (issue 14): create it first."""
    assert main(["migrate", "--store", store_url]) == 0


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]], list[int]]]:
    """A loopback receiver on its own thread and loop (the CLI runs ``asyncio.run``)."""
    seen: list[tuple[dict[str, str], bytes]] = []
    statuses: list[int] = []
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def handle(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        return web.Response(status=statuses.pop(0) if statuses else 204)

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        box["port"] = runner.addresses[0][1]
        box["stop"] = asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await runner.cleanup()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),))
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{box['port']}/hook", seen, statuses
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        loop.close()


def test_add_list_disable_enable_remove(store_url: str, capsys: Any) -> None:
    s = ("--store", store_url)
    code, out, _ = cli(
        capsys, "webhooks", *s, "add", "https://example.test/a", "--secret", "k",
        "--event", "login-with-password,register-profile", "--retries", "3",
    )  # fmt: skip
    assert code == 0 and "added webhook 1" in out
    code, out, _ = cli(capsys, "webhooks", *s, "add", "http://127.0.0.1:1/b")
    assert code == 0 and "added webhook 2" in out

    code, out, _ = cli(capsys, "webhooks", *s, "disable", "2")
    assert code == 0
    code, out, _ = cli(capsys, "webhooks", *s, "list", "--json")
    assert code == 0
    hooks = orjson.loads(out)["webhooks"]
    assert [(h["id"], h["enabled"], h["signed"], h["retries"]) for h in hooks] == [
        (1, True, True, 3),
        (2, False, False, 0),
    ]
    assert hooks[0]["events"] == ["login-with-password", "register-profile"]
    assert all("secret" not in h for h in hooks)  # never printed

    code, out, _ = cli(capsys, "webhooks", *s, "list")
    assert "disabled" in out and "https://example.test/a" in out
    assert cli(capsys, "webhooks", *s, "enable", "2")[0] == 0
    assert cli(capsys, "webhooks", *s, "remove", "1")[0] == 0
    code, out, _ = cli(capsys, "webhooks", *s, "list", "--json", "--deliveries", "5")
    assert [h["id"] for h in orjson.loads(out)["webhooks"]] == [2]
    assert orjson.loads(out)["deliveries"] == []


def test_unknown_id_and_bad_url(store_url: str, capsys: Any) -> None:
    s = ("--store", store_url)
    code, _, err = cli(capsys, "webhooks", *s, "remove", "42")
    assert code == 1 and "no webhook 42" in err and "webhooks list" in err
    code, _, err = cli(capsys, "webhooks", *s, "disable", "42")
    assert code == 1
    code, _, err = cli(capsys, "webhooks", *s, "add", "ftp://example.test/x")
    assert code == 2 and "http:// or https://" in err


def test_generate_secret_prints_it_once(store_url: str, capsys: Any) -> None:
    code, out, _ = cli(
        capsys, "webhooks", "--store", store_url, "add", "https://e.test/", "--generate-secret"
    )
    assert code == 0
    secret = out.split("secret (shown once, keep it for verifying signatures): ")[1].strip()
    assert len(secret) >= 32


def test_test_sends_a_signed_event(store_url: str, capsys: Any, receiver: Any) -> None:
    url, seen, statuses = receiver
    s = ("--store", store_url)
    cli(capsys, "webhooks", *s, "add", url, "--secret", "s3cret")
    code, out, _ = cli(capsys, "webhooks", *s, "test", "1")
    assert code == 0 and "HTTP 204" in out and "signed" in out
    [(headers, body)] = seen
    assert verify_signature(body, "s3cret", headers[SIGNATURE_HEADER])
    assert headers[DELIVERY_HEADER].startswith("test-")
    event = orjson.loads(body)
    assert set(event) == {"id", "name", "profile-id", "props", "tracked-at", "created-at"}
    assert event["name"] == "webhook-test"

    statuses.append(500)
    code, _, err = cli(capsys, "webhooks", *s, "test", "1", "--name", "x")
    assert code == 1 and "HTTP 500" in err
