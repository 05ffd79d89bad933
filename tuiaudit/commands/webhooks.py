"""``tuiaudit webhooks``: configure webhook URLs in the store and try them (DESIGN §6)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from typing import Any

import orjson

from tuiaudit import webhook_admin
from tuiaudit.commands._common import missing_store
from tuiaudit.config import ConfigError, load_settings, read_secret_file
from tuiaudit.safe_text import escape_controls, redact_url
from tuiaudit.storage import open_store
from tuiaudit.webhook_admin import TEST_EVENT_NAME

NAME = "webhooks"
HELP = "add, list, remove, enable, disable and test webhooks"

EPILOG = """\
Webhooks receive events submitted with a "webhook" mark (true, or
{"batch-key": "...", "batch-timeout-ms": N}) while the daemon runs with the
webhooks flag. Each delivery is a JSON POST of the event without source,
context, ip-addr and type; with a secret it carries
X-Tuiaudit-Signature: t=<unix time>,v1=<HMAC-SHA256 of "<t>." + body>
(refuse a request whose t is more than a few minutes off: a replay).

examples:
  tuiaudit webhooks add https://hooks.example.com/audit --generate-secret
  tuiaudit webhooks add http://127.0.0.1:9000/in --event login-with-password --retries 3
  tuiaudit webhooks list --deliveries 20
  tuiaudit webhooks disable 2
  tuiaudit webhooks test 1
  tuiaudit webhooks remove 2"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = sub.add_parser(
        "add", help="add a webhook (prints its id)", description="Add a webhook; prints its id."
    )
    add.add_argument("url", help="http(s) URL that receives the POSTs")
    secret = add.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret", help="HMAC-SHA256 signing secret (visible in `ps`: prefer --secret-file)"
    )
    secret.add_argument("--secret-file", metavar="FILE", help="read the signing secret from FILE")
    secret.add_argument(
        "--generate-secret",
        action="store_true",
        help="generate a random secret and print it once",
    )
    add.add_argument(
        "--event",
        dest="events",
        action="append",
        default=[],
        metavar="NAME",
        help="only events with this name (repeat or comma-separate; default: every webhook event)",
    )
    add.add_argument(
        "--retries",
        type=int,
        default=0,
        metavar="N",
        help="retry a failed delivery up to N times with exponential back-off (default 0)",
    )

    lst = sub.add_parser(
        "list",
        help="list webhooks (and recent deliveries)",
        description="List the webhooks and, with --deliveries, their recent deliveries.",
    )
    lst.add_argument(
        "--deliveries", type=int, default=0, metavar="N", help="also show the last N deliveries"
    )
    lst.add_argument("--json", action="store_true", help="machine-readable output")

    for action, text in (
        ("remove", "remove a webhook and its deliveries"),
        ("enable", "enable a webhook"),
        ("disable", "disable a webhook (it receives nothing until enabled)"),
    ):
        p = sub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("id", type=int, help="webhook id (see `tuiaudit webhooks list`)")

    test = sub.add_parser(
        "test",
        help="POST a signed test event to a webhook now",
        description="POST a signed test event to a webhook now and print the answer.",
    )
    test.add_argument("id", type=int, help="webhook id (see `tuiaudit webhooks list`)")
    test.add_argument("--name", default=TEST_EVENT_NAME, help="event name to send")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    missing = missing_store(settings.store_url)
    if missing:
        return _fail(missing)
    return asyncio.run(_run(args, settings.store_url))


def _fail(message: str, status: int = 1) -> int:
    print(f"tuiaudit webhooks: {message}", file=sys.stderr)
    return status


async def _run(args: argparse.Namespace, store_url: str) -> int:
    if args.action == "add":
        # The checks before the store opens: a refused URL creates nothing.
        problem = webhook_admin.check_url(args.url)
        if problem:
            return _fail(problem, 2)
        if args.retries < 0:
            return _fail("--retries must be 0 or more", 2)

    async with open_store(store_url) as store:
        try:
            if args.action == "add":
                return await _add(store, args)
            if args.action == "list":
                return await _list(store, args)
            if args.action == "remove":
                print(await webhook_admin.remove(store, args.id))
                return 0
            if args.action in ("enable", "disable"):
                print(await webhook_admin.set_enabled(store, args.id, args.action == "enable"))
                return 0
            if args.action == "test":
                return await _test(store, args)
        except webhook_admin.WebhookError as exc:
            return _fail(str(exc))
    return _fail(f"unknown action {args.action!r}", 2)


async def _add(store: Any, args: argparse.Namespace) -> int:
    if args.generate_secret:
        secret: str | None = secrets.token_urlsafe(32)
    elif args.secret_file is not None:
        try:
            secret = read_secret_file(args.secret_file, "--secret-file")
        except ConfigError as exc:
            return _fail(str(exc), 2)
    else:
        if args.secret is not None and not args.secret.strip():
            return _fail("--secret is empty: give a secret, or leave it out for unsigned", 2)
        secret = args.secret
    webhook_id = await webhook_admin.add(
        store, args.url, secret=secret, events=args.events, retries=args.retries
    )
    print(webhook_admin.added(webhook_id, args.url))
    if args.generate_secret:
        print(f"secret (shown once, keep it for verifying signatures): {secret}")
    return 0


def _hook_dict(hook: Any) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": redact_url(hook.url),  # user info and query values may be credentials
        "enabled": hook.enabled,
        "signed": bool(hook.secret),  # the secret itself is never printed
        "events": list(hook.event_names),
        "retries": hook.retries,
        "created-at": hook.created_at.isoformat(),
    }


def _delivery_dict(d: Any) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhook-id": d.webhook_id,
        "event": d.event.get("name"),
        "batch-key": d.batch_key,
        "status": d.status,
        "attempts": d.attempts,
        "http-status": d.http_status,
        "error": d.error,
        "latency-ms": None if d.latency_ms is None else round(d.latency_ms, 1),
        "due-at": d.due_at.isoformat(),
        "delivered-at": d.delivered_at.isoformat() if d.delivered_at else None,
    }


async def _list(store: Any, args: argparse.Namespace) -> int:
    hooks = [_hook_dict(h) for h in await store.list_webhooks()]
    deliveries = []
    if args.deliveries > 0:
        deliveries = [_delivery_dict(d) for d in await store.recent_deliveries(args.deliveries)]
    if args.json:
        out: dict[str, Any] = {"webhooks": hooks}
        if args.deliveries > 0:
            out["deliveries"] = deliveries
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if not hooks:
        print("no webhooks: add one with `tuiaudit webhooks add URL`")
    for h in hooks:
        state = "enabled " if h["enabled"] else "disabled"
        events = ",".join(h["events"]) or "*"
        signed = "signed" if h["signed"] else "unsigned"
        print(
            f"{h['id']:>4}  {state}  {signed:<8}  retries={h['retries']}  "
            f"events={escape_controls(events)}  {escape_controls(h['url'])}"
        )
    if args.deliveries > 0:
        print()
        if not deliveries:
            print("no deliveries yet")
        for d in deliveries:
            status = d["http-status"] if d["http-status"] is not None else "-"
            latency = f"{d['latency-ms']}ms" if d["latency-ms"] is not None else "-"
            print(
                f"{d['id']:>6}  hook {d['webhook-id']:<4} {d['status']:<9} http={status:<4} "
                f"{latency:>9}  attempts={d['attempts']}  {escape_controls(d['event'])}"
                + (f"  error: {escape_controls(d['error'])}" if d["error"] else "")
            )
    return 0


async def _test(store: Any, args: argparse.Namespace) -> int:
    # Lazy: the daemon layer (and aiohttp) loads only when a test is sent, not
    # for every `tuiaudit webhooks list`. The same code runs the dashboard's t.
    import aiohttp

    from tuiaudit.daemon.webhook_test import find_hook, send_test

    hook = await find_hook(store, args.id)
    if hook is None:
        return _fail(webhook_admin.no_such(args.id))
    if not hook.enabled:
        print(f"note: webhook {hook.id} is disabled; sending the test anyway", file=sys.stderr)
    async with aiohttp.ClientSession() as session:
        result = await send_test(session, hook, name=args.name)
    text = webhook_admin.describe_test(result.to_dict() | {"disabled": False})
    if result.ok:
        print(text)
        return 0
    return _fail(text)
