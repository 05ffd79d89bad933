"""PostgreSQL approval queue (DESIGN §10): the bodies waiting for a person's approval.

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
from tuiaudit.storage.postgres_conn import TELEMETRY, PostgresBase, status_count

_COLS = (
    "sha256, kind, policy, batch_key, ids, body, events, bytes, first_day, last_day, "
    "queued_at, approved_at"
)


def _pending(r: Any) -> PendingBody:
    return PendingBody(
        sha256=r[0],
        kind=r[1],
        policy=r[2],
        batch_key=r[3],
        ids=[uuid.UUID(hex=h) for h in orjson.loads(r[4])],
        body=None if r[5] is None else r[5].encode(),
        events=r[6],
        bytes=r[7],
        first_day=r[8],
        last_day=r[9],
        queued_at=r[10],
        approved_at=r[11],
    )


class PostgresApproval(PostgresBase):
    """The ``Store`` methods of the approval queue."""

    async def approval_add(self, bodies: Sequence[PendingBody]) -> int:
        if not bodies:
            return 0
        added = 0
        async with self._tx() as conn:
            for b in bodies:
                status = await conn.execute(
                    f"INSERT INTO approval_queue ({_COLS}) VALUES "
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                    "ON CONFLICT (sha256) DO NOTHING",
                    b.sha256,
                    b.kind,
                    b.policy,
                    b.batch_key,
                    orjson.dumps(b.ids).decode(),
                    None if b.body is None else b.body.decode(),
                    b.events,
                    b.bytes,
                    b.first_day,
                    b.last_day,
                    b.queued_at,
                    b.approved_at,
                )
                added += status_count(status)
        return added

    async def approval_list(self) -> list[PendingBody]:
        rows = await self._fetch(f"SELECT {_COLS} FROM approval_queue ORDER BY seq")
        return [_pending(r) for r in rows]

    async def approval_approve(self, sha256s: Sequence[str], *, at: datetime) -> list[str]:
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE approval_queue SET approved_at = $1 WHERE approved_at IS NULL "
                "AND sha256 = ANY($2::text[])",
                at,
                list(sha256s),
            )
            rows = await conn.fetch(
                "SELECT sha256 FROM approval_queue WHERE sha256 = ANY($1::text[])", list(sha256s)
            )
        return [r[0] for r in rows]

    async def approval_remove(self, sha256s: Sequence[str]) -> int:
        if not sha256s:
            return 0
        return await self._execute(
            "DELETE FROM approval_queue WHERE sha256 = ANY($1::text[])", list(sha256s)
        )

    async def approval_incomplete(self) -> list[str]:
        rows = await self._fetch(
            "SELECT q.sha256 FROM approval_queue q WHERE q.kind = 'events' AND "
            "(SELECT count(*) FROM audit_log WHERE id = ANY(ARRAY(SELECT "
            f"jsonb_array_elements_text(q.ids::jsonb)::uuid)) AND {TELEMETRY}) "
            "< jsonb_array_length(q.ids::jsonb) ORDER BY q.seq"
        )
        return [r[0] for r in rows]

    async def approval_clear(self, *, keep_policy: str | None = None) -> int:
        if keep_policy is None:
            return await self._execute("DELETE FROM approval_queue")
        return await self._execute("DELETE FROM approval_queue WHERE policy <> $1", keep_policy)
