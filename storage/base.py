"""The one async ``Store`` interface, its records and its errors.

Both back-ends (``storage.sqlite``, ``storage.postgres``) implement this
protocol with identical behaviour; every SQL statement of the project lives
in ``storage/``. Timestamps are timezone-aware UTC ``datetime`` objects,
ids are ``uuid.UUID``, JSON columns are plain ``dict``/``list`` values.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

TELEMETRY_SOURCE_PREFIX = "telemetry:"
SEARCH_MIN_CHARS = 3  # a free text this long is answered by the trigram index (DESIGN §7)

# Reasons a telemetry row leaves the queue without being sent (DESIGN §5.2).
DROP_AGE = "age"
DROP_CAP = "cap"
DROP_REJECTED = "rejected"
DROP_CONSENT = "consent-revoked"
DROP_PURGE = "user-purge"
DROP_USER_REJECTED = "rejected-by-user"  # a person rejected its body in approval mode (§10)
# Events that never got a telemetry copy (DESIGN §3.1): counted at ingest.
DROP_UNSAFE_NAME = "unsafe-name"
DROP_UNSAFE_TYPE = "unsafe-type"
DROP_PII_SCAN = "pii-scan"
DROP_SITE_POLICY = "site-policy"
DROP_REASONS = (
    DROP_AGE,
    DROP_CAP,
    DROP_REJECTED,
    DROP_CONSENT,
    DROP_PURGE,
    DROP_USER_REJECTED,
    DROP_UNSAFE_NAME,
    DROP_UNSAFE_TYPE,
    DROP_PII_SCAN,
    DROP_SITE_POLICY,
)

# Reasons a full audit row is deleted (DESIGN §9): the archive GC, the retention limit.
DELETE_ARCHIVED = "archived"
DELETE_RETENTION = "retention"
DELETE_REASONS = (DELETE_ARCHIVED, DELETE_RETENTION)


# --------------------------------------------------------------------- errors


class StoreError(Exception):
    """Base of every storage failure; messages say what to do next."""


class StoreUnavailable(StoreError, ConnectionError):
    """The store cannot be reached or cannot write (disk full, read-only, down).

    The ingest API answers 503 on it: the client may retry, nothing was half
    written.
    """


class StoreReadOnly(StoreUnavailable):
    """A write was attempted on a store opened read-only (or a read-only file)."""


class StoreConflict(StoreError):
    """A write collided with a row that already exists (e.g. an event id sent twice).

    Nothing of the batch was stored; the ingest API answers 409.
    """


class SchemaTooNew(StoreError):
    """The store was migrated by a newer tuiaudit than this one."""


class QueryCut(StoreError):
    """A read ran past the reader's statement time limit and was cancelled (DESIGN §7)."""


# -------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of ``audit_log`` (DESIGN §1, §7)."""

    id: uuid.UUID
    name: str
    type: str
    source: str
    profile_id: uuid.UUID
    ip_addr: str
    props: dict[str, Any]
    context: dict[str, Any]
    tracked_at: datetime
    created_at: datetime
    archived_at: datetime | None = None


# A frozen dataclass __init__ sets each field through object.__setattr__,
# which looks the slot up again every time: a third of the cost of building a
# row on the ingest and drain hot paths. The slot descriptors' own setters do
# the same work directly; ``new_row`` and ``storage.columns`` use them.
ROW_SETTERS = tuple(getattr(AuditRow, f.name).__set__ for f in fields(AuditRow))
(
    _set_id,
    _set_name,
    _set_type,
    _set_source,
    _set_profile_id,
    _set_ip_addr,
    _set_props,
    _set_context,
    _set_tracked_at,
    _set_created_at,
    _set_archived_at,
) = ROW_SETTERS
_new = object.__new__


def new_row(
    id: uuid.UUID,  # the field's name
    name: str,
    type: str,
    source: str,
    profile_id: uuid.UUID,
    ip_addr: str,
    props: dict[str, Any],
    context: dict[str, Any],
    tracked_at: datetime,
    created_at: datetime,
    archived_at: datetime | None = None,
) -> AuditRow:
    """``AuditRow(...)``, equal in every way, at half the cost."""
    row = _new(AuditRow)
    _set_id(row, id)
    _set_name(row, name)
    _set_type(row, type)
    _set_source(row, source)
    _set_profile_id(row, profile_id)
    _set_ip_addr(row, ip_addr)
    _set_props(row, props)
    _set_context(row, context)
    _set_tracked_at(row, tracked_at)
    _set_created_at(row, created_at)
    _set_archived_at(row, archived_at)
    return row


Cursor = tuple[datetime, uuid.UUID]
"""Keyset paging token: ``(created_at, id)`` of the last row of a page."""


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Filters shared by the dashboard, ``export`` and purges.

    ``text`` is a case-insensitive substring searched in name, source, type,
    profile id and the JSON text of props and context. ``source`` matches
    exactly, except that a value ending in ``*`` is a prefix
    (``telemetry:*``). ``since`` is inclusive, ``until`` exclusive.
    """

    source: str | None = None
    type: str | None = None
    name: str | None = None
    profile_id: uuid.UUID | None = None
    text: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    archived: bool | None = None
    """True: archived rows only; False: rows not archived (yet); None: both (DESIGN §9)."""


@dataclass(frozen=True, slots=True)
class ScanPage:
    """One bounded step of a search (``Store.scan_rows``).

    ``rows`` are the matches found, newest first. ``scanned`` is how many rows
    the step examined (rows matching the filter's non-text conditions, i.e.
    the rows the text was searched in). ``next_cursor`` is where the next step
    starts (pass it as ``before``); ``None`` means nothing older is left, so
    the search is complete.
    """

    rows: list[AuditRow]
    scanned: int
    next_cursor: Cursor | None

    @property
    def complete(self) -> bool:
        return self.next_cursor is None


@dataclass(frozen=True, slots=True)
class WebhookJob:
    """A webhook delivery to queue in the same transaction as its event (DESIGN §6).

    With a ``batch_key``, a still-undelivered job with the same key whose
    window (``batch_timeout_ms`` from its first enqueue) has not closed is
    updated (the last event wins) instead of a new one being added.
    """

    event: dict[str, Any]
    event_name: str
    batch_key: str | None = None
    batch_timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Webhook:
    id: int
    url: str
    secret: str | None
    enabled: bool
    event_names: list[str]  # empty: every webhook event
    retries: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: int
    webhook_id: int
    event: dict[str, Any]
    batch_key: str | None
    due_at: datetime
    attempts: int
    status: str  # "pending" | "delivered" | "failed"
    http_status: int | None = None
    error: str | None = None
    latency_ms: float | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One shipping attempt (the sent ledger, DESIGN §5.2)."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    kind: str  # "events" | "report"
    status: str  # "running" | "ok" | "failed" | "interrupted"
    events: int
    raw_bytes: int
    encoded_bytes: int
    body_sha256: str
    batch_key: str
    attempt: int
    http_status: int | None = None
    error_class: str | None = None  # "retryable" | "malformed" | "config"
    error: str | None = None
    latency_ms: float | None = None
    sink: str | None = None


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    row: AuditRow
    reason: str
    quarantined_at: datetime


@dataclass(frozen=True, slots=True)
class DaemonState:
    """The row each running daemon keeps fresh (heartbeat) for ``status`` and the TUI."""

    daemon_id: str
    pid: int
    host: str
    listen: str
    started_at: datetime
    heartbeat_at: datetime
    flags: list[str]
    paused: bool = False
    next_run_at: datetime | None = None
    stopped_at: datetime | None = None
    # Free-form shipper facts: telemetry uri, consent state, last error,
    # back-off until, config error, forecast ... (JSON).
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Command:
    """A request from the dashboard or CLI that a daemon picks up (DESIGN §7: the control queue)."""

    id: int
    kind: str  # "ship-now" | "pause" | "resume" | "gc" | ...
    args: dict[str, Any]
    created_at: datetime
    status: str  # "pending" | "running" | "done" | "failed"
    claimed_by: str | None = None
    finished_at: datetime | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PendingBody:
    """A body waiting for a person's approval (DESIGN §10): the approval queue's row."""

    sha256: str
    """SHA-256 (hex) of the exact body: what a person approves."""
    kind: str  # "events" | "report"
    policy: str
    """The policy version and site rules it was built under; a change voids it."""
    batch_key: str
    ids: list[uuid.UUID]
    """The telemetry rows of an events body, in the body's order (none for a report)."""
    body: bytes | None
    """A report's exact body (its counters move); None for a batch, rebuilt and verified."""
    events: int
    bytes: int
    first_day: str | None
    last_day: str | None
    queued_at: datetime
    approved_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    pending: int
    oldest_created_at: datetime | None
    quarantined: int


@dataclass(frozen=True, slots=True)
class ArchiveAttempt:
    """One archive POST of a chunk of full audit rows (DESIGN §9), as ``archive_log`` keeps it.

    The archiver builds it (``id`` 0) for ``Store.archive_chunk``, which writes
    it: a successful one in the transaction that marks its rows archived.
    """

    started_at: datetime
    ended_at: datetime
    status: str  # "ok" | "failed"
    events: int
    bytes: int
    body_sha256: str
    http_status: int | None = None
    error_class: str | None = None  # "retryable" | "malformed" | "config"
    error: str | None = None
    latency_ms: float | None = None
    sink: str | None = None
    holder: str | None = None
    id: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


ArchiveSend = Callable[[list[AuditRow]], Awaitable[ArchiveAttempt]]
"""Sends one chunk while the store holds it; returns the attempt (never raises for a
failed POST: a failure is an attempt whose status is ``failed``)."""


@dataclass(frozen=True, slots=True)
class ArchiveChunk:
    """What one ``Store.archive_chunk`` call did."""

    rows: int
    """Rows selected and handed to the sender (0: nothing left to archive)."""
    archived: int
    """Rows marked ``archived_at`` (0 unless the attempt succeeded)."""
    attempt: ArchiveAttempt | None = None
    held: bool = False
    """SQLite: another archiver holds the store's archive lease; nothing was selected."""


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    """The archive queue and retention counters (status, /metrics, dashboard)."""

    pending: int
    """Full audit rows not archived yet."""
    oldest_pending: datetime | None
    archived: int
    """Archived rows still in the store (the archive GC has not deleted them yet)."""
    deletions: dict[str, int]
    """Full rows deleted so far, by reason (every one of ``DELETE_REASONS``)."""


@dataclass(frozen=True, slots=True)
class SearchIndexStep:
    """The free-text index's progress (DESIGN §7): rows ``indexed`` (by this step, or in
    all for ``search_index_state``) and rows still ``pending`` (searched by a scan)."""

    indexed: int
    pending: int


@dataclass(frozen=True, slots=True)
class GcResult:
    age: int
    cap: int

    @property
    def total(self) -> int:
        return self.age + self.cap


# ------------------------------------------------------------------ protocol


class Store(Protocol):
    """Async access to one tuiaudit store. Open with ``storage.open_store``."""

    url: str
    read_only: bool
    backend: str  # "sqlite" | "postgresql"

    async def close(self) -> None: ...

    # -- schema
    async def migrate(self, progress: Callable[[str, int, int], None] | None = None) -> int:
        """Apply pending migrations; return the schema version now in force.

        ``progress(what, done, total)`` is told how long steps go (index builds,
        DESIGN §7); with it, SQLite also builds the free-text index of the rows
        waiting for it (without it the daemon does that in the background).
        """

    async def schema_version(self) -> int: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers a trivial query."""

    # -- audit rows (batch-first: one transaction, one executemany/COPY)
    async def insert_rows(
        self, rows: Sequence[AuditRow], webhook_jobs: Sequence[WebhookJob] = ()
    ) -> None:
        """Insert every row and queue every webhook job in ONE transaction.

        All or nothing: on any error nothing is stored and ``StoreError`` (or
        ``StoreUnavailable``) is raised. Mode B passes the full row and its
        telemetry copy together here.
        """

    async def fetch_rows(
        self, flt: AuditFilter | None = None, *, before: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        """Newest first (``created_at DESC, id DESC``), strictly older than ``before``."""

    async def fetch_rows_after(
        self, flt: AuditFilter | None = None, *, after: Cursor | None = None, limit: int = 500
    ) -> list[AuditRow]:
        """Oldest first, strictly newer than ``after`` (live tail, export)."""

    async def scan_rows(
        self,
        flt: AuditFilter | None = None,
        *,
        before: Cursor | None = None,
        limit: int,
        scan: int,
    ) -> ScanPage:
        """A search that examines at most ``scan`` rows, newest first, older than ``before``.

        The rows examined are those matching every condition of ``flt`` except
        ``text`` (an index range); the text is then searched in them only, so
        one call costs O(``scan``) however rare the text is. Returns the
        matches (at most ``limit``), how many rows were examined and where to
        continue: when ``limit`` matches are found the step ends at the last
        of them. Calling again with ``before=page.next_cursor`` until
        ``page.complete`` visits every matching row exactly once, in
        ``created_at DESC, id DESC`` order, ties included. Both ``limit`` and
        ``scan`` must be at least 1.
        """

    async def count_rows(self, flt: AuditFilter | None = None, *, limit: int | None = None) -> int:
        """Matching rows; with ``limit`` stops counting at ``limit + 1`` (honest "500 of >500").

        A ``text`` of at least ``SEARCH_MIN_CHARS`` characters is answered by
        the free-text index (DESIGN §7): exact, at the cost of its matches. A
        shorter one is a scan of every row: the dashboard searches it with
        ``scan_rows`` in bounded steps.
        """

    async def search_index_state(self) -> SearchIndexStep:
        """Rows the free-text index holds and rows waiting to be indexed (SQLite indexes
        behind the writer; PostgreSQL's GIN index is always in step: ``pending`` 0)."""

    async def search_ready(self, text: str) -> bool:
        """Whether the free-text index answers a search for ``text`` now (long enough for
        a trigram, and on SQLite few rows waiting to be indexed); else search in steps."""

    async def index_search(self, *, limit: int = 5000) -> SearchIndexStep:
        """Index up to ``limit`` waiting rows in one transaction (``indexed`` 0: none left)."""

    def iter_rows(
        self, flt: AuditFilter | None = None, *, chunk: int = 1000
    ) -> AsyncIterator[AuditRow]:
        """Every matching row oldest first, keyset-paged (bounded memory)."""

    async def get_row(self, row_id: uuid.UUID) -> AuditRow | None: ...

    # -- telemetry queue (rows whose source starts with "telemetry:")
    async def telemetry_page(self, limit: int, *, after: Cursor | None = None) -> list[AuditRow]:
        """Oldest pending telemetry rows, ``ORDER BY created_at, id``."""

    async def telemetry_rows(self, ids: Sequence[uuid.UUID]) -> list[AuditRow]:
        """The pending telemetry rows among ``ids``, in the order of ``ids`` (one query).

        Ids that are not pending telemetry rows (sent, dropped, quarantined,
        never stored, or not telemetry) are left out; a repeated id comes once.
        The shipper uses it to re-send exactly the batch in flight at a crash.
        """

    async def delete_rows(self, ids: Sequence[uuid.UUID]) -> int:
        """Delete exactly these audit rows (after the receiver accepted them)."""

    async def gc_telemetry(self, *, older_than: datetime, cap: int) -> GcResult:
        """Drop telemetry rows created before ``older_than``, then the oldest above ``cap``.

        Counts the drops (reasons ``age`` / ``cap``) in the same transaction.
        """

    async def purge_telemetry(self, flt: AuditFilter | None, *, reason: str) -> int:
        """Delete pending telemetry rows matching ``flt`` (all when None); count as ``reason``."""

    async def queue_stats(self) -> QueueStats: ...

    async def counts_by_name(self, *, source_prefix: str, since: datetime) -> dict[str, int]:
        """Rows per event name (instance report: today's telemetry counters)."""

    async def rows_per_minute(
        self, *, source_prefix: str | None, since: datetime
    ) -> list[tuple[datetime, int]]:
        """Row counts bucketed by ``created_at`` minute (sparklines, forecast)."""

    async def total_rows(self) -> int: ...

    # -- quarantine
    async def quarantine(self, ids: Sequence[uuid.UUID], *, reason: str) -> int:
        """Move telemetry rows out of the queue into ``quarantine`` (one transaction)."""

    async def list_quarantine(self, limit: int = 500) -> list[QuarantinedRow]: ...

    async def release_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        """Move quarantined rows (all when None) back into the queue."""

    async def purge_quarantine(self, ids: Sequence[uuid.UUID] | None = None) -> int:
        """Delete quarantined rows (all when None); counted as ``rejected`` drops."""

    # -- audit archive and retention (DESIGN §9)
    async def archive_chunk(
        self, send: ArchiveSend, *, limit: int, holder: str, lease_s: float
    ) -> ArchiveChunk:
        """Select the oldest ``limit`` full rows not archived, ``send`` them, mark them.

        The rows are held while ``send`` runs: PostgreSQL selects them ``FOR
        UPDATE SKIP LOCKED`` in the transaction that later sets ``archived_at``
        (so concurrent archivers take disjoint chunks, and a transaction left
        open past ``lease_s`` is ended by the server); SQLite, which has one
        write lock for the whole file, holds the store's archive lease for
        ``holder`` instead (renewed so that at least ``lease_s / 2`` remains when
        a chunk is selected) and selects and marks in two short transactions.
        ``archived_at`` is set to the attempt's ``ended_at`` only when it is
        ``ok``; the attempt is logged either way. Telemetry rows are never
        selected.
        """

    async def release_archive_lease(self, holder: str) -> None:
        """End ``holder``'s archive lease (SQLite; nothing to do on PostgreSQL)."""

    async def gc_archived(self, *, older_than: datetime, batch: int = 10_000) -> int:
        """Delete archived full rows created before ``older_than``; count as ``archived``.

        In transactions of at most ``batch`` rows, each counted as it commits.
        """

    async def delete_expired(self, *, older_than: datetime, batch: int = 10_000) -> int:
        """Delete full rows created before ``older_than``, archived or not; count as
        ``retention`` (rows an archiver holds at that moment are left for next time)."""

    async def archive_stats(self) -> ArchiveStats: ...

    async def archive_log_recent(self, limit: int = 50) -> list[ArchiveAttempt]:
        """Newest first."""

    async def prune_archive_log(self, keep: int) -> int:
        """Keep the newest ``keep`` archive attempts; return how many were deleted."""

    # -- drop accounting
    async def add_drops(self, reason: str, count: int) -> None: ...

    async def drop_counts(self) -> dict[str, int]:
        """Every reason of ``DROP_REASONS`` with its total (0 when none)."""

    # -- approval queue (DESIGN §10)
    async def approval_add(self, bodies: Sequence[PendingBody]) -> int:
        """Queue ``bodies`` (a SHA-256 already queued is kept as it is); return how many new."""

    async def approval_list(self) -> list[PendingBody]:
        """Every queued body, oldest first."""

    async def approval_approve(self, sha256s: Sequence[str], *, at: datetime) -> list[str]:
        """Mark these queued bodies approved (an earlier approval time is kept); return the
        SHA-256s that were queued."""

    async def approval_remove(self, sha256s: Sequence[str]) -> int:
        """Forget these bodies (sent, rejected or void); return how many were queued."""

    async def approval_incomplete(self) -> list[str]:
        """The SHA-256s of queued events bodies some of whose rows are no longer pending
        (GC, the cap, a purge): one statement, no row read."""

    async def approval_clear(self, *, keep_policy: str | None = None) -> int:
        """Forget every body (or every one not built under ``keep_policy``)."""

    # -- server properties (JSON values)
    async def get_property(self, key: str) -> Any | None: ...

    async def set_property(self, key: str, value: Any) -> None: ...

    async def ensure_property(self, key: str, default: Any) -> Any:
        """Insert ``default`` unless ``key`` exists (race-safe); return the stored value."""

    async def delete_property(self, key: str) -> None: ...

    # -- shipping ledger
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
    ) -> int: ...

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
    ) -> None: ...

    async def ledger_recent(self, limit: int = 50) -> list[LedgerEntry]:
        """Newest first."""

    async def ledger_mark_interrupted(self, *, ended_at: datetime) -> int:
        """Mark every ``running`` attempt ``interrupted`` (called at start)."""

    # -- single shipper across processes
    async def try_acquire_shipper(self, holder: str, *, ttl_s: float) -> bool:
        """PostgreSQL: advisory lock on a dedicated connection; SQLite: lease row.

        Re-acquiring by the same holder renews the lease.
        """

    async def release_shipper(self, holder: str) -> None: ...

    # -- daemon state and commands
    async def put_daemon_state(self, state: DaemonState) -> None: ...

    async def daemon_states(self) -> list[DaemonState]:
        """Newest heartbeat first."""

    async def enqueue_command(self, kind: str, args: dict[str, Any] | None = None) -> int: ...

    async def claim_commands(
        self, daemon_id: str, *, kinds: Sequence[str] | None = None
    ) -> list[Command]:
        """Atomically move pending commands to ``running`` for this daemon."""

    async def finish_command(
        self, command_id: int, *, ok: bool, result: dict[str, Any]
    ) -> None: ...

    async def get_command(self, command_id: int) -> Command | None: ...

    # -- webhooks
    async def add_webhook(
        self, url: str, *, secret: str | None, event_names: Sequence[str], retries: int = 0
    ) -> int: ...

    async def list_webhooks(self) -> list[Webhook]: ...

    async def remove_webhook(self, webhook_id: int) -> bool: ...

    async def set_webhook_enabled(self, webhook_id: int, enabled: bool) -> bool: ...

    async def due_deliveries(self, now: datetime, limit: int = 100) -> list[WebhookDelivery]:
        """Pending deliveries due at ``now`` (claimed or not): for display and peeking."""

    async def claim_deliveries(
        self, now: datetime, *, holder: str, limit: int = 100, lease_s: float = 60.0
    ) -> list[WebhookDelivery]:
        """Atomically take up to ``limit`` due deliveries for ``holder`` until now+lease_s.

        Deliveries claimed by another live claim are skipped, so dispatchers
        sharing a store never send one twice; a claim whose holder died lapses
        after ``lease_s`` and the delivery is taken again (at-least-once).
        ``record_delivery`` clears the claim.
        """

    async def record_delivery(
        self,
        delivery_id: int,
        *,
        status: str,
        http_status: int | None,
        error: str | None,
        latency_ms: float | None,
        retry_at: datetime | None,
    ) -> None: ...

    async def recent_deliveries(self, limit: int = 50) -> list[WebhookDelivery]: ...

    # -- change detection (dashboard live updates)
    async def change_token(self) -> int:
        """A number that changes when another connection commits (``PRAGMA
        data_version`` on SQLite; a LISTEN/NOTIFY counter on PostgreSQL)."""
