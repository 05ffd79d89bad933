"""``tuiaudit tui`` (and bare ``tuiaudit``): the dashboard on the store."""

from __future__ import annotations

import argparse
import asyncio

from tuiaudit.commands._common import eprint, missing_store
from tuiaudit.config import load_settings
from tuiaudit.storage import open_store
from tuiaudit.storage.base import SchemaTooNew, StoreError
from tuiaudit.storage.url import display_store_url

NAME = "tui"
HELP = "open the dashboard on the store (the default command)"

EPILOG = """\
examples:
  tuiaudit                         # the dashboard on the default store
  tuiaudit tui --store /srv/app/tuiaudit.db
  tuiaudit tui --read-only         # browse only: every action is hidden
  tuiaudit tui --store postgresql://app@db/audit --refresh 2

Press ? in the dashboard for every key; ctrl+p lists every action.
The dashboard reads through a read-only connection; actions (ship now,
pause, GC, consent, purges) are queued as commands that the running daemon
performs, so they need `tuiaudit daemon` running on the same store.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="browse only: hide every action and never write to the store",
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often to check the store for changes (default 1)",
    )


async def _prepare(url: str) -> None:
    """Migrate an existing store once (the dashboard's reader is read-only)."""
    async with open_store(url):
        pass


def run(args: argparse.Namespace) -> int:
    # Lazy on purpose (as in commands/daemon.py): Textual loads only to run it.
    from tuiaudit.tui.app import AuditApp

    settings = load_settings(args)
    url = settings.store_url
    # The dashboard never creates a store: a mistyped path would show an
    # empty dashboard that no daemon ever writes to.
    missing = missing_store(url)
    if missing:
        eprint(f"tuiaudit tui: {missing}")
        return 1
    try:
        if not args.read_only:
            asyncio.run(_prepare(url))
    except SchemaTooNew as exc:
        eprint(f"tuiaudit tui: {exc}")
        return 1
    except StoreError as exc:
        eprint(
            f"tuiaudit tui: store {display_store_url(url)}: {exc}\n"
            "Open another store with --store, or browse it with --read-only."
        )
        return 1
    AuditApp(
        url,
        settings=settings,
        read_only=args.read_only,
        refresh_interval=max(0.1, args.refresh),
    ).run()
    return 0
