"""The audit log: what each mode stores for an event (DESIGN §1.1, §1.2, §2).

Mode A (``audit-log``) stores the full row, mode C (``telemetry``) only the
anonymised copy, mode B both. Every row of a call, in every mode, and the
webhook jobs go to the store in ONE ``insert_rows`` call, so a batch is
stored whole or not at all. Validation happens before anything is written.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from tuiaudit.events import (
    Prepared,
    prepare_backend_event,
    prepare_backend_events,
    prepare_frontend_events,
)
from tuiaudit.policy import anonymise, anonymise_many
from tuiaudit.storage.base import AuditRow, Store, WebhookJob
from tuiaudit.timeutil import to_rfc3339, utcnow
from tuiaudit.webhook_payload import webhook_event

FLAG_AUDIT_LOG = "audit-log"
FLAG_TELEMETRY = "telemetry"
FLAG_LOGGER = "audit-log-logger"
FLAG_WEBHOOKS = "webhooks"

LOGGER_NAME = "tuiaudit.audit"


class AuditLog:
    """Turns events into stored rows according to the enabled flags."""

    def __init__(
        self,
        store: Store,
        flags: Iterable[str],
        *,
        clock: Callable[[], datetime] = utcnow,
        logger: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self.flags = frozenset(flags)
        self.clock = clock
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self._full = FLAG_AUDIT_LOG in self.flags
        self._telemetry = FLAG_TELEMETRY in self.flags
        self._log_lines = FLAG_LOGGER in self.flags
        self._webhooks = FLAG_WEBHOOKS in self.flags

    @property
    def stores_anything(self) -> bool:
        """False with neither ``audit-log`` nor ``telemetry``: clients may skip sending."""
        return self._full or self._telemetry

    def rows_for(self, row: AuditRow) -> list[AuditRow]:
        """The rows this mode stores for one prepared row (full first, then telemetry)."""
        if self._full:
            return [row, anonymise(row)] if self._telemetry else [row]
        return [anonymise(row)] if self._telemetry else []

    # -------------------------------------------------------------- ingest

    async def submit(self, event: Mapping[str, Any]) -> int:
        """One backend event (DESIGN §1.1); a bad field raises ``ValidationError``.

        Error paths are the bare field names (``props.size``).
        """
        prepared = prepare_backend_event(event, now=self.clock())
        return await self._store_prepared([prepared])

    async def submit_many(
        self,
        events: Sequence[Mapping[str, Any]],
        *,
        request_id: uuid.UUID | None = None,
        ip_addr: str | None = None,
    ) -> int:
        """A batch of backend events, all or nothing; returns the rows stored."""
        prepared = prepare_backend_events(
            events, now=self.clock(), request_id=request_id, ip_addr=ip_addr
        )
        return await self._store_prepared(prepared)

    async def ingest_frontend(
        self,
        events: Sequence[Mapping[str, Any]],
        *,
        profile_id: uuid.UUID | str,
        ip_addr: str | None,
        request_id: uuid.UUID | None = None,
    ) -> int:
        """A frontend batch (DESIGN §1.2), all or nothing; returns the rows stored."""
        rows = prepare_frontend_events(
            events,
            profile_id=profile_id,
            ip_addr=ip_addr,
            now=self.clock(),
            request_id=request_id,
        )
        return await self._store_prepared([Prepared(r) for r in rows])

    async def insert(self, event: Mapping[str, Any]) -> int:
        """The full audit row only (no telemetry copy, no webhooks), only with ``audit-log``."""
        prepared = prepare_backend_event(event, now=self.clock())
        if not self._full:
            return 0
        await self.store.insert_rows([prepared.row])
        return 1

    async def _store_prepared(self, prepared: Sequence[Prepared]) -> int:
        # rows_for for a whole batch: the ingest hot path.
        full_rows = [p.row for p in prepared]
        rows: list[AuditRow]
        if not self._telemetry:
            rows = full_rows if self._full else []
        elif not self._full:
            rows = anonymise_many(full_rows)
        else:  # full row first, then its telemetry copy, event by event
            rows = full_rows * 2  # the right length; both halves are overwritten
            rows[::2] = full_rows
            rows[1::2] = anonymise_many(full_rows)
        jobs: list[WebhookJob] = []
        if self._webhooks:
            for p in prepared:
                if p.webhook is not None:
                    row = p.row
                    jobs.append(
                        WebhookJob(
                            event=webhook_event(row),
                            event_name=row.name,
                            batch_key=p.webhook.batch_key,
                            batch_timeout_ms=p.webhook.batch_timeout_ms,
                        )
                    )
        if rows or jobs:
            await self.store.insert_rows(rows, jobs)
        if self._log_lines:
            for row in full_rows:
                self._log_line(row)
        return len(rows)

    def _log_line(self, row: AuditRow) -> None:
        # Names and ids only: props and context values never reach a log.
        self.logger.info(
            orjson.dumps(
                {
                    "event": "audit",
                    "id": str(row.id),
                    "name": row.name,
                    "type": row.type,
                    "source": row.source,
                    "profile-id": str(row.profile_id),
                    "props": len(row.props),
                    "tracked-at": to_rfc3339(row.tracked_at),
                }
            ).decode()
        )
