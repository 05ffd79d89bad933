"""Configuring webhooks (DESIGN §6): one set of checks and words for the CLI and the dashboard.

``tuiaudit webhooks add|enable|disable|remove`` and the dashboard's Webhooks
tab both come here, so a URL the one refuses the other refuses too, with the
same sentence. Sending a test event is the daemon's (it holds the HTTP
client): ``tuiaudit.daemon.webhook_test``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from tuiaudit.ids import ZERO_UUID, uuid7
from tuiaudit.safe_text import escape_controls, safe_url
from tuiaudit.storage.base import Store
from tuiaudit.webhook_payload import rfc3339

TEST_EVENT_NAME = "webhook-test"


class WebhookError(ValueError):
    """A user error, as one line that says what to fix."""


def check_url(url: str) -> str | None:
    """None when ``url`` can receive webhooks, else what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"webhook URL must start with http:// or https://, got {url!r}"
    if not parts.hostname:
        return f"webhook URL {url!r} has no host"
    return None


def event_names(items: Iterable[str]) -> list[str]:
    """Names given repeated or comma-separated (``--event a --event b,c``), blanks dropped."""
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def no_such(webhook_id: int) -> str:
    return f"no webhook {webhook_id}: see `tuiaudit webhooks list`"


async def add(
    store: Store, url: str, *, secret: str | None, events: Iterable[str], retries: int
) -> int:
    """Store a new webhook after the checks; returns its id."""
    problem = check_url(url)
    if problem:
        raise WebhookError(problem)
    if retries < 0:
        raise WebhookError("retries must be 0 or more")
    return await store.add_webhook(
        url, secret=secret or None, event_names=event_names(events), retries=retries
    )


async def set_enabled(store: Store, webhook_id: int, enabled: bool) -> str:
    """Enable or disable; the sentence to print, or :class:`WebhookError`."""
    if not await store.set_webhook_enabled(webhook_id, enabled):
        raise WebhookError(no_such(webhook_id))
    return f"webhook {webhook_id} {'enabled' if enabled else 'disabled'}"


async def remove(store: Store, webhook_id: int) -> str:
    """Remove a webhook and its deliveries; the sentence, or :class:`WebhookError`."""
    if not await store.remove_webhook(webhook_id):
        raise WebhookError(no_such(webhook_id))
    return f"removed webhook {webhook_id}"


def added(webhook_id: int, url: str) -> str:
    return f"added webhook {webhook_id} → {safe_url(url)}"


def test_event(name: str, now: datetime) -> dict[str, Any]:
    """The event a test delivery carries (a webhook event's fields, ``props.test``)."""
    return {
        "id": str(uuid7(now)),
        "name": name,
        "profile-id": str(ZERO_UUID),
        "props": {"test": True},
        "tracked-at": rfc3339(now),
        "created-at": rfc3339(now),
    }


def describe_test(result: Mapping[str, Any]) -> str:
    """A test delivery's outcome (``daemon.webhook_test.TestResult.to_dict()``) in words."""
    hook = result.get("webhook-id")
    note = " (it is disabled: sent anyway)" if result.get("disabled") else ""
    if result.get("ok"):
        signed = "signed" if result.get("signed") else "unsigned"
        return (
            f"webhook {hook}: HTTP {result.get('http-status')} in "
            f"{float(result.get('latency-ms') or 0):.0f} ms ({signed}, "
            f"{result.get('delivery-id')}){note}"
        )
    return f"webhook {hook}: {escape_controls(result.get('error') or 'failed')}{note}"
