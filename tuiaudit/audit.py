"""The audit log: what each mode stores for an event (DESIGN §1.1, §1.2, §2).

Mode A (``audit-log``) stores the full row, mode C (``telemetry``) only the
anonymised copy, mode B both. Every row of a call, in every mode, and the
webhook jobs go to the store in ONE ``insert_rows`` call, so a batch is
stored whole or not at all. Validation happens before anything is written.

An event the policy withholds (DESIGN §3.1: unsafe name or type, personal
data in its name, a site rule) gets no telemetry copy, only its full audit
row; it is counted as a drop by reason right after the insert. Only the
daemon's own events (``submit_own``) may pass through the policy unchanged:
the marker is that code path, never a field a client could send.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import orjson

from tuiaudit.events import (
    Prepared,
    prepare_backend_event,
    prepare_backend_events,
    prepare_frontend_events,
)
from tuiaudit.policy import (
    POLICY,
    anonymise,
    anonymise_many,
    prepare_and_anonymise_frontend,
    withheld_reason,
)
from tuiaudit.policy_frontend import prepare_and_apply_frontend_columns
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy
from tuiaudit.storage.base import AuditRow, Store, WebhookJob
from tuiaudit.storage.columns import ColumnRows
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
        site: SitePolicy = DEFAULT_SITE,
    ) -> None:
        self.store = store
        self.site = site
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
        shared = anonymise(row, site=self.site) if self._telemetry else None
        full = [row] if self._full else []
        return full if shared is None else [*full, shared]

    # -------------------------------------------------------------- ingest

    async def submit(self, event: Mapping[str, Any]) -> int:
        """One backend event (DESIGN §1.1); a bad field raises ``ValidationError``.

        Error paths are the bare field names (``props.size``).
        """
        prepared = prepare_backend_event(event, now=self.clock())
        return await self._store_prepared([prepared])

    async def submit_own(self, event: Mapping[str, Any]) -> int:
        """An event the daemon itself made (``instance-start``): a pass-through event
        keeps its props (DESIGN §3.1). Never reachable from the ingest API."""
        prepared = prepare_backend_event(event, now=self.clock())
        return await self._store_prepared([prepared], trusted=True)

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
        if (
            self._telemetry
            and self._full
            and not self._log_lines  # (each row's log line needs the row)
            and getattr(self.store, "takes_columns", False)
        ):
            stored = await self._store_frontend_columns(events, profile_id, ip_addr, request_id)
            if stored is not None:
                return stored
        if self._telemetry:  # validation and the policy in one pass (the same rows)
            full, shared = prepare_and_anonymise_frontend(
                events,
                profile_id=profile_id,
                ip_addr=ip_addr,
                now=self.clock(),
                request_id=request_id,
                site=self.site,
            )
            return await self._store_rows(full, shared=shared)
        rows = prepare_frontend_events(
            events,
            profile_id=profile_id,
            ip_addr=ip_addr,
            now=self.clock(),
            request_id=request_id,
        )
        return await self._store_rows(rows)  # frontend events carry no webhook mark

    async def _store_frontend_columns(
        self,
        events: Sequence[Mapping[str, Any]],
        profile_id: uuid.UUID | str,
        ip_addr: str | None,
        request_id: uuid.UUID | None,
    ) -> int | None:
        """Mode B to a store that takes the rows' column tuples (an ingest worker's,
        for SQLite): the one pass makes them without the ``AuditRow`` objects
        (issue 20: the worker's CPU per event), and ``_store_rows``' insert and
        drops follow. None when the tuples cannot be made (nothing was counted
        or stored: the caller takes the rows' way)."""
        rows, shared, columns = prepare_and_apply_frontend_columns(
            events,
            profile_id=profile_id,
            ip_addr=ip_addr,
            now=self.clock(),
            request_id=request_id,
            policy=POLICY,
            site=self.site,
            rows=False,
        )
        if columns is None:
            return None
        # rows and shared: the events that took the two steps, any withheld copy among them
        withheld = self._withheld(rows, shared) if not all(shared) else {}
        if columns:
            await self.store.insert_rows(cast(Any, ColumnRows(columns)))
        for reason, n in withheld.items():
            await self.store.add_drops(reason, n)
        return len(columns)

    async def insert(self, event: Mapping[str, Any]) -> int:
        """The full audit row only (no telemetry copy, no webhooks), only with ``audit-log``."""
        prepared = prepare_backend_event(event, now=self.clock())
        if not self._full:
            return 0
        await self.store.insert_rows([prepared.row])
        return 1

    async def _store_prepared(self, prepared: Sequence[Prepared], *, trusted: bool = False) -> int:
        return await self._store_rows([p.row for p in prepared], prepared, trusted=trusted)

    async def _store_rows(
        self,
        full_rows: list[AuditRow],
        prepared: Sequence[Prepared] = (),
        *,
        trusted: bool = False,
        shared: list[AuditRow | None] | None = None,
    ) -> int:
        """``rows_for`` for a whole batch (the ingest hot path), then one insert;
        ``prepared`` (the same events) brings their webhook marks, ``shared``
        their telemetry copies when already made (else ``anonymise_many``)."""
        rows: list[AuditRow]
        withheld: dict[str, int] = {}
        if not self._telemetry:
            rows = full_rows if self._full else []
        else:
            if shared is None:
                shared = anonymise_many(full_rows, site=self.site, trusted=trusted)
            # (a row is always true: all() finds a None without AuditRow.__eq__)
            some_withheld = not all(shared)
            if some_withheld:
                withheld = self._withheld(full_rows, shared)
            if not self._full:
                rows = [r for r in shared if r is not None]
            elif not some_withheld:  # full row first, then its telemetry copy, event by event
                rows = full_rows * 2  # the right length; both halves are overwritten
                rows[::2] = full_rows
                rows[1::2] = cast(list[AuditRow], shared)  # no None in it (some_withheld is False)
            else:
                rows = []
                for full, copy in zip(full_rows, shared, strict=True):
                    rows.append(full)
                    if copy is not None:
                        rows.append(copy)
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
        for reason, n in withheld.items():
            await self.store.add_drops(reason, n)
        if self._log_lines:
            for row in full_rows:
                self._log_line(row)
        return len(rows)

    def _withheld(
        self, rows: Sequence[AuditRow], shared: Sequence[AuditRow | None]
    ) -> dict[str, int]:
        """Withheld events (no telemetry copy) counted by drop reason."""
        out: dict[str, int] = {}
        for row, copy in zip(rows, shared, strict=True):
            if copy is None:
                reason = withheld_reason(row.source, row.type, row.name, site=self.site)
                if reason is not None:
                    out[reason] = out.get(reason, 0) + 1
        return out

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
