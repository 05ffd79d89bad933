"""``tuiaudit migrate``: apply the store's pending schema migrations and exit.

Long steps show their progress: building the free-text index of an existing
store (DESIGN §7; SQLite in committed chunks, PostgreSQL with CREATE INDEX
CONCURRENTLY). Interrupted (Ctrl+C, a crash), running it again resumes: SQLite
goes on from its last chunk, PostgreSQL builds again the index it was building.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

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

Migrations are versioned and idempotent; running this twice is harmless. Building
the search index of an existing store shows a progress bar; interrupted, run the
command again to resume.
"""

PLAIN_EVERY_S = 5.0  # without a terminal: one progress line this often


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument(
        "--check", action="store_true", help="only report the schema version; exit 1 if behind"
    )


class Shown:
    """``progress(what, done, total)`` for the store: a bar on a terminal, else lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.bar: Progress | None = None
        self.task: dict[str, TaskID] = {}
        self.last_line = 0.0
        if out.isatty():
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=out),
                transient=False,
            )

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.bar is None:
            now = time.monotonic()
            if now - self.last_line >= PLAIN_EVERY_S or (total and done >= total):
                self.last_line = now
                print(f"{what}: {done:,} of {total:,}", file=self.out, flush=True)
            return
        if not self.task:
            self.bar.start()
        key = what.split(":")[0]
        if key not in self.task:
            self.task[key] = self.bar.add_task(what, total=total or None)
        self.bar.update(self.task[key], description=what, completed=done, total=total or None)

    def close(self) -> None:
        if self.bar is not None and self.task:
            self.bar.stop()


def run(args: argparse.Namespace) -> int:
    async def check(store: Store, settings: Settings) -> int:
        current, latest = await store.schema_version(), latest_version(store.backend)
        where = display_store_url(settings.store_url)
        state = await store.search_index_state()
        waiting = (
            f"; {state.pending:,} row(s) waiting for the search index" if state.pending else ""
        )
        if current < latest:
            print(f"{where}: schema version {current}, {latest - current} migration(s) pending")
            return 1
        print(f"{where}: schema version {current}, up to date{waiting}")
        return 0

    async def apply(store: Store, settings: Settings) -> int:
        before = await store.schema_version()
        where = display_store_url(settings.store_url)
        shown = Shown(sys.stderr)
        try:
            after = await store.migrate(progress=shown)
        except (KeyboardInterrupt, asyncio.CancelledError):
            shown.close()
            print(
                f"tuiaudit migrate: interrupted; run it again to resume ({where})",
                file=sys.stderr,
            )
            return 130
        shown.close()
        if after == before:
            print(f"{where}: schema version {after}, up to date")
        else:
            print(f"{where}: migrated from schema version {before} to {after}")
        return 0

    if args.check:
        return run_with_store(args, check, migrate=False)
    return run_with_store(args, apply, migrate=False, create=True)
