"""``tuiaudit migrate``: apply the store's pending schema migrations and exit."""

from __future__ import annotations

import argparse

from tuiaudit.commands._common import run_with_store
from tuiaudit.config import Settings
from tuiaudit.storage.base import Store
from tuiaudit.storage.migrate import latest_version
from tuiaudit.storage.url import display_store_url

NAME = "migrate"
HELP = "apply pending schema migrations to the store (the daemon also does it at start)"

EPILOG = """\
examples:
  tuiaudit migrate
  tuiaudit migrate --store postgresql://app@db/audit
  tuiaudit migrate --check       exit 1 when migrations are pending, change nothing

Migrations are versioned and idempotent; running this twice is harmless.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "--check", action="store_true", help="only report the schema version; exit 1 if behind"
    )


def run(args: argparse.Namespace) -> int:
    async def check(store: Store, settings: Settings) -> int:
        current, latest = await store.schema_version(), latest_version(store.backend)
        where = display_store_url(settings.store_url)
        if current < latest:
            print(f"{where}: schema version {current}, {latest - current} migration(s) pending")
            return 1
        print(f"{where}: schema version {current}, up to date")
        return 0

    async def apply(store: Store, settings: Settings) -> int:
        before = await store.schema_version()
        after = await store.migrate()
        where = display_store_url(settings.store_url)
        if after == before:
            print(f"{where}: schema version {after}, up to date")
        else:
            print(f"{where}: migrated from schema version {before} to {after}")
        return 0

    if args.check:
        return run_with_store(args, check, migrate=False)
    return run_with_store(args, apply, migrate=False, create=True)
