"""PostgreSQL coordination between daemons, the CLI and the dashboard.

The shipping ledger, the single-shipper lease, daemon state, the command queue
and change notification (LISTEN on the schema's channel) for live dashboards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tuiaudit.storage.base import Command, DaemonState, LedgerEntry
from tuiaudit.storage.postgres_conn import PostgresBase, lock_key, map_error, now_utc

_LEDGER_COLS = (
    "id, started_at, ended_at, kind, status, events, raw_bytes, encoded_bytes, body_sha256, "
    "batch_key, attempt, http_status, error_class, error, latency_ms, sink"
)
_STATE_COLS = (
    "daemon_id, pid, host, listen, started_at, heartbeat_at, flags, paused, next_run_at, "
    "stopped_at, info"
)
_COMMAND_COLS = "id, kind, args, created_at, status, claimed_by, finished_at, result"


def _ledger(r: Any) -> LedgerEntry:
    return LedgerEntry(*r)


def _state(r: Any) -> DaemonState:
    return DaemonState(*r)


def _command(r: Any) -> Command:
    return Command(*r)


class PostgresCoordination(PostgresBase):
    """The ``Store`` methods that let daemons, the CLI and the dashboard cooperate."""

    # ---------------------------------------------------------------- ledger

    async def ledger_begin(
        self,
        *,
        kind: str,
        events: int,
        raw_bytes: int,
        encoded_bytes: int,
        body_sha256: str,
        batch_key: str,
        attempt: int,
        sink: str | None,
        started_at: datetime,
    ) -> int:
        async with self._tx() as conn:
            entry_id = await conn.fetchval(
                "INSERT INTO ship_ledger (started_at, kind, status, events, raw_bytes, "
                "encoded_bytes, body_sha256, batch_key, attempt, sink) "
                "VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                started_at, kind, events, raw_bytes, encoded_bytes, body_sha256, batch_key,
                attempt, sink,
            )  # fmt: skip
        return int(entry_id)

    async def ledger_finish(
        self,
        entry_id: int,
        *,
        status: str,
        ended_at: datetime,
        http_status: int | None = None,
        error_class: str | None = None,
        error: str | None = None,
        latency_ms: float | None = None,
    ) -> None:
        await self._execute(
            "UPDATE ship_ledger SET status = $1, ended_at = $2, http_status = $3, "
            "error_class = $4, error = $5, latency_ms = $6 WHERE id = $7",
            status, ended_at, http_status, error_class, error, latency_ms, entry_id,
        )  # fmt: skip

    async def ledger_recent(self, limit: int = 50) -> list[LedgerEntry]:
        rows = await self._fetch(
            f"SELECT {_LEDGER_COLS} FROM ship_ledger ORDER BY id DESC LIMIT $1", limit
        )
        return [_ledger(r) for r in rows]

    async def ledger_mark_interrupted(self, *, ended_at: datetime) -> int:
        return await self._execute(
            "UPDATE ship_ledger SET status = 'interrupted', ended_at = $1 WHERE status = 'running'",
            ended_at,
        )

    # ----------------------------------------------------------- shipper lease
    # A session advisory lock on a dedicated connection: it dies with the
    # process, so no expiry is needed; ttl_s only matters on SQLite.

    async def try_acquire_shipper(self, holder: str, *, ttl_s: float) -> bool:
        self._check_writable()
        self._require()
        async with self._lease_lock:
            conn = self._lease_conn
            if conn is not None:
                try:
                    await conn.fetchval("SELECT 1")
                    return self._lease_holder == holder
                except Exception:  # the connection died, and the lock with it
                    conn.terminate()
                    self._lease_conn = self._lease_holder = None
            conn = await self._connect()
            try:
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)", lock_key("shipper", self.schema)
                )
            except Exception as exc:
                conn.terminate()
                raise map_error(exc, self._where) from exc
            if not got:
                await conn.close()
                return False
            self._lease_conn, self._lease_holder = conn, holder
            return True

    async def release_shipper(self, holder: str) -> None:
        async with self._lease_lock:
            conn = self._lease_conn
            if conn is None or self._lease_holder != holder:
                return
            self._lease_conn = self._lease_holder = None
            try:
                await conn.execute(
                    "SELECT pg_advisory_unlock($1)", lock_key("shipper", self.schema)
                )
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()  # closing the session releases the lock too

    # ------------------------------------------------------ daemon state, commands

    async def put_daemon_state(self, state: DaemonState) -> None:
        s = state
        await self._execute(
            f"INSERT INTO daemon_state ({_STATE_COLS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT (daemon_id) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
            "listen = excluded.listen, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, flags = excluded.flags, "
            "paused = excluded.paused, next_run_at = excluded.next_run_at, "
            "stopped_at = excluded.stopped_at, info = excluded.info",
            s.daemon_id, s.pid, s.host, s.listen, s.started_at, s.heartbeat_at, list(s.flags),
            s.paused, s.next_run_at, s.stopped_at, s.info,
        )  # fmt: skip

    async def daemon_states(self) -> list[DaemonState]:
        rows = await self._fetch(
            f"SELECT {_STATE_COLS} FROM daemon_state ORDER BY heartbeat_at DESC, daemon_id"
        )
        return [_state(r) for r in rows]

    async def enqueue_command(self, kind: str, args: dict[str, Any] | None = None) -> int:
        async with self._tx() as conn:
            command_id = await conn.fetchval(
                "INSERT INTO command (kind, args, created_at) VALUES ($1, $2, $3) RETURNING id",
                kind,
                args or {},
                now_utc(),
            )
        return int(command_id)

    async def claim_commands(
        self, daemon_id: str, *, kinds: Sequence[str] | None = None
    ) -> list[Command]:
        inner = "SELECT id FROM command WHERE status = 'pending'"
        args: list[Any] = [daemon_id]
        if kinds is not None:
            inner += " AND kind = ANY($2::text[])"
            args.append(list(kinds))
        async with self._tx() as conn:
            rows = await conn.fetch(
                "UPDATE command SET status = 'running', claimed_by = $1 "
                f"WHERE status = 'pending' AND id IN ({inner} ORDER BY id FOR UPDATE SKIP LOCKED) "
                f"RETURNING {_COMMAND_COLS}",
                *args,
            )
        return sorted((_command(r) for r in rows), key=lambda c: c.id)

    async def finish_command(self, command_id: int, *, ok: bool, result: dict[str, Any]) -> None:
        await self._execute(
            "UPDATE command SET status = $1, finished_at = $2, result = $3 WHERE id = $4",
            "done" if ok else "failed",
            now_utc(),
            result,
            command_id,
        )

    async def get_command(self, command_id: int) -> Command | None:
        r = await self._fetchrow(f"SELECT {_COMMAND_COLS} FROM command WHERE id = $1", command_id)
        return None if r is None else _command(r)

    # ---------------------------------------------------------- change token

    def _on_notify(self, *_: Any) -> None:
        self._changes += 1

    async def change_token(self) -> int:
        self._require()
        async with self._listen_lock:
            conn = self._listen_conn
            if conn is None or conn.is_closed():
                conn = await self._connect()
                try:
                    await conn.add_listener(f"tuiaudit_{self.schema}", self._on_notify)
                except Exception as exc:
                    conn.terminate()
                    raise map_error(exc, self._where) from exc
                self._listen_conn = conn
                self._changes += 1  # (re)connected: changes may have been missed
            else:
                # A round trip makes the server deliver what is pending.
                try:
                    await conn.fetchval("SELECT 1")
                except Exception as exc:
                    conn.terminate()
                    self._listen_conn = None
                    raise map_error(exc, self._where) from exc
            await asyncio.sleep(0)  # let queued notification callbacks run
            return self._changes
