"""SQLite approval queue (DESIGN §10): the bodies waiting for a person's approval.

One row per body, keyed by its SHA-256, so a person's approval (another
process: ``tuiaudit approve``, the daemon's ``approve`` command) is a single
UPDATE that cannot be lost to the shipper rewriting the queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from tuiaudit.storage.base import PendingBody
from tuiaudit.storage.columns import parse_ts, parse_ts_opt, ts_text, ts_text_opt
from tuiaudit.storage.sqlite_conn import TELEMETRY, SqliteBase

_COLS = (
    "sha256, kind, policy, batch_key, ids, body, events, bytes, first_day, last_day, "
    "queued_at, approved_at"
)


def _pending(t: Any) -> PendingBody:
    return PendingBody(
        sha256=t[0],
        kind=t[1],
        policy=t[2],
        batch_key=t[3],
        ids=[uuid.UUID(hex=h) for h in orjson.loads(t[4])],
        body=None if t[5] is None else t[5].encode(),
        events=t[6],
        bytes=t[7],
        first_day=t[8],
        last_day=t[9],
        queued_at=parse_ts(t[10]),
        approved_at=parse_ts_opt(t[11]),
    )


def _shas(sha256s: Sequence[str]) -> str:
    return orjson.dumps(list(sha256s)).decode()


class SqliteApproval(SqliteBase):
    """The ``Store`` methods of the approval queue."""

    async def approval_add(self, bodies: Sequence[PendingBody]) -> int:
        if not bodies:
            return 0
        added = 0
        async with self._tx() as conn:
            for b in bodies:
                cur = await conn.execute(
                    f"INSERT INTO approval_queue ({_COLS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
                    (
                        b.sha256,
                        b.kind,
                        b.policy,
                        b.batch_key,
                        orjson.dumps(b.ids).decode(),  # canonical text, as audit_log.id
                        None if b.body is None else b.body.decode(),
                        b.events,
                        b.bytes,
                        b.first_day,
                        b.last_day,
                        ts_text(b.queued_at),
                        ts_text_opt(b.approved_at),
                    ),
                )
                added += max(cur.rowcount, 0)
        return added

    async def approval_list(self) -> list[PendingBody]:
        rows = await self._fetch(f"SELECT {_COLS} FROM approval_queue ORDER BY seq")
        return [_pending(t) for t in rows]

    async def approval_approve(self, sha256s: Sequence[str], *, at: datetime) -> list[str]:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE approval_queue SET approved_at = ? WHERE approved_at IS NULL "
                "AND sha256 IN (SELECT value FROM json_each(?))",
                (ts_text(at), _shas(sha256s)),
            )
            rows = await conn.execute_fetchall(
                "SELECT sha256 FROM approval_queue WHERE sha256 IN "
                "(SELECT value FROM json_each(?))",
                (_shas(sha256s),),
            )
        return [r[0] for r in rows]

    async def approval_remove(self, sha256s: Sequence[str]) -> int:
        if not sha256s:
            return 0
        return await self._write(
            "DELETE FROM approval_queue WHERE sha256 IN (SELECT value FROM json_each(?))",
            (_shas(sha256s),),
        )

    async def approval_incomplete(self) -> list[str]:
        rows = await self._fetch(
            "SELECT q.sha256 FROM approval_queue q WHERE q.kind = 'events' AND "
            "(SELECT count(*) FROM audit_log WHERE id IN (SELECT value FROM json_each(q.ids)) "
            f"AND {TELEMETRY}) < json_array_length(q.ids) ORDER BY q.seq"
        )
        return [r[0] for r in rows]

    async def approval_clear(self, *, keep_policy: str | None = None) -> int:
        if keep_policy is None:
            return await self._write("DELETE FROM approval_queue")
        return await self._write("DELETE FROM approval_queue WHERE policy <> ?", (keep_policy,))
