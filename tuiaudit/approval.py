"""Approval mode (DESIGN §10): nothing leaves until a person approves its exact bytes.

With ``approval = "manual"`` every body the shipper would send — the event
batches and the instance report — first waits in the store's approval queue
(``Store.approval_*``: a table, so a person's approval from another process
is one UPDATE the shipper cannot overwrite). A person approves a body by its
SHA-256 (``tuiaudit approve``, the dashboard's Next batch tab, the daemon's
``approve`` command) or rejects it (its rows go to quarantine as
``rejected-by-user`` drops).

A batch is queued as its row ids, in the body's order, and rebuilt by the
one builder (:func:`tuiaudit.batch.build_batch`) right before it is sent: the
shipper sends it only if the rebuilt body has the approved SHA-256. A body
whose rows changed (GC or the cap dropped some, a purge) is void: its rows
left get a new body, with a new SHA-256 that needs a new approval. A report's
counters move, so its exact body is stored. Every body records the policy it
was built under (version and site-rules fingerprint); a policy change voids
the queue, and a consent revoke clears it (:func:`tuiaudit.consent.revoke`).

The queue is cut by the sender's own cut (:func:`tuiaudit.batch.queue_batches`):
the journaled batch (what ``preview`` showed, :func:`tuiaudit.batch.next_batch`)
first, then ``batch_rows`` rows at a time, so the SHA-256 a preview printed is
a queued body.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tuiaudit.batch import Batch, build_batch, queue_batches, read_inflight
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.report import Report, clear_pin, next_report
from tuiaudit.site_policy import SitePolicy
from tuiaudit.storage.base import DROP_USER_REJECTED, PendingBody, Store

if TYPE_CHECKING:
    from tuiaudit.config import Settings

log = logging.getLogger("tuiaudit.shipper")

APPROVAL_AUTO = "auto"
APPROVAL_MANUAL = "manual"
APPROVAL_MODES = (APPROVAL_AUTO, APPROVAL_MANUAL)
REJECTED_REASON = DROP_USER_REJECTED
"""The quarantine reason of rows whose body a person rejected (also their drop reason)."""
KIND_EVENTS = "events"
KIND_REPORT = "report"

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ApprovalError(ValueError):
    """A SHA-256 that is malformed or that no pending body has (one line, for the user)."""


def policy_key(site: SitePolicy) -> str:
    """What a body was built under: the policy version and the site rules' fingerprint."""
    return f"v{POLICY_VERSION}:{site.fingerprint}"


def check_sha256(value: str) -> str:
    """``value`` as a lower-case SHA-256 hex digest; ``ApprovalError`` if it is not one."""
    text = value.strip().lower()
    if not _SHA256.match(text):
        raise ApprovalError(f"{value!r} is not a SHA-256 (64 hex digits, as `preview` prints)")
    return text


def _day(dt: datetime) -> str:
    return dt.date().isoformat()


def pending_batch(batch: Batch, *, policy: str, now: datetime) -> PendingBody:
    """The queue row of an events body."""
    days = [r.created_at for r in batch.rows]
    return PendingBody(
        sha256=batch.sha256,
        kind=KIND_EVENTS,
        policy=policy,
        batch_key=batch.batch_key,
        ids=list(batch.ids),
        body=None,
        events=batch.count,
        bytes=batch.encoded_bytes,
        first_day=_day(min(days)) if days else None,
        last_day=_day(max(days)) if days else None,
        queued_at=now,
    )


def pending_report(report: Report, *, policy: str, now: datetime) -> PendingBody:
    """The queue row of an instance report (its exact body is kept)."""
    day = _day(report.pinned_at or now)
    total = report.stats.get("total-events", 0)
    return PendingBody(
        sha256=report.sha256,
        kind=KIND_REPORT,
        policy=policy,
        batch_key=report.key,
        ids=[],
        body=report.body,
        events=total if isinstance(total, int) else 0,
        bytes=len(report.body),
        first_day=day,
        last_day=day,
        queued_at=now,
    )


@dataclass(frozen=True, slots=True)
class Waiting:
    """What waits for a person: the Shipping tab's and the forecast's words."""

    bodies: int
    approved: int
    oldest: datetime | None

    def text(self, now: datetime) -> str:
        if not self.bodies:
            return "manual approval: nothing is waiting yet (bodies queue at the next run)"
        age = f", oldest {fmt_age(now - self.oldest)}" if self.oldest else ""
        approved = f", {self.approved} approved" if self.approved else ""
        left = self.bodies - self.approved
        plural = "body" if left == 1 else "bodies"
        return f"waiting for approval ({left} {plural}{age}{approved})"


def waiting(bodies: Sequence[PendingBody]) -> Waiting:
    unapproved = [b.queued_at for b in bodies if b.approved_at is None]
    return Waiting(len(bodies), len(bodies) - len(unapproved), min(unapproved, default=None))


def fmt_age(delta: timedelta) -> str:
    """``2 d``, ``5 h``, ``12 min``: how long a body has waited."""
    seconds = max(delta.total_seconds(), 0)
    if seconds >= 86400:
        return f"{seconds / 86400:.0f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


# ------------------------------------------------------------------ the queue


async def sync_queue(
    store: Store,
    settings: Settings,
    *,
    instance_id: uuid.UUID | str,
    version: str,
    now: datetime,
    site: SitePolicy,
    report: bool = True,
) -> list[PendingBody]:
    """Bring the approval queue up to date with the telemetry queue; return it.

    Bodies built under another policy are voided, and so are batches whose
    rows are no longer all pending (their approval with them); the pending
    rows no queued body holds are cut into new bodies, and a report is queued
    if none waits (``report``). A lone row too big for any body is
    quarantined, as the sender does.
    """
    policy = policy_key(site)
    voided = await store.approval_clear(keep_policy=policy)
    if voided:
        log.info("approval queue: %d body(ies) voided by a policy change", voided)
    gone = await store.approval_incomplete()
    if gone:
        log.info(
            "approval queue: %d body(ies) voided: some of their rows left the queue (GC, cap, "
            "purge); the rest get a new body to approve",
            len(gone),
        )
        await store.approval_remove(gone)
    queued = await store.approval_list()
    covered = {i for body in queued if body.kind == KIND_EVENTS for i in body.ids}
    new: list[PendingBody] = []
    async for batch in queue_batches(
        store,
        settings,
        instance_id=instance_id,
        version=version,
        inflight=await read_inflight(store),
        skip=covered,
    ):
        if batch.oversize:
            await store.quarantine(
                batch.ids,
                reason=f"too large: one event makes a {batch.encoded_bytes}-byte body, "
                f"over batch_bytes={settings.batch_bytes}",
            )
            continue
        new.append(pending_batch(batch, policy=policy, now=now))
    if report and not any(b.kind == KIND_REPORT for b in queued):
        rep = await next_report(
            store, instance_id=instance_id, version=version, now=now, pin=False, site=site
        )
        new.append(pending_report(rep, policy=policy, now=now))
    if new:
        await store.approval_add(new)
    return await store.approval_list()


async def approve(store: Store, sha256s: Sequence[str], *, now: datetime) -> list[str]:
    """Approve these queued bodies; ``ApprovalError`` naming the first one not queued
    (nothing is approved then)."""
    wanted = [check_sha256(s) for s in sha256s]
    queued = {b.sha256 for b in await store.approval_list()}
    for sha in wanted:
        if sha not in queued:
            raise ApprovalError(
                f"no pending body has SHA-256 {sha}: `tuiaudit approve --list` shows the "
                "queue (a body whose rows changed was rebuilt under a new SHA-256)"
            )
    found = await store.approval_approve(wanted, at=now)
    missing = [s for s in wanted if s not in found]
    if missing:  # sent, rejected or voided meanwhile
        raise ApprovalError(f"no pending body has SHA-256 {missing[0]} any more")
    return found


async def reject(store: Store, sha256: str) -> tuple[PendingBody, int]:
    """Reject a queued body: its rows go to quarantine (``rejected-by-user``, counted
    as drops), a report is forgotten. Returns the body and how many rows moved."""
    sha = check_sha256(sha256)
    body = next((b for b in await store.approval_list() if b.sha256 == sha), None)
    if body is None:
        raise ApprovalError(f"no pending body has SHA-256 {sha}")
    moved = 0
    if body.kind == KIND_EVENTS:
        moved = await store.quarantine(body.ids, reason=REJECTED_REASON)
        await store.add_drops(DROP_USER_REJECTED, moved)
    elif body.body is not None:
        await clear_pin(store, Report(body=body.body, sha256=body.sha256))
    await store.approval_remove([sha])
    return body, moved


def approved_report(bodies: Sequence[PendingBody]) -> Report | None:
    """The approved report, if one waits and its stored body still has its SHA-256."""
    for b in bodies:
        if b.kind == KIND_REPORT and b.approved_at is not None and b.body is not None:
            if hashlib.sha256(b.body).hexdigest() != b.sha256:
                log.warning("approval queue: a stored report no longer has its SHA-256: not sent")
                return None
            return Report(body=b.body, sha256=b.sha256)
    return None


async def rebuilt(
    store: Store, body: PendingBody, *, instance_id: uuid.UUID | str, version: str
) -> Batch | None:
    """The events body rebuilt by the one builder, or None if it can no longer be:
    some rows left the queue, or the rebuilt bytes do not have the queued SHA-256
    (what the dashboard shows before a person approves; the shipper checks the same)."""
    rows = await store.telemetry_rows(body.ids)
    if len(rows) != len(body.ids):
        return None
    batch = await asyncio.to_thread(build_batch, rows, instance_id=instance_id, version=version)
    return batch if batch.sha256 == body.sha256 else None


def describe(body: PendingBody, now: datetime) -> str:
    """One line of ``tuiaudit approve --list``."""
    state = "approved" if body.approved_at is not None else "waiting"
    days = (
        body.first_day if body.first_day == body.last_day else f"{body.first_day}..{body.last_day}"
    )
    what = f"{body.events} event(s)" if body.kind == KIND_EVENTS else "instance report"
    return (
        f"{body.sha256}  {state:<8} {what}, {body.bytes} bytes, days {days}, "
        f"waited {fmt_age(now - body.queued_at)}"
    )


def queue_json(bodies: Sequence[PendingBody], now: datetime) -> list[dict[str, object]]:
    return [
        {
            "sha256": b.sha256,
            "kind": b.kind,
            "events": b.events,
            "bytes": b.bytes,
            "first-day": b.first_day,
            "last-day": b.last_day,
            "queued-at": b.queued_at.isoformat(),
            "approved-at": b.approved_at.isoformat() if b.approved_at else None,
            "waited-s": int((now - b.queued_at).total_seconds()),
        }
        for b in bodies
    ]
