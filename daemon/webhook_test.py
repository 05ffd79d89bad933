"""A signed test event POSTed to one webhook now (DESIGN §6).

``tuiaudit webhooks test`` calls :func:`send_test` itself; the dashboard
asks the daemon with a ``webhook-test`` command (the dashboard holds no HTTP
client), which runs the same function on the daemon's session.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from tuiaudit.control import ControlError
from tuiaudit.daemon.webhooks import CONNECT_TIMEOUT_S, TOTAL_TIMEOUT_S
from tuiaudit.safe_text import redact_text, safe_url
from tuiaudit.storage.base import Store, Webhook
from tuiaudit.timeutil import utcnow
from tuiaudit.webhook_admin import TEST_EVENT_NAME, no_such, test_event
from tuiaudit.webhook_payload import delivery_headers, encode_body

if TYPE_CHECKING:
    from tuiaudit.daemon.service import Daemon  # annotation only: the service imports us

TIMEOUT = aiohttp.ClientTimeout(total=TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)


@dataclass(frozen=True, slots=True)
class TestResult:
    webhook_id: int
    url: str  # redacted, terminal-safe
    ok: bool
    signed: bool
    disabled: bool
    delivery_id: str
    http_status: int | None = None
    latency_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "webhook-id": self.webhook_id,
            "url": self.url,
            "ok": self.ok,
            "signed": self.signed,
            "disabled": self.disabled,
            "delivery-id": self.delivery_id,
            "http-status": self.http_status,
            "latency-ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "error": self.error,
        }


async def find_hook(store: Store, webhook_id: int) -> Webhook | None:
    return next((h for h in await store.list_webhooks() if h.id == webhook_id), None)


async def send_test(
    session: aiohttp.ClientSession, hook: Webhook, *, name: str = TEST_EVENT_NAME
) -> TestResult:
    """POST one signed test event to ``hook`` (even a disabled one) and say what came back."""
    body = encode_body(test_event(name, utcnow()))
    url = safe_url(hook.url)
    delivery_id = f"test-{uuid.uuid4()}"
    headers = delivery_headers(body, secret=hook.secret, delivery_id=delivery_id)
    facts: dict[str, Any] = {
        "webhook_id": hook.id,
        "url": url,
        "signed": bool(hook.secret),
        "disabled": not hook.enabled,
        "delivery_id": delivery_id,
    }
    started = time.perf_counter()
    try:
        async with session.post(
            hook.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
        ) as resp:
            status = resp.status
            await resp.read()
    except TimeoutError:
        return TestResult(ok=False, error=f"{url} timed out; is the receiver up?", **facts)
    except (aiohttp.ClientError, ValueError) as exc:
        detail = redact_text(str(exc), hook.url)
        error = f"cannot reach {url}: {exc.__class__.__name__}: {detail}"
        return TestResult(ok=False, error=error, **facts)
    latency = (time.perf_counter() - started) * 1000.0
    if 200 <= status < 300:
        return TestResult(ok=True, http_status=status, latency_ms=latency, **facts)
    error = f"{url} answered HTTP {status} in {latency:.0f} ms"
    return TestResult(ok=False, http_status=status, latency_ms=latency, error=error, **facts)


def register_webhook_test(daemon: Daemon) -> None:
    """The ``webhook-test`` command: ``{"id": N, "name"?: str}`` (the dashboard's ``t``)."""

    async def webhook_test(args: dict[str, Any]) -> dict[str, Any]:
        webhook_id = args.get("id")
        if isinstance(webhook_id, bool) or not isinstance(webhook_id, int):
            raise ControlError('webhook-test needs {"id": <webhook id>}')
        name = args.get("name", TEST_EVENT_NAME)
        if not isinstance(name, str) or not name:
            raise ControlError("webhook-test: name must be a non-empty string")
        hook = await find_hook(daemon.store, webhook_id)
        if hook is None:
            raise ControlError(no_such(webhook_id))
        return (await send_test(daemon.session, hook, name=name)).to_dict()

    daemon.actions.register("webhook-test", webhook_test)
