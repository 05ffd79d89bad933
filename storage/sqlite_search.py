"""SQLite free-text search through the FTS5 trigram index ``audit_search`` (DESIGN §7).

The index is filled behind the writer (migration 0005 says why): rows up to
the watermark ``audit_search_state.upto`` (a rowid) are indexed, the few
above it are not yet. ``index_search`` indexes the next chunk in one short
transaction (the daemon calls it in the background, ``tuiaudit migrate`` until
none is left, with progress); a search reads the index for the rows up to the
watermark and scans only the rows above it.

A search therefore costs O(matches + unindexed rows), not O(rows):

* ``_text_hits`` counts the candidate rowids: the index's phrase match of
  the needle's rarest 6 characters (``query.rare_window``: every trigram of
  them, in order, case folded), or of the whole needle when the window is
  common, plus the unindexed rowids. The rows' text is then tested with the very LIKE a scan
  would use, so a search answers exactly what a scan would (the index folds
  the case of non-ASCII letters too, LIKE only of ASCII ones);
* a needle of fewer than 3 characters has no trigram: it is a scan (the
  dashboard searches it in bounded steps, ``Store.scan_rows``);
* a common needle (more candidates than ``RARE_CAP``) reads its first page by
  walking the ``created_at`` index with the LIKE, which finds a page of
  matches within a few thousand rows, instead of sorting every candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuiaudit.storage.base import SEARCH_MIN_CHARS, SearchIndexStep
from tuiaudit.storage.migrate import Progress
from tuiaudit.storage.query import Where, rare_window
from tuiaudit.storage.sqlite_conn import SqliteBase

# At most this many candidates: read them all, sort, page. Each costs a row
# lookup and a LIKE (about 60 µs on 2,000,000 rows, 2 loaded cores); past it a
# page is found sooner by walking the created_at index (a match in every
# 1,000 rows: 100,000 rows for a page of 100, about 2 µs each).
RARE_CAP = 2_000
INDEX_CHUNK = 5_000  # rows per indexing transaction (about 0.1 s of the write lock)
# FTS5 merges no segments by itself (migration 0007): each chunk is followed by
# a merge step of this many pages per row indexed, in its own transaction. 64
# pages per 50-row chunk kept the index as merged as FTS5's automerge did; 16
# fell behind until FTS5's emergency merge (crisismerge) took 2.4 s at once.
MERGE_PAGES_PER_ROW = 64 / 50
MERGE_MIN_PAGES = 64
_MERGE = "INSERT INTO audit_search (audit_search, rank) VALUES ('merge', ?)"

_COLUMNS = "name, type, source, profile_id, ip_addr, props, context"
_INDEX_RANGE = (
    f"INSERT INTO audit_search (rowid, {_COLUMNS}) "
    f"SELECT rowid, {_COLUMNS} FROM audit_log WHERE rowid > ? AND rowid <= ?"
)


def fts_phrase(needle: str) -> str:
    """The FTS5 query matching ``needle`` as one phrase (quotes doubled)."""
    return '"' + needle.replace('"', '""') + '"'


def uses_index(needle: str | None) -> bool:
    """Whether a text search for ``needle`` can be answered by the trigram index."""
    return needle is not None and len(needle) >= SEARCH_MIN_CHARS


@dataclass(frozen=True, slots=True)
class TextHits:
    """How many candidates a needle has (capped at ``RARE_CAP + 1``)."""

    phrase: str
    candidates: int

    @property
    def rare(self) -> bool:
        return self.candidates <= RARE_CAP

    def query(self, select: str, where: Where, needle: str) -> str:
        """``select`` over the candidates joined to their rows, with ``where``'s conditions
        (it gets the candidates' parameters and the LIKE every scan uses).

        The candidates drive the join (CROSS JOIN keeps them outside): the planner
        must not walk the ``created_at`` index and test each of millions of rows.
        """
        phrase = where.p(self.phrase)
        where.text(needle)
        return (
            "WITH hits(r) AS MATERIALIZED ("
            f"SELECT rowid FROM audit_search WHERE audit_search MATCH {phrase}"
            # The watermark is read by this statement: one snapshot, so a row
            # indexed meanwhile is never counted twice.
            " UNION ALL SELECT rowid FROM audit_log"
            " WHERE rowid > (SELECT upto FROM audit_search_state)) "
            f"{select} FROM hits CROSS JOIN audit_log ON audit_log.rowid = hits.r{where.sql}"
        )


class SqliteSearch(SqliteBase):
    """The trigram index: its watermark, its chunks, and the candidate sets of a search."""

    async def _search_upto(self) -> int:
        row = await self._fetchone("SELECT upto FROM audit_search_state")
        return int(row[0]) if row is not None else 0

    async def search_index_state(self) -> SearchIndexStep:
        """How many rows are indexed and how many are waiting (rowid range sizes)."""
        upto = await self._search_upto()
        row = await self._fetchone(
            "SELECT (SELECT count(*) FROM audit_log WHERE rowid <= ?1),"
            " (SELECT count(*) FROM audit_log WHERE rowid > ?1)",
            (upto,),
        )
        return SearchIndexStep(indexed=int(row[0]), pending=int(row[1]))

    async def search_ready(self, text: str) -> bool:
        """Whether the index answers ``text`` now: long enough, and few rows waiting."""
        if not uses_index(text):
            return False
        row = await self._fetchone(
            "SELECT count(*) FROM (SELECT 1 FROM audit_log"
            " WHERE rowid > (SELECT upto FROM audit_search_state) LIMIT ?)",
            (RARE_CAP + 1,),
        )
        return int(row[0]) <= RARE_CAP

    async def index_search(self, *, limit: int = INDEX_CHUNK) -> SearchIndexStep:
        """Index the next ``limit`` unindexed rows in one transaction; what is left.

        ``indexed`` is the rows this call indexed (0: the index is complete).
        The watermark moves in the same transaction, so an interrupted build
        resumes where its last chunk committed. ``pending`` is the rowids above
        the new watermark (``max(rowid)`` minus it): exact while rows are only
        appended, high by the rows deleted above the watermark. Counting the
        rows instead walks every one of them in the table (a backlog of
        100,000 rows read about 50 MB of pages per chunk, inside the write
        lock); ``search_index_state`` still counts exactly.
        """
        async with self._tx() as conn:
            (upto,) = next(iter(await conn.execute_fetchall("SELECT upto FROM audit_search_state")))
            rows = list(
                await conn.execute_fetchall(
                    "SELECT rowid FROM audit_log WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (upto, limit),
                )
            )
            if rows:
                end = int(rows[-1][0])
                await conn.execute(_INDEX_RANGE, (upto, end))
                await conn.execute("UPDATE audit_search_state SET upto = ?", (end,))
                ((top,),) = await conn.execute_fetchall("SELECT max(rowid) FROM audit_log")
        # The merge step: its own transaction, so a writer waiting for the lock
        # gets it between the two (migration 0007 says why). Also when nothing
        # was left to index: deleted rows leave segments of their own to merge
        # (on a merged index the step changes nothing).
        async with self._tx() as conn:
            pages = max(MERGE_MIN_PAGES, round(len(rows) * MERGE_PAGES_PER_ROW))
            await conn.execute(_MERGE, (pages,))
        if not rows:
            return SearchIndexStep(indexed=0, pending=0)
        return SearchIndexStep(indexed=len(rows), pending=max(0, int(top or 0) - end))

    async def build_search_index(self, progress: Progress) -> None:
        """Index every waiting row, chunk by chunk, reporting ``progress`` after each."""
        state = await self.search_index_state()
        total, done = state.pending, 0
        progress("search index", done, total)
        while True:
            step = await self.index_search()
            if not step.indexed:
                break
            done += step.indexed
            total = max(total, done + step.pending)  # rows stored meanwhile are indexed too
            progress("search index", done, total)

    async def _text_hits(self, needle: str) -> TextHits:
        """The candidates of ``needle`` (``uses_index`` must hold): index matches + unindexed."""
        best: TextHits | None = None
        for part in dict.fromkeys((rare_window(needle), needle)):
            phrase = fts_phrase(part)
            row = await self._fetchone(
                "SELECT (SELECT count(*) FROM (SELECT rowid FROM audit_search"
                "  WHERE audit_search MATCH ?1 LIMIT ?2)),"
                " (SELECT count(*) FROM (SELECT rowid FROM audit_log"
                "  WHERE rowid > (SELECT upto FROM audit_search_state) LIMIT ?2))",
                (phrase, RARE_CAP + 1),
            )
            hits = TextHits(phrase, int(row[0]) + int(row[1]))
            if best is None or hits.candidates < best.candidates:
                best = hits
            if best.rare:
                break  # the whole needle is looked up only when its window is common
        assert best is not None
        return best

    async def _search_page(
        self, columns: str, where: Where, needle: str, order: str, limit: int
    ) -> list[Any] | None:
        """``where``'s rows matching ``needle`` through the index; None when the needle is
        common (the caller walks the ``created_at`` index instead)."""
        hits = await self._text_hits(needle)
        if not hits.rare:
            return None
        sql = hits.query(f"SELECT {columns}", where, needle)
        return await self._fetch(f"{sql} ORDER BY {order} LIMIT {int(limit)}", where.params)

    async def _search_count(self, where: Where, needle: str, limit: int | None) -> int:
        """Exact count of ``where``'s rows matching ``needle`` (at most ``limit + 1``)."""
        hits = await self._text_hits(needle)
        sql = hits.query("SELECT 1", where, needle)
        if limit is not None:
            sql = f"{sql} LIMIT {int(limit) + 1}"
        (n,) = await self._fetchone(f"SELECT count(*) FROM ({sql})", where.params)
        return int(n)
