"""``tuiaudit reject``: approval mode's no (DESIGN §10).

A rejected batch's rows move to quarantine with the reason
``rejected-by-user`` and are counted as drops; a rejected report is forgotten
(the next run builds a new one, which waits for approval in turn).
"""

from __future__ import annotations

import argparse

from tuiaudit.approval import ApprovalError, reject
from tuiaudit.commands._common import eprint, run_with_store
from tuiaudit.commands.approve import QUEUE_SETTINGS, current_queue
from tuiaudit.config import Settings, add_setting_arguments
from tuiaudit.storage.base import Store

NAME = "reject"
HELP = "approval mode: reject bodies by SHA-256 (their rows go to quarantine, never sent)"

EPILOG = """\
examples:
  tuiaudit approve --list                   # what waits, with SHA-256s
  tuiaudit reject 3f5a…e1                   # those rows never leave

The rows go to quarantine (reason rejected-by-user, counted as drops): the
dashboard's Shipping tab lists them, and releasing them puts them back in the
queue, where they wait for a new approval.
Exit status: 0 when every SHA-256 was rejected, 1 when one is not a pending body.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    add_setting_arguments(parser, QUEUE_SETTINGS)
    parser.add_argument("sha256", nargs="+", metavar="SHA256", help="the bodies to reject")


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        await current_queue(store, settings)
        for sha in dict.fromkeys(args.sha256):
            try:
                body, moved = await reject(store, sha)
            except ApprovalError as exc:
                eprint(f"tuiaudit reject: {exc}")
                return 1
            what = f"{moved} row(s) quarantined" if body.kind == "events" else "report dropped"
            print(f"rejected {body.sha256}: {what}")
        return 0

    return run_with_store(args, main)
