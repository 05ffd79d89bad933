"""Versioned migrations: ``storage/migrations/<backend>/NNNN_name.sql``."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from tuiaudit.storage.base import SchemaTooNew

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
OUTSIDE_TRANSACTION = "-- tuiaudit: outside-transaction"

Progress = Callable[[str, int, int], None]
"""``progress(what, done, total)``: a long migration step's progress (``tuiaudit migrate``)."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def outside_transaction(self) -> bool:
        """Marked to run statement by statement, outside a transaction (PostgreSQL's
        ``CREATE INDEX CONCURRENTLY``): each statement must be safe to run again."""
        return self.sql.startswith(OUTSIDE_TRANSACTION)

    def statements(self) -> list[str]:
        """The script split into statements (triggers' BEGIN … END kept whole)."""
        out: list[str] = []
        buf = ""
        for line in self.sql.splitlines(keepends=True):
            buf += line
            if sqlite3.complete_statement(buf):
                stmt = buf.strip()
                if stmt.strip(";").strip() and not _only_comments(stmt):
                    out.append(stmt)
                buf = ""
        if buf.strip() and not _only_comments(buf):
            out.append(buf.strip())
        return out


def _only_comments(sql: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in sql.splitlines())


_FOLDERS = {"postgresql": "postgres"}  # Store.backend -> folder name


@cache
def load_migrations(backend: str) -> tuple[Migration, ...]:
    folder = files("tuiaudit.storage") / "migrations" / _FOLDERS.get(backend, backend)
    found = []
    for entry in folder.iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{backend} migrations are not numbered 1..n: {versions}")
    return tuple(found)


def latest_version(backend: str) -> int:
    migrations = load_migrations(backend)
    return migrations[-1].version if migrations else 0


def pending_migrations(backend: str, current: int, where: str) -> tuple[Migration, ...]:
    """The migrations a store at schema ``current`` still needs, oldest first.

    Raises ``SchemaTooNew`` when a newer tuiaudit migrated the store.
    """
    migrations = load_migrations(backend)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise SchemaTooNew(
            f"store {where} has schema version {current}, newer than this tuiaudit "
            f"knows ({latest}): upgrade tuiaudit"
        )
    return tuple(m for m in migrations if m.version > current)
