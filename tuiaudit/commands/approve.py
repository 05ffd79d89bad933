"""``tuiaudit approve``: approval mode's yes (DESIGN §10); ``tuiaudit reject`` is its no.

Both first bring the approval queue up to date (``tuiaudit.approval.sync_queue``,
what the shipper does before it sends), cut exactly as ``preview`` cuts, so
the SHA-256 ``preview`` printed is a body here.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from tuiaudit import __version__
from tuiaudit.approval import (
    ApprovalError,
    approve,
    describe,
    queue_json,
    sync_queue,
    waiting,
)
from tuiaudit.commands._common import eprint, run_with_store
from tuiaudit.config import SettingHelp, Settings, add_setting_arguments
from tuiaudit.consent import effective_site
from tuiaudit.effective import daemon_settings, live_daemon
from tuiaudit.instance import get_instance_id
from tuiaudit.storage.base import PendingBody, Store
from tuiaudit.timeutil import utcnow

NAME = "approve"
HELP = (
    "approval mode (--approval manual): approve bodies by SHA-256 so the shipper sends "
    "them; --list shows what waits"
)

EPILOG = """\
examples:
  tuiaudit preview                          # the next body, decoded, with its SHA-256
  tuiaudit approve 3f5a…e1                  # that exact body may leave now
  tuiaudit approve --list                   # every body waiting, its size, days and age
  tuiaudit approve --all-pending            # approve them all (asks first; --yes does not)
  tuiaudit reject 3f5a…e1                   # its rows go to quarantine, never sent

With `--approval manual` (TUIAUDIT_APPROVAL=manual) on the daemon, every body
the shipper would send (event batches and the instance report) waits here
until a person approves its SHA-256; the shipper then sends exactly those
bytes (a batch is rebuilt and sent only if it still has the approved
SHA-256). A body whose rows changed meanwhile (GC, the cap) is void: its rows
get a new body and a new SHA-256 to approve. A consent revoke or a policy
change clears the queue.
Exit status: 0 when every SHA-256 was approved, 1 when one is not a pending
body (nothing is approved then), 2 when --all-pending was not confirmed.
"""

QUEUE_SETTINGS = (
    SettingHelp("batch_rows", "rows per telemetry batch (default: the daemon's, else 10000)", "N"),
    SettingHelp(
        "batch_bytes",
        "max encoded bytes per batch body (default: the daemon's, else 4 MiB)",
        "BYTES",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, QUEUE_SETTINGS)
    parser.add_argument("sha256", nargs="*", metavar="SHA256", help="the bodies to approve")
    parser.add_argument(
        "--all-pending", action="store_true", help="approve every body waiting (asks first)"
    )
    parser.add_argument("--yes", action="store_true", help="do not ask (with --all-pending)")
    parser.add_argument("--list", action="store_true", help="list the bodies waiting; approve none")
    parser.add_argument("--json", action="store_true", help="the queue as JSON")


async def current_queue(store: Store, settings: Settings) -> list[PendingBody]:
    """The approval queue, brought up to date as the shipper does before it sends
    (with the live daemon's batch sizes where this command was not given its own, and
    its site rules: rules of another config file here must not void its queue)."""
    now = utcnow()
    daemon = live_daemon(await store.daemon_states(), now)
    effective = daemon_settings(settings, daemon)
    site = await effective_site(store) if daemon is not None else settings.policy
    return await sync_queue(
        store,
        effective,
        instance_id=await get_instance_id(store),
        version=__version__,
        now=now,
        site=site,
    )


def print_queue(bodies: list[PendingBody], *, as_json: bool) -> None:
    now = utcnow()
    if as_json:
        print(orjson.dumps(queue_json(bodies, now), option=orjson.OPT_INDENT_2).decode())
        return
    for body in bodies:
        print(describe(body, now))
    print(waiting(bodies).text(now))


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        bodies = await current_queue(store, settings)
        if args.list or not (args.sha256 or args.all_pending):
            print_queue(bodies, as_json=args.json)
            return 0
        wanted = list(args.sha256)
        if args.all_pending:
            todo = [b for b in bodies if b.approved_at is None]
            if not todo:
                print("nothing is waiting for approval")
                return 0
            events = sum(b.events for b in todo if b.kind == "events")
            question = (
                f"approve {len(todo)} body(ies) ({events:,} events) without looking at "
                "them one by one?"
            )
            if not args.yes and not confirm(question):
                eprint(
                    "tuiaudit approve: not confirmed, nothing approved (answer y at the "
                    "prompt, or pass --yes)"
                )
                return 2
            wanted += [b.sha256 for b in todo]
        try:
            done = await approve(store, list(dict.fromkeys(wanted)), now=utcnow())
        except ApprovalError as exc:
            eprint(f"tuiaudit approve: {exc}")
            return 1
        for sha in done:
            print(f"approved {sha}")
        print("the shipper sends them at its next run (`tuiaudit ship` runs one now)")
        return 0

    return run_with_store(args, main)
