"""SQLite coordination between daemons, the CLI and the dashboard.

The shipping ledger, the single-shipper lease, daemon state, the command queue
and the change token that live dashboards poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from tuiaudit.storage.base import Command, DaemonState, LedgerEntry
from tuiaudit.storage.columns import (
    json_text,
    json_value,
    parse_ts,
    parse_ts_opt,
    ts_text,
    ts_text_opt,
)
from tuiaudit.storage.sqlite_conn import JSON_IDS, SqliteBase, now_utc

_LEDGER_COLS = (
    "id, started_at, ended_at, kind, status, events, raw_bytes, encoded_bytes, body_sha256, "
    "batch_key, attempt, http_status, error_class, error, latency_ms, sink"
)
_STATE_COLS = (
    "daemon_id, pid, host, listen, started_at, heartbeat_at, flags, paused, next_run_at, "
    "stopped_at, info"
)
_COMMAND_COLS = "id, kind, args, created_at, status, claimed_by, finished_at, result"


def _ledger(t: Any) -> LedgerEntry:
    return LedgerEntry(
        id=t[0], started_at=parse_ts(t[1]), ended_at=parse_ts_opt(t[2]), kind=t[3],
        status=t[4], events=t[5], raw_bytes=t[6], encoded_bytes=t[7], body_sha256=t[8],
        batch_key=t[9], attempt=t[10], http_status=t[11], error_class=t[12], error=t[13],
        latency_ms=t[14], sink=t[15],
    )  # fmt: skip


def _state(t: Any) -> DaemonState:
    return DaemonState(
        t[0], t[1], t[2], t[3], parse_ts(t[4]), parse_ts(t[5]), json_value(t[6], []),
        bool(t[7]), parse_ts_opt(t[8]), parse_ts_opt(t[9]), json_value(t[10], {}),
    )  # fmt: skip


def _command(t: Any) -> Command:
    return Command(
        t[0], t[1], json_value(t[2], {}), parse_ts(t[3]), t[4], t[5], parse_ts_opt(t[6]),
        json_value(t[7], {}),
    )  # fmt: skip


class SqliteCoordination(SqliteBase):
    """The ``Store`` methods that coordinate processes sharing one store."""

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
            cur = await conn.execute(
                "INSERT INTO ship_ledger (started_at, kind, status, events, raw_bytes, "
                "encoded_bytes, body_sha256, batch_key, attempt, sink) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (ts_text(started_at), kind, events, raw_bytes, encoded_bytes, body_sha256,
                 batch_key, attempt, sink),
            )  # fmt: skip
            return int(cur.lastrowid or 0)

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
        await self._write(
            "UPDATE ship_ledger SET status = ?, ended_at = ?, http_status = ?, error_class = ?, "
            "error = ?, latency_ms = ? WHERE id = ?",
            (status, ts_text(ended_at), http_status, error_class, error, latency_ms, entry_id),
        )

    async def ledger_recent(self, limit: int = 50) -> list[LedgerEntry]:
        rows = await self._fetch(
            f"SELECT {_LEDGER_COLS} FROM ship_ledger ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_ledger(t) for t in rows]

    async def ledger_mark_interrupted(self, *, ended_at: datetime) -> int:
        return await self._write(
            "UPDATE ship_ledger SET status = 'interrupted', ended_at = ? WHERE status = 'running'",
            (ts_text(ended_at),),
        )

    # ----------------------------------------------------------- shipper lease

    async def try_acquire_shipper(self, holder: str, *, ttl_s: float) -> bool:
        now = now_utc()
        n = await self._write(
            "INSERT INTO ship_lease (name, holder, expires_at) VALUES ('shipper', ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE ship_lease.holder = excluded.holder OR ship_lease.expires_at <= ?",
            (holder, ts_text(now + timedelta(seconds=ttl_s)), ts_text(now)),
        )
        return n == 1

    async def release_shipper(self, holder: str) -> None:
        await self._write("DELETE FROM ship_lease WHERE name = 'shipper' AND holder = ?", (holder,))

    # ------------------------------------------------------ daemon state, commands

    async def put_daemon_state(self, state: DaemonState) -> None:
        s = state
        await self._write(
            f"INSERT INTO daemon_state ({_STATE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (daemon_id) DO UPDATE SET pid = excluded.pid, host = excluded.host, "
            "listen = excluded.listen, started_at = excluded.started_at, "
            "heartbeat_at = excluded.heartbeat_at, flags = excluded.flags, "
            "paused = excluded.paused, next_run_at = excluded.next_run_at, "
            "stopped_at = excluded.stopped_at, info = excluded.info",
            (s.daemon_id, s.pid, s.host, s.listen, ts_text(s.started_at),
             ts_text(s.heartbeat_at), json_text(list(s.flags)), int(s.paused),
             ts_text_opt(s.next_run_at), ts_text_opt(s.stopped_at), json_text(s.info)),
        )  # fmt: skip

    async def daemon_states(self) -> list[DaemonState]:
        rows = await self._fetch(
            f"SELECT {_STATE_COLS} FROM daemon_state ORDER BY heartbeat_at DESC, daemon_id"
        )
        return [_state(t) for t in rows]

    async def enqueue_command(self, kind: str, args: dict[str, Any] | None = None) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(
                "INSERT INTO command (kind, args, created_at) VALUES (?, ?, ?)",
                (kind, json_text(args or {}), ts_text(now_utc())),
            )
            return int(cur.lastrowid or 0)

    async def claim_commands(
        self, daemon_id: str, *, kinds: Sequence[str] | None = None
    ) -> list[Command]:
        sql = "UPDATE command SET status = 'running', claimed_by = ? WHERE status = 'pending'"
        params: list[Any] = [daemon_id]
        if kinds is not None:
            sql += f" AND kind IN ({JSON_IDS})"
            params.append(json_text(list(kinds)))
        async with self._tx() as conn:
            rows = await conn.execute_fetchall(f"{sql} RETURNING {_COMMAND_COLS}", params)
        return sorted((_command(t) for t in rows), key=lambda c: c.id)

    async def finish_command(self, command_id: int, *, ok: bool, result: dict[str, Any]) -> None:
        await self._write(
            "UPDATE command SET status = ?, finished_at = ?, result = ? WHERE id = ?",
            ("done" if ok else "failed", ts_text(now_utc()), json_text(result), command_id),
        )

    async def get_command(self, command_id: int) -> Command | None:
        t = await self._fetchone(f"SELECT {_COMMAND_COLS} FROM command WHERE id = ?", (command_id,))
        return None if t is None else _command(t)

    # ---------------------------------------------------------- change token

    async def change_token(self) -> int:
        # data_version moves on commits by other connections; our own writes
        # are counted locally, so the sum moves on every commit.
        (version,) = await self._fetchone("PRAGMA data_version")
        return int(version) + self._local_writes
