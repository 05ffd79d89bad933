"""Group commit for the SQLite back-end's ``insert_rows``.

Concurrent ``insert_rows`` calls (the ingest API has several requests in
flight) are merged into one write transaction: while a group is being
written, new calls queue up, and the next group takes everything queued (up
to ``max_rows``). A group runs in ONE hop to a dedicated writer thread with
its own stdlib ``sqlite3`` connection, so its SQLite work is not interleaved
with the event loop's other work between statements. While calls are queued
the writer thread takes the next group itself and sends each group's outcome
to the loop without waiting for it (``_write_groups``): the loop answers the
callers while the next group is written.

How a group is written:

* with the compiled bulk insert (storage/_sqlite_bulk.pyx, built by ``pip
  install``; ``bulk_module``): every group without webhook jobs, as ONE
  ``BEGIN IMMEDIATE`` … ``COMMIT`` on the module's own connection, bound and
  stepped in C without the GIL. Only when it fails on a constraint (a
  duplicate id) is the group written again call by call, as below. The
  points that follow are the pure path, where the module is not built (or
  ``TUIAUDIT_PURE_PYTHON=1``);
* several calls (so a busy event loop): every row as one JSON text in ONE
  statement (``INSERT … SELECT … FROM json_each(?)``, in autocommit mode: the
  statement is the transaction), during which the writer thread does not hold
  the GIL. ``executemany`` takes the GIL back after every row, and while the
  event loop runs Python each of those waits can last up to the interpreter's
  switch interval (measured: a 200-row insert next to a busy thread took
  37-61 ms instead of 2 ms). Only when that statement fails on a constraint
  (a duplicate id) is the group written again as ``BEGIN IMMEDIATE``, each
  call in its own ``SAVEPOINT``, ``COMMIT``, to find whose rows fail; groups
  with webhook jobs are written that way directly;
* one call alone (nobody else waiting): ``BEGIN IMMEDIATE``, ``executemany``,
  ``COMMIT``. With the loop idle the GIL comes back at once, and bound
  values insert about 1.4x faster than SQLite parsing them out of JSON
  (bench/ingest.py's sequential batches keep their ratio this way).

Rows holding a NUL character go through ``executemany`` (SQLite's JSON text
would end there).

Rows may come packed (``insert_packed``: the ingest worker processes pack
each request's ``rows_params`` tuples with ``msgspec.msgpack``, in C). The
compiled insert binds their values straight from those bytes (no ``str`` or
list is made in this process: the event loop used to parse a JSON text of
them, 0.7 us per event). Without it, a group holding such calls is decoded
(msgspec, each value checked to be text or NULL) and written with
``executemany`` in ``BEGIN IMMEDIATE`` … ``COMMIT``: in that process the
event loop serves no requests, so the GIL argument above does not hold, and
bound values cost SQLite about a fifth less than ``INSERT_JSON`` (measured:
17 against 20 us per event on a migrated store).

Guarantees, per call (the ``Store.insert_rows`` contract):

* all or nothing: a call whose statements fail (e.g. a duplicate id) is
  rolled back to its savepoint alone and gets its own error; the other calls
  of the group commit;
* a call returns only after the ``COMMIT`` of its group succeeded (durable as
  any commit of the store: WAL, ``synchronous=NORMAL``);
* if the group's transaction fails as a whole (``BEGIN``, ``COMMIT``, or an
  error that ends the transaction, such as a full disk), every call of the
  group gets that error and nothing of any of them is stored;
* a call cancelled while it waits in the queue stores nothing; a call
  cancelled once its group has been handed to the writer thread cannot be
  taken back: its rows commit (or fail) with the group, the caller just does
  not wait for the outcome (as with any write whose caller gave up).

Why a second connection rather than aiosqlite's thread: aiosqlite has no
public way to run a function on its connection thread. The writer holds the
store's ``asyncio.Lock`` while it writes (a run of groups ends when the
queue is empty, or after ``RUN_S`` once another task waits for the lock), so
in this process the two connections never compete for SQLite's write lock
(no busy-handler sleeps) and every other method keeps the store's
one-connection-behind-a-lock model.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote

import msgspec
import orjson

from tuiaudit.storage.base import StoreUnavailable, WebhookJob
from tuiaudit.storage.columns import AUDIT_COLUMNS, json_text, json_value, ts_text
from tuiaudit.storage.sqlite_checkpoint import WRITER_AUTOCHECKPOINT, Checkpointer

if TYPE_CHECKING:
    from tuiaudit.storage._sqlite_bulk import BulkInsert


def same_sqlite(module: ModuleType) -> bool:
    """Whether ``module`` (the compiled bulk insert) runs the very SQLite that the
    ``sqlite3`` module runs: the same ``sqlite3_libversion`` address.

    Two copies of SQLite in one process (a Python whose ``_sqlite3`` has SQLite
    built in, next to the system library the module links) would each keep
    their own POSIX locks on the store, and closing a connection in one copy
    drops the locks the other holds: two writers could then corrupt it.
    ``dlsym`` on ``_sqlite3``'s handle finds the symbol in that module or in the
    libraries it loaded, wherever its SQLite is."""
    import _sqlite3
    import ctypes

    try:
        theirs = ctypes.cast(ctypes.CDLL(_sqlite3.__file__).sqlite3_libversion, ctypes.c_void_p)
    except (OSError, AttributeError):
        return False
    return bool(theirs.value == module.library_address())


def _bulk_module() -> ModuleType | None:
    if os.environ.get("TUIAUDIT_PURE_PYTHON") == "1":
        return None
    try:
        from tuiaudit.storage import _sqlite_bulk
    except ImportError:  # a source checkout without the build: executemany serves
        return None
    return _sqlite_bulk if same_sqlite(_sqlite_bulk) else None


bulk_module = _bulk_module()
"""The compiled bulk insert in use, or None (not built, another SQLite than
``sqlite3``'s, or TUIAUDIT_PURE_PYTHON=1)."""

MAX_GROUP_ROWS = 5000
"""Rows (plus webhook jobs) per group: bounds one transaction's time, so latency."""

RUN_S = 0.1
"""How long the writer thread keeps the store's lock for groups back to back while
someone else waits for it (the lock is FIFO: they get it next)."""

INSERT_ROW = f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
# One row per element of a JSON array of 11-element arrays (every value text
# or null, as rows_params makes them). json_each walks the array in order, so
# rows are inserted in call order without an ORDER BY (which would sort them
# in a temporary b-tree); tests check the order.
INSERT_JSON = (
    f"INSERT INTO audit_log ({AUDIT_COLUMNS}) SELECT "
    + ", ".join(f"value ->> {i}" for i in range(11))
    + " FROM json_each(?)"
)
_NUL = "\\u0000"  # how orjson writes a NUL character

Params = list[tuple[Any, ...]]
T = TypeVar("T")


@dataclass(slots=True)
class GroupStats:
    """What the writer did: transactions, calls and rows (benchmarks, tests)."""

    groups: int = 0
    calls: int = 0
    rows: int = 0
    max_calls: int = 0  # the most calls one transaction held
    busy_s: float = 0.0  # wall time the writer thread spent in groups
    cpu_s: float = 0.0  # of which on a CPU (the rest: the disk, the GIL, the run queue)


@dataclass(slots=True, eq=False)
class _Call:
    params: Params | None  # rows as rows_params makes them, or
    packed: bytes | None  # the same packed by an ingest worker (``insert_packed``)
    count: int  # rows in either
    jobs: Sequence[WebhookJob]
    future: asyncio.Future[None]

    @property
    def size(self) -> int:
        return self.count + len(self.jobs)

    def rows(self) -> Params:
        """This call's rows as ``executemany`` parameters (a worker's packed rows
        decoded once, each value checked: str or None)."""
        if self.params is None:
            self.params = _PACKED.decode(self.packed) if self.packed is not None else []
        return self.params

    def part(self) -> bytes | Params:
        """This call's rows as ``BulkInsert.insert_parts`` takes them: packed rows
        are bound from their bytes."""
        if self.params is None and self.packed is not None:
            return self.packed
        return self.rows()


_PACKED = msgspec.msgpack.Decoder(list[tuple[str | None, ...]])
"""Packed rows (``GroupWriter.insert_packed``) as parameters, where they are not bound
from their bytes: a value of another type is an error, never bound as it is."""


def rows_json(params: Params) -> str | None:
    """``params`` as one JSON array for ``INSERT_JSON``; None when that cannot
    carry them exactly (a value holding NUL, a string orjson refuses)."""
    try:
        text = orjson.dumps(params).decode()
    except TypeError:
        return None  # executemany will say what is wrong with it
    return None if _NUL in text else text


MAX_ARRAYS = 32
"""JSON texts one ``insert_arrays`` statement takes as separate parameters."""


@functools.cache
def _insert_arrays_sql(n: int) -> str:
    """``INSERT_JSON`` over ``n`` arrays in order: ``json_each`` of each, UNION ALL
    (SQLite runs a compound SELECT term after term: call order, as the tests check)."""
    select = INSERT_JSON.split(" SELECT ", 1)[1]
    parts = [select.replace("json_each(?)", f"json_each(?{i + 1})") for i in range(n)]
    return INSERT_JSON.split(" SELECT ", 1)[0] + " SELECT " + " UNION ALL SELECT ".join(parts)


def insert_arrays(texts: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The statement and parameters inserting the rows of JSON arrays ``texts``, in order.

    Each text goes to SQLite as its own parameter rather than joined into one
    string: a group's texts are hundreds of kB, and a fresh allocation that
    large costs page faults (measured: joining 4 texts of 82 kB took 300 µs,
    more than the daemon's whole per-request work). Past ``MAX_ARRAYS`` the
    texts are joined (tiny calls then, so short texts).
    """
    if len(texts) > MAX_ARRAYS:
        texts = ["[" + ",".join([t[1:-1] for t in texts if len(t) > 2]) + "]"]
    return _insert_arrays_sql(len(texts)), tuple(texts)


class GroupWriter:
    """Merges concurrent inserts into one transaction on a writer thread.

    ``lock`` is the store's lock: a group holds it from taking the queue to
    the end of its transaction. ``on_commit`` runs on the event loop after
    each committed group. Errors reach callers as raised by ``sqlite3`` (the
    store maps them to ``StoreError``).
    """

    def __init__(
        self,
        path: Path,
        lock: asyncio.Lock,
        *,
        busy_timeout_ms: int,
        on_commit: Callable[[], None] = lambda: None,
        max_rows: int = MAX_GROUP_ROWS,
    ) -> None:
        self.path = path
        self.stats = GroupStats()
        self._lock = lock
        self._busy_timeout_ms = busy_timeout_ms
        self._on_commit = on_commit
        self._max_rows = max_rows
        # Appended on the loop, taken on the writer thread (``_write_groups``).
        self._queue: deque[_Call] = deque()
        self._queue_lock = threading.Lock()
        self._writing: list[_Call] = []  # the group on the writer thread now
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the writer thread only
        self._bulk: BulkInsert | None = None  # the compiled insert's connection (ditto)
        self._closed = False
        # The WAL's checkpoints run beside this writer (storage/sqlite_checkpoint.py).
        self.checkpointer = Checkpointer(path)

    # ------------------------------------------------------------ event loop

    async def insert(self, params: Params, jobs: Sequence[WebhookJob] = ()) -> None:
        """Insert ``params`` (rows as ``rows_params`` makes them) and queue ``jobs``."""
        await self._enqueue(params, None, len(params), jobs)

    async def insert_packed(
        self, packed: bytes, count: int, jobs: Sequence[WebhookJob] = ()
    ) -> None:
        """Insert the ``count`` rows packed in ``packed`` (``msgspec.msgpack`` of the
        ``rows_params`` tuples: an ingest worker makes them) and queue ``jobs``.

        The compiled insert binds the values straight from these bytes: no
        ``str`` or list is made in this process, so neither the event loop
        (which used to parse a JSON text here: 0.7 us per event) nor the
        writer thread spends anything on them. Without it, the writer thread
        decodes them for ``executemany``."""
        await self._enqueue(None, packed if count else None, count, jobs)

    async def _enqueue(
        self, params: Params | None, packed: bytes | None, count: int, jobs: Sequence[WebhookJob]
    ) -> None:
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._queue_lock:
            self._queue.append(_Call(params, packed, count, jobs, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        # Cancelling the caller cancels ``future``: a group not yet taken skips it.
        await future

    async def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` on the writer thread, under the store's lock, in ONE ``BEGIN
        IMMEDIATE`` … ``COMMIT`` (rolled back if it raises): a short write of several
        statements in one thread hop, where aiosqlite would take one per statement
        (the archiver's mark and its log row, DESIGN §9)."""
        if self._closed:
            raise StoreUnavailable(f"store {self.path} is closed")
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, "tuiaudit-sqlite-writer")
            result = await loop.run_in_executor(self._executor, self._transact, fn)
        self._committed()
        return result

    def _transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connect()
        self._retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return result

    async def close(self) -> None:
        """Write what is queued, then close the writer's connection and thread."""
        self._closed = True
        while self._task is not None:
            await asyncio.wait({self._task})  # not cancelled if our caller is
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_conn)
            executor.shutdown(wait=True)
        await asyncio.to_thread(self.checkpointer.close)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                async with self._lock:
                    if self._executor is None:
                        self._executor = ThreadPoolExecutor(1, "tuiaudit-sqlite-writer")
                    await loop.run_in_executor(self._executor, self._write_groups, loop)
        except BaseException:
            # Only a cancelled loop gets here: no caller may wait forever.
            stopped = StoreUnavailable(
                f"store {self.path}: the writer stopped before confirming the commit; "
                "the rows may or may not be stored, check before resending"
            )
            with self._queue_lock:
                calls = [*self._writing, *self._queue]
                self._queue.clear()
            for c in calls:
                if not c.future.done():
                    c.future.set_exception(stopped)
            raise
        finally:
            self._task = None

    def _write_groups(self, loop: asyncio.AbstractEventLoop) -> None:
        """Writer thread: groups back to back while calls are queued, each outcome
        sent to the loop (``_settle``) without waiting for it.

        Waiting for the loop between groups left the writer idle 18% of the time
        with calls queued (measured under wrk, ``--workers 2``): the loop has to
        wake, answer the callers and hand the next group over. The run ends when
        the queue is empty, or after ``RUN_S`` once someone else waits for the
        store's lock (its reads and other writes: they get it between runs).
        """
        deadline = time.monotonic() + RUN_S
        while True:
            with self._queue_lock:
                group = self._writing = self._take()
            if not group:
                return
            outcome: list[BaseException | None] | BaseException
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                outcome = self._write(group)
            except Exception as exc:  # the group's transaction failed: all fail
                outcome = exc
            spent = (time.perf_counter() - started, time.thread_time() - cpu)
            try:
                loop.call_soon_threadsafe(self._settle, group, outcome, spent)
            except RuntimeError:
                return  # the loop is closed: _drain's callers were failed already
            if time.monotonic() >= deadline and _has_waiters(self._lock):
                return

    def _settle(
        self,
        group: list[_Call],
        outcome: list[BaseException | None] | BaseException,
        spent: tuple[float, float],
    ) -> None:
        """On the loop: a written group's callers get their outcome."""
        with self._queue_lock:
            if self._writing is group:
                self._writing = []
        self.stats.busy_s += spent[0]
        self.stats.cpu_s += spent[1]
        if isinstance(outcome, BaseException):
            for c in group:
                if not c.future.done():
                    c.future.set_exception(outcome)
            return
        self._committed()
        self._count(group)
        for c, err in zip(group, outcome, strict=True):
            if c.future.done():
                continue  # its caller was cancelled after the group was taken
            if err is None:
                c.future.set_result(None)
            else:
                c.future.set_exception(err)

    def _committed(self) -> None:
        self.checkpointer.wrote()
        self._on_commit()

    def _take(self) -> list[_Call]:
        """The next group (writer thread, under ``_queue_lock``). A caller cancelled
        just after this looked at its future is written anyway: as once taken."""
        group: list[_Call] = []
        rows = 0
        queue = self._queue
        while queue:
            call = queue[0]
            if call.future.done():  # cancelled while waiting: nothing of it is stored
                queue.popleft()
                continue
            if group and rows + call.size > self._max_rows:
                break
            queue.popleft()
            group.append(call)
            rows += call.size
        return group

    def _count(self, group: list[_Call]) -> None:
        s = self.stats
        s.groups += 1
        s.calls += len(group)
        s.rows += sum(c.count for c in group)
        s.max_calls = max(s.max_calls, len(group))

    # ---------------------------------------------------------- writer thread

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            uri = f"file:{quote(str(self.path))}?mode=rw"
            pragmas = [
                "PRAGMA synchronous = NORMAL",
                # The checkpoint thread copies most pages; this bounds the WAL.
                f"PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT}",
                "PRAGMA foreign_keys = ON",
            ]
            conn = sqlite3.connect(
                uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,  # one thread at a time, under the store's lock
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                for pragma in pragmas:
                    conn.execute(pragma)
                if bulk_module is not None:
                    self._bulk = bulk_module.BulkInsert(
                        uri, INSERT_ROW, pragmas, busy_timeout_ms=self._busy_timeout_ms
                    )
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        bulk, self._bulk = self._bulk, None
        if bulk is not None:
            bulk.close()
        if conn is not None:
            conn.close()

    def _retry_locked(self, op: Callable[[], object]) -> None:
        """``op()`` again while SQLite answers "locked" without having waited (WAL
        recovery by another process), up to the busy timeout. ``op`` must leave
        nothing behind when it fails (a statement, or a whole transaction)."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay = 0.005
        while True:
            try:
                op()
                return
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if ("locked" not in msg and "busy" not in msg) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _write(self, group: list[_Call]) -> list[BaseException | None]:
        """One transaction for the group; each call's error (or None) in order.

        Raises when the transaction as a whole fails: then nothing is stored.
        Reads only the calls' data (never their futures: they belong to the loop).
        """
        conn = self._connect()
        jobs = any(c.jobs for c in group)
        bulk = self._bulk
        if not jobs and bulk is not None:
            # The compiled insert: one transaction, bound and stepped in C without
            # the GIL (storage/_sqlite_bulk.pyx).
            parts = [c.part() for c in group]
            try:
                self._retry_locked(lambda: bulk.insert_parts(parts))
                return [None] * len(group)
            except (sqlite3.IntegrityError, sqlite3.DataError, TypeError, ValueError):
                pass  # nothing was stored: find whose rows fail, call by call
        elif not jobs and any(c.packed is not None for c in group):
            # Rows from ingest workers: this process's event loop is nearly idle
            # (its requests are served elsewhere), so executemany gets the GIL
            # back at once after each row, and bound values cost SQLite less
            # than parsing them out of JSON (daemon CPU 33-35 against 39-47 us
            # per event, measured in alternating wrk runs).
            try:
                rows: Params | None = [p for c in group for p in c.rows()]
            except ValueError:  # packed rows of another shape: found call by call below
                rows = None
            try:
                if rows is not None:
                    self._retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
                    conn.executemany(INSERT_ROW, rows)
                    conn.execute("COMMIT")
                    return [None] * len(group)
            except (sqlite3.IntegrityError, sqlite3.DataError):
                if conn.in_transaction:  # nothing was stored: find whose rows fail
                    conn.execute("ROLLBACK")
            except BaseException:
                _rollback(conn)
                raise
        elif not jobs and len(group) > 1:
            # Concurrent calls, so a busy event loop: one statement in
            # autocommit mode is the whole transaction (it takes the write lock
            # as it starts, like BEGIN IMMEDIATE); the GIL is taken back once.
            texts = [rows_json(c.params) for c in group if c.params]
            if texts and None not in texts:
                sql, params = insert_arrays(cast(list[str], texts))
                try:
                    self._retry_locked(lambda: conn.execute(sql, params))
                    return [None] * len(group)
                except (sqlite3.IntegrityError, sqlite3.DataError):
                    pass  # nothing was stored: find whose rows fail, call by call
        self._retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            hooks = _enabled_hooks(conn) if any(c.jobs for c in group) else []
            now = datetime.now(UTC)
            if len(group) == 1:  # its error is the transaction's: no savepoint needed
                _insert_call(conn, group[0], hooks, now, as_json=False)
                errors: list[BaseException | None] = [None]
            else:
                errors = [_write_one(conn, c, hooks, now) for c in group]
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return errors


def _has_waiters(lock: asyncio.Lock) -> bool:
    """Whether a task waits for ``lock`` (read from the writer thread: a stale answer
    only moves the end of a run by one group). asyncio keeps its waiters in a
    private deque; without it, every run ends at its deadline."""
    waiters = getattr(lock, "_waiters", True)
    return bool(waiters)


def _insert_call(
    conn: sqlite3.Connection,
    call: _Call,
    hooks: list[tuple[int, list[str]]],
    now: datetime,
    *,
    as_json: bool,
) -> None:
    """One call's rows and webhook jobs, in the current transaction."""
    if call.params:
        text = rows_json(call.params) if as_json else None
        if text is not None:
            conn.execute(INSERT_JSON, (text,))
        else:
            conn.executemany(INSERT_ROW, call.params)
    elif call.packed is not None:  # a worker's rows (its process's loop is idle: see _write)
        conn.executemany(INSERT_ROW, call.rows())
    if call.jobs and hooks:
        _queue_webhooks(conn, hooks, call.jobs, now)


def _write_one(
    conn: sqlite3.Connection,
    call: _Call,
    hooks: list[tuple[int, list[str]]],
    now: datetime,
) -> BaseException | None:
    """One call in its own savepoint: its error (its statements undone), or None."""
    conn.execute("SAVEPOINT call")
    try:
        _insert_call(conn, call, hooks, now, as_json=True)
    except Exception as exc:
        _rollback_call(conn, exc)
        return exc
    conn.execute("RELEASE call")
    return None


def _rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction if SQLite has not already rolled it back."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # already rolled back by SQLite


def _rollback_call(conn: sqlite3.Connection, exc: Exception) -> None:
    """Undo one call's statements; re-raise ``exc`` if the transaction itself is gone
    (SQLite rolls back the whole transaction on e.g. a full disk)."""
    try:
        conn.execute("ROLLBACK TO call")
        conn.execute("RELEASE call")
    except sqlite3.Error:
        raise exc from None
    if not conn.in_transaction:
        raise exc


def _enabled_hooks(conn: sqlite3.Connection) -> list[tuple[int, list[str]]]:
    rows = conn.execute("SELECT id, event_names FROM webhook WHERE enabled = 1 ORDER BY id")
    return [(hid, json_value(names, [])) for hid, names in rows]


def _queue_webhooks(
    conn: sqlite3.Connection,
    hooks: list[tuple[int, list[str]]],
    jobs: Sequence[WebhookJob],
    now: datetime,
) -> None:
    """A delivery per job and matching webhook; a batch key still open is updated."""
    now_text = ts_text(now)
    for job in jobs:
        event = json_text(job.event)
        due = ts_text(now + timedelta(milliseconds=max(job.batch_timeout_ms, 0)))
        for hid, names in hooks:
            if names and job.event_name not in names:
                continue
            if job.batch_key is not None:
                cur = conn.execute(
                    "UPDATE webhook_delivery SET event = ? WHERE webhook_id = ? "
                    "AND batch_key = ? AND status = 'pending' AND attempts = 0 AND due_at > ?",
                    (event, hid, job.batch_key, now_text),
                )
                if cur.rowcount:
                    continue
            conn.execute(
                "INSERT INTO webhook_delivery (webhook_id, event, batch_key, due_at) "
                "VALUES (?, ?, ?, ?)",
                (hid, event, job.batch_key, due),
            )
