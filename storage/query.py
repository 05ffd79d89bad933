"""SQL pieces shared by both back-ends: filters and keyset conditions.

Each back-end supplies a ``Dialect`` (placeholder style and parameter
conversions), so ``AuditFilter`` means exactly the same thing on both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.base import TELEMETRY_SOURCE_PREFIX, AuditFilter, AuditRow, Cursor


@dataclass(frozen=True, slots=True)
class Dialect:
    placeholder: Callable[[int], str]  # 1-based parameter number -> "?" or "$n"
    ts: Callable[[datetime], Any]
    uid: Callable[[uuid.UUID], Any]
    # Exactly the predicate of the partial queue index, so the planner uses it.
    telemetry_pred: str
    text_columns: tuple[str, ...]  # expressions searched by AuditFilter.text
    like: str  # "LIKE" (SQLite: ASCII case-insensitive) or "ILIKE"


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Where:
    """Accumulates ``AND``-ed conditions and their parameters."""

    def __init__(self, dialect: Dialect, params: list[Any] | None = None) -> None:
        self.d = dialect
        self.parts: list[str] = []
        self.params: list[Any] = params if params is not None else []

    def p(self, value: Any) -> str:
        self.params.append(value)
        return self.d.placeholder(len(self.params))

    def add(self, sql: str) -> None:
        self.parts.append(sql)

    def telemetry(self) -> Where:
        self.parts.append(self.d.telemetry_pred)
        return self

    def source_prefix(self, prefix: str) -> None:
        if prefix == TELEMETRY_SOURCE_PREFIX:
            self.telemetry()
        elif prefix:
            self.add(f"substr(source, 1, {len(prefix)}) = {self.p(prefix)}")

    def filter(self, flt: AuditFilter | None) -> Where:
        if flt is None:
            return self
        d = self.d
        if flt.source is not None:
            if flt.source.endswith("*"):
                self.source_prefix(flt.source[:-1])
            else:
                self.add(f"source = {self.p(flt.source)}")
        if flt.type is not None:
            self.add(f"type = {self.p(flt.type)}")
        if flt.name is not None:
            self.add(f"name = {self.p(flt.name)}")
        if flt.profile_id is not None:
            self.add(f"profile_id = {self.p(d.uid(flt.profile_id))}")
        if flt.since is not None:
            self.add(f"created_at >= {self.p(d.ts(flt.since))}")
        if flt.until is not None:
            self.add(f"created_at < {self.p(d.ts(flt.until))}")
        if flt.text:
            ph = self.p(f"%{escape_like(flt.text)}%")
            ors = " OR ".join(f"{col} {d.like} {ph} ESCAPE '\\'" for col in d.text_columns)
            self.add(f"({ors})")
        return self

    def before(self, cur: Cursor | None) -> Where:
        if cur is not None:
            self.add(
                f"(created_at, id) < ({self.p(self.d.ts(cur[0]))}, {self.p(self.d.uid(cur[1]))})"
            )
        return self

    def after(self, cur: Cursor | None) -> Where:
        if cur is not None:
            self.add(
                f"(created_at, id) > ({self.p(self.d.ts(cur[0]))}, {self.p(self.d.uid(cur[1]))})"
            )
        return self

    @property
    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.parts)}" if self.parts else ""


async def iter_pages(
    fetch_after: Callable[..., Awaitable[list[AuditRow]]], flt: AuditFilter | None, chunk: int
) -> AsyncIterator[AuditRow]:
    """Every row oldest first, one keyset page in memory at a time."""
    after: Cursor | None = None
    while True:
        page = await fetch_after(flt, after=after, limit=chunk)
        for row in page:
            yield row
        if len(page) < chunk:
            return
        last = page[-1]
        after = (last.created_at, last.id)
