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

from tuiaudit.storage.base import (
    SEARCH_MIN_CHARS,
    TELEMETRY_SOURCE_PREFIX,
    AuditFilter,
    AuditRow,
    Cursor,
    ScanPage,
)

SEARCH_SEPARATOR = "\x1f"  # between the fields of PostgreSQL's search text (migration 0005)


@dataclass(frozen=True, slots=True)
class Dialect:
    placeholder: Callable[[int], str]  # 1-based parameter number -> "?" or "$n"
    ts: Callable[[datetime], Any]
    uid: Callable[[uuid.UUID], Any]
    # Exactly the predicate of the partial queue index, so the planner uses it.
    telemetry_pred: str
    text_columns: tuple[str, ...]  # expressions searched by AuditFilter.text
    like: str  # "LIKE" (SQLite: ASCII case-insensitive) or "ILIKE"
    # PostgreSQL: the indexed expression joining text_columns (DESIGN §7); "" for none.
    search_expr: str = ""


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(needle: str) -> str:
    """``%needle%`` with the LIKE wildcards in it taken literally."""
    return f"%{escape_like(needle)}%"


_UUID_CHARS = frozenset("0123456789abcdefABCDEF-")


def could_be_in_uuid(text: str) -> bool:
    """Whether ``text`` can be a substring of a UUID's canonical text (hex digits, dashes)."""
    return len(text) <= 36 and _UUID_CHARS.issuperset(text)


def text_columns_for(d: Dialect, text: str) -> tuple[str, ...]:
    """The columns worth searching for ``text``: a profile id only when it could match.

    Each column searched costs a LIKE per row (about a tenth of a full scan
    each, measured on SQLite); one LIKE over a concatenation is slower still
    (it builds a string per row), so columns that cannot match are skipped.
    """
    if could_be_in_uuid(text):
        return d.text_columns
    return tuple(c for c in d.text_columns if not c.startswith("profile_id"))


WINDOW = 6  # characters of a needle looked up in a trigram index (4 trigrams)


def _rarity(ch: str) -> int:
    return 1 if (ch.islower() and ch.isascii()) or ch in ". -_" else 3


def rare_window(needle: str) -> str:
    """The ``WINDOW`` characters of ``needle`` most likely to be rare in the rows.

    A trigram index reads each trigram's whole list of rows: a needle holding a
    trigram every row has ("exa" of example.com) costs 0.15-0.2 s on 2,000,000
    rows however rare the needle is (FTS5 and pg_trgm's GIN alike). Digits,
    capitals, ``@`` and non-ASCII letters make rarer trigrams than lower-case
    words, so the window with most of them is looked up; the LIKE then tests the
    whole needle on the candidates (DESIGN §7).
    """
    if len(needle) <= WINDOW:
        return needle
    starts = range(len(needle) - WINDOW + 1)
    best = max(starts, key=lambda i: (sum(_rarity(c) for c in needle[i : i + WINDOW]), -i))
    return needle[best : best + WINDOW]


class Where:
    """Accumulates ``AND``-ed conditions and their parameters."""

    def __init__(self, dialect: Dialect, params: list[Any] | None = None) -> None:
        self.d = dialect
        self.parts: list[str] = []
        self.params: list[Any] = params if params is not None else []
        self.rare_window = False  # see ``text``

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

    def filter(self, flt: AuditFilter | None, *, text: bool = True) -> Where:
        """AND every condition of ``flt``; ``text=False`` leaves out the text search."""
        if flt is None:
            return self
        d = self.d
        if flt.source is not None:
            if flt.source.endswith("*"):
                self.source_prefix(flt.source[:-1])
            else:
                self.add(f"source = {self.p(flt.source)}")
        if flt.type is not None:
            self.exact_or_glob("type", flt.type)
        if flt.name is not None:
            self.exact_or_glob("name", flt.name)
        if flt.profile_id is not None:
            self.add(f"profile_id = {self.p(d.uid(flt.profile_id))}")
        if flt.since is not None:
            self.add(f"created_at >= {self.p(d.ts(flt.since))}")
        if flt.until is not None:
            self.add(f"created_at < {self.p(d.ts(flt.until))}")
        if flt.archived is not None:
            self.add("archived_at IS NOT NULL" if flt.archived else "archived_at IS NULL")
        if text and flt.text:
            self.text(flt.text)
        return self

    def exact_or_glob(self, column: str, value: str) -> None:
        """``column = value``; a ``*`` in ``value`` matches any run of characters
        (``login*``, ``*-file``), case-insensitively like the text search."""
        if "*" not in value:
            self.add(f"{column} = {self.p(value)}")
            return
        pattern = "%".join(escape_like(part) for part in value.split("*"))
        self.add(f"{column} {self.d.like} {self.p(pattern)} ESCAPE '\\'")

    def text(self, needle: str) -> Where:
        """Case-insensitive substring of the searched columns (``%`` and ``_`` literal).

        With the dialect's ``search_expr`` (PostgreSQL), one ILIKE of the indexed
        expression (its trigram GIN index answers it), unless the needle is too
        short for a trigram or holds the separator between the fields. When
        ``rare_window`` is set (the store found the needle's rare window rare),
        the index answers the window and the whole needle is tested on its
        candidates only: the GIN scan then skips the needle's common trigrams.
        Otherwise the whole needle, whose statistics let the planner walk the
        ``created_at`` index for a common one.
        """
        d = self.d
        ph = self.p(f"%{escape_like(needle)}%")
        if d.search_expr and len(needle) >= SEARCH_MIN_CHARS and SEARCH_SEPARATOR not in needle:
            window = rare_window(needle)
            if not self.rare_window or window == needle:
                self.add(f"{d.search_expr} {d.like} {ph} ESCAPE '\\'")
                return self
            # ``|| ''`` is another expression: a filter on the candidates, not an index condition.
            wp = self.p(f"%{escape_like(window)}%")
            self.add(
                f"{d.search_expr} {d.like} {wp} ESCAPE '\\'"
                f" AND ({d.search_expr} || '') {d.like} {ph} ESCAPE '\\'"
            )
            return self
        ors = " OR ".join(f"{col} {d.like} {ph} ESCAPE '\\'" for col in text_columns_for(d, needle))
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

    def at_or_after(self, cur: Any) -> Where:
        """``(created_at, id) >= cur``, with ``cur`` in the store's own column values."""
        self.add(f"(created_at, id) >= ({self.p(cur[0])}, {self.p(cur[1])})")
        return self

    def copy(self) -> Where:
        w = Where(self.d, list(self.params))
        w.parts = list(self.parts)
        return w

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


Run = Callable[[str, list[Any]], Awaitable[list[Any]]]


def check_scan(limit: int, scan: int) -> None:
    """Reject a ``scan_rows`` call that could never make progress (before any I/O)."""
    if limit < 1 or scan < 1:
        raise ValueError(f"scan_rows needs limit >= 1 and scan >= 1 (got {limit}, {scan})")


async def scan_page(
    run: Run,
    d: Dialect,
    columns: str,
    flt: AuditFilter | None,
    *,
    before: Cursor | None,
    limit: int,
    scan: int,
    to_row: Callable[[Any], AuditRow],
    to_cursor: Callable[[Any], Cursor],
) -> ScanPage:
    """``Store.scan_rows`` for both back-ends, as three index-bounded statements.

    1. the ``scan``-th row older than ``before`` (the step's lower bound): an
       ``OFFSET`` walk of the ``(created_at, id)`` index, no row read;
    2. the matches inside ``[bound, before)``: the text is searched only there;
    3. a count of the rows examined, only when it is not simply ``scan``.

    ``run(sql, params)`` executes one statement; the back-end runs the three on
    one connection, one after the other. One statement with window functions
    (row numbers to know where the ``limit``-th match lies) measured 2.5x
    slower on SQLite: the window re-sorts every examined row.
    """
    check_scan(limit, scan)
    base = Where(d).filter(flt, text=False).before(before)
    order = "ORDER BY created_at DESC, id DESC"
    probe = base.copy()
    offset = probe.p(scan - 1)
    found = await run(
        f"SELECT created_at, id FROM audit_log{probe.sql} {order} LIMIT 1 OFFSET {offset}",
        probe.params,
    )
    bound = found[0] if found else None  # None: fewer than ``scan`` rows are left
    window = base.copy()
    if bound is not None:
        window.at_or_after(bound)
    matches = window.copy()
    if flt is not None and flt.text:
        matches.text(flt.text)
    rows = [
        to_row(t)
        for t in await run(
            f"SELECT {columns} FROM audit_log{matches.sql} {order} LIMIT {matches.p(limit)}",
            matches.params,
        )
    ]
    if len(rows) == limit:
        # The step ends at its last match: count the rows examined up to it.
        last = rows[-1]
        upto = base.copy().at_or_after((d.ts(last.created_at), d.uid(last.id)))
        ((scanned,),) = await run(f"SELECT count(*) FROM audit_log{upto.sql}", upto.params)
        return ScanPage(rows, int(scanned), (last.created_at, last.id))
    if bound is not None:
        return ScanPage(rows, scan, to_cursor(bound))
    ((scanned,),) = await run(f"SELECT count(*) FROM audit_log{window.sql}", window.params)
    return ScanPage(rows, int(scanned), None)
