"""The journal of the batch in flight: a re-send after a crash keeps its body and key.

Telemetry rows of one day share their ``created_at``, so rows stored after a
crash can sort among the queued rows and move the page boundaries; the
shipper journals each batch (``shipping-inflight``) before its POST and
re-sends exactly that batch first. Both back-ends, a real loopback receiver;
the crash is a ``delete_rows`` that raises after the receiver accepted the
batch (the ledger already says ``ok``), or an attempt the receiver refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from shipper_support import (
    INSTANCE,
    T0,
    Reply,
    ScriptedReceiver,
    consent,
    rows,
    settings_for,
    shipper_for,
    telemetry_row,
)

from tuiaudit.batch import INFLIGHT_PROPERTY, batch_key, next_batch, read_inflight
from tuiaudit.codec import decode_envelope, kw
from tuiaudit.storage.base import AuditRow

BATCH_ROWS = 10


class Crash(Exception):
    """Stands for kill -9 between the receiver's 204 and the delete."""


def ids_of(req: Any) -> list[uuid.UUID]:
    return [e[kw("id")] for e in decode_envelope(req.body)["events"]]


def between(n: int, *, offset: int = 100) -> list[AuditRow]:
    """Rows that sort between rows(…)[k] and rows(…)[k + 1] (what a restart's
    instance-start copy or new same-day events do)."""
    return [
        telemetry_row(offset + k, created_at=T0 + timedelta(seconds=k, milliseconds=500))
        for k in range(n)
    ]


async def crash_after_accept(store: Any, monkeypatch: pytest.MonkeyPatch) -> ScriptedReceiver:
    """One run whose first batch is accepted, then the process 'dies' before the delete."""

    async def die(ids: Any) -> int:
        raise Crash

    rx = ScriptedReceiver()
    with monkeypatch.context() as m:
        m.setattr(store, "delete_rows", die)
        async with (
            rx.serve(),
            shipper_for(store, settings_for(rx.url, batch_rows=BATCH_ROWS)) as sh,
        ):
            with pytest.raises(Crash):
                await sh.run_once()
    assert len(rx.events_requests()) == 1
    return rx


async def restart(store: Any) -> ScriptedReceiver:
    rx = ScriptedReceiver()
    async with rx.serve(), shipper_for(store, settings_for(rx.url, batch_rows=BATCH_ROWS)) as sh:
        rr = await sh.run_once()
    assert rr.ok
    return rx


async def ok_entries(store: Any) -> list[Any]:
    """Successful events attempts, oldest first."""
    return [e for e in reversed(await store.ledger_recent()) if e.kind == "events"]


async def test_a_full_journal_is_resent_with_its_key_and_body(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = rows(30)
    await store.insert_rows(page)
    await consent(store)
    crashed = (await crash_after_accept(store, monkeypatch)).events_requests()[0]
    assert ids_of(crashed) == [r.id for r in page[:BATCH_ROWS]]
    journal = await store.get_property(INFLIGHT_PROPERTY)
    assert journal == {
        "key": crashed.headers["Idempotency-Key"],
        "ids": [r.id.hex for r in page[:BATCH_ROWS]],
    }
    newcomers = between(3)
    await store.insert_rows(newcomers)  # they sort inside the interrupted page

    rx = await restart(store)
    first, *rest = rx.events_requests()
    assert first.body == crashed.body
    assert first.headers["Idempotency-Key"] == crashed.headers["Idempotency-Key"]
    crash_entry, resent_entry, *_ = await ok_entries(store)
    assert crash_entry.status == resent_entry.status == "ok"
    assert resent_entry.body_sha256 == crash_entry.body_sha256
    assert resent_entry.batch_key == crash_entry.batch_key == crashed.headers["Idempotency-Key"]
    # Every row once in this run; the queue and the journal are empty.
    sent = Counter(i for req in rx.events_requests() for i in ids_of(req))
    assert set(sent) == {r.id for r in page + newcomers} and set(sent.values()) == {1}
    assert (await store.queue_stats()).pending == 0
    assert await store.get_property(INFLIGHT_PROPERTY) is None
    assert all(len(ids_of(r)) <= BATCH_ROWS for r in rest)


async def test_a_refused_batch_is_retried_with_its_key(store: Any) -> None:
    """A retryable failure, then rows that sort inside the batch: the retry is the same batch."""
    page = rows(12)
    await store.insert_rows(page)
    await consent(store)
    rx = ScriptedReceiver()
    rx.on_request = lambda req: Reply(503) if req.json["type"] == "telemetry-events" else None
    async with rx.serve(), shipper_for(store, settings_for(rx.url, batch_rows=BATCH_ROWS)) as sh:
        assert not (await sh.run_once()).ok
    (refused,) = rx.events_requests()
    await store.insert_rows(between(2))
    first = (await restart(store)).events_requests()[0]
    assert first.body == refused.body
    assert first.headers["Idempotency-Key"] == refused.headers["Idempotency-Key"]


async def test_a_partial_journal_sends_the_rest_first_under_a_new_key(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = rows(25)
    await store.insert_rows(page)
    await consent(store)
    crashed = (await crash_after_accept(store, monkeypatch)).events_requests()[0]
    gone = [page[2].id, page[7].id]
    assert await store.quarantine(gone, reason="test") == 2
    newcomers = between(4)
    await store.insert_rows(newcomers)

    left = [r.id for r in page[:BATCH_ROWS] if r.id not in gone]
    inflight = await read_inflight(store)
    assert inflight.found and not inflight.whole and [r.id for r in inflight.rows] == left
    preview = await next_batch(
        store, settings_for(None, batch_rows=BATCH_ROWS), instance_id=INSTANCE, version="9.9.9"
    )
    assert preview is not None and preview.ids == left

    rx = await restart(store)
    first, *rest = rx.events_requests()
    assert ids_of(first) == left
    assert first.headers["Idempotency-Key"] == batch_key(left) != crashed.headers["Idempotency-Key"]
    assert first.body == preview.body
    sent = Counter(i for req in rx.events_requests() for i in ids_of(req))
    expected = {r.id for r in page + newcomers} - set(gone)
    assert set(sent) == expected and set(sent.values()) == {1}
    assert not {i for req in rest for i in ids_of(req)} & set(left)


async def test_a_journal_whose_rows_are_gone_is_ignored_and_cleared(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = rows(15)
    await store.insert_rows(page)
    await consent(store)
    await crash_after_accept(store, monkeypatch)
    # The crash fell between the delete and the journal's clearing.
    await store.delete_rows([r.id for r in page[:BATCH_ROWS]])
    inflight = await read_inflight(store)
    assert inflight.found and inflight.rows == [] and not inflight.whole
    settings = settings_for(None, batch_rows=BATCH_ROWS)
    preview = await next_batch(store, settings, instance_id=INSTANCE, version="9.9.9")
    assert preview is not None and preview.ids == [r.id for r in page[BATCH_ROWS:]]

    rx = await restart(store)
    assert [ids_of(r) for r in rx.events_requests()] == [[r.id for r in page[BATCH_ROWS:]]]
    assert await store.get_property(INFLIGHT_PROPERTY) is None


async def test_an_unreadable_journal_is_ignored(store: Any) -> None:
    page = rows(5)
    await store.insert_rows(page)
    await consent(store)
    await store.set_property(INFLIGHT_PROPERTY, {"key": "x", "ids": ["not-hex", 3]})
    inflight = await read_inflight(store)
    assert inflight.found and inflight.rows == []
    rx = await restart(store)
    assert [ids_of(r) for r in rx.events_requests()] == [[r.id for r in page]]
    assert await store.get_property(INFLIGHT_PROPERTY) is None


async def test_preview_is_the_resumed_batch(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    page = rows(30)
    await store.insert_rows(page)
    await consent(store)
    crashed = (await crash_after_accept(store, monkeypatch)).events_requests()[0]
    await store.insert_rows(between(5))
    settings = settings_for(None, batch_rows=BATCH_ROWS)
    preview = await next_batch(store, settings, instance_id=INSTANCE, version="9.9.9")
    assert preview is not None
    assert preview.body == crashed.body
    assert preview.batch_key == crashed.headers["Idempotency-Key"]
    first = (await restart(store)).events_requests()[0]
    assert first.body == preview.body
    assert (await ok_entries(store))[1].body_sha256 == preview.sha256


def force_order(store: Any, monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """Make the shipper fetch its next page before ("page") or after ("delete") it
    deletes the resumed batch's rows."""
    fetched, deleted = asyncio.Event(), asyncio.Event()
    real_page, real_delete = store.telemetry_page, store.delete_rows

    async def telemetry_page(limit: int, *, after: Any = None) -> list[AuditRow]:
        if first == "delete":
            await deleted.wait()
        got = await real_page(limit, after=after)
        fetched.set()
        return got

    async def delete_rows(ids: Any) -> int:
        if first == "page":
            await fetched.wait()
        n = await real_delete(ids)
        deleted.set()
        return n

    monkeypatch.setattr(store, "telemetry_page", telemetry_page)
    monkeypatch.setattr(store, "delete_rows", delete_rows)


@pytest.mark.parametrize("first", ["page", "delete"])
async def test_the_producer_does_not_send_resumed_rows_twice(
    store: Any, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """The resumed rows stay queued until accepted while the next page is fetched ahead:
    they are left out of that page, which still holds batch_rows rows. Both orders of
    "next page fetched" and "resumed rows deleted" are forced."""
    page = rows(40)
    await store.insert_rows(page)
    await consent(store)
    await crash_after_accept(store, monkeypatch)
    # Every queued row, resumed or not, gets a newcomer right after it.
    extra = between(40)
    await store.insert_rows(extra)

    force_order(store, monkeypatch, first)
    rx = await restart(store)
    batches = [ids_of(r) for r in rx.events_requests()]
    assert batches[0] == [r.id for r in page[:BATCH_ROWS]]
    sent = Counter(i for b in batches for i in b)
    assert set(sent) == {r.id for r in page + extra} and set(sent.values()) == {1}
    # In "page" order the first page after the resumed batch was half resumed rows.
    assert [len(b) for b in batches[1:]] == [BATCH_ROWS] * 7
    queue_order = sorted(page[BATCH_ROWS:] + extra, key=lambda r: (r.created_at, r.id))
    assert [i for b in batches[1:] for i in b] == [r.id for r in queue_order]


@pytest.mark.parametrize("first", ["page", "delete"])
async def test_the_queue_tail_after_a_resumed_batch_ships_in_the_same_run(
    store: Any, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    page = rows(BATCH_ROWS * 2 + 1)
    await store.insert_rows(page)
    await consent(store)
    await crash_after_accept(store, monkeypatch)
    force_order(store, monkeypatch, first)
    batches = [ids_of(r) for r in (await restart(store)).events_requests()]
    assert [i for b in batches for i in b] == [r.id for r in page]
    assert (await store.queue_stats()).pending == 0


async def test_a_preview_journals_the_next_batch_and_the_shipper_sends_it(store: Any) -> None:
    page = rows(20)
    await store.insert_rows(page)
    await consent(store)
    settings = settings_for(None, batch_rows=BATCH_ROWS)
    preview = await next_batch(store, settings, instance_id=INSTANCE, version="9.9.9")
    assert preview is not None and preview.ids == [r.id for r in page[:BATCH_ROWS]]
    assert (await store.get_property(INFLIGHT_PROPERTY))["key"] == preview.batch_key
    # A row that sorts first arrives before the shipper runs: the previewed batch
    # is still the one sent first.
    early = telemetry_row(99, created_at=T0 - timedelta(seconds=1))
    await store.insert_rows([early])
    again = await next_batch(store, settings, instance_id=INSTANCE, version="9.9.9")
    assert again is not None and again.body == preview.body
    batches = [ids_of(r) for r in (await restart(store)).events_requests()]
    assert batches[0] == preview.ids
    assert sorted(i for b in batches for i in b) == sorted(r.id for r in [*page, early])


async def test_a_preview_never_replaces_a_journal(store: Any) -> None:
    page = rows(20)
    await store.insert_rows(page)
    held = {"key": batch_key([page[15].id]), "ids": [page[15].id.hex]}
    await store.set_property(INFLIGHT_PROPERTY, held)
    settings = settings_for(None, batch_rows=BATCH_ROWS)
    preview = await next_batch(store, settings, instance_id=INSTANCE, version="9.9.9")
    assert preview is not None and preview.ids == [page[15].id]
    await store.delete_rows([page[15].id])
    preview = await next_batch(store, settings, instance_id=INSTANCE, version="9.9.9")
    assert preview is not None and preview.ids == [r.id for r in page[:BATCH_ROWS]]
    assert await store.get_property(INFLIGHT_PROPERTY) == held  # stale, but not the preview's


async def test_a_read_only_preview_writes_nothing(tmp_path: Any) -> None:
    from tuiaudit.storage import open_store

    url = f"sqlite:///{tmp_path}/s.db"
    page = rows(5)
    async with open_store(url) as store:
        await store.insert_rows(page)
    async with open_store(url, read_only=True) as reader:
        settings = settings_for(None)
        preview = await next_batch(reader, settings, instance_id=INSTANCE, version="1")
        assert preview is not None and preview.ids == [r.id for r in page]
        assert await reader.get_property(INFLIGHT_PROPERTY) is None
