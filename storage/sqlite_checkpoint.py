"""WAL checkpoints of the SQLite store, off the ingest writer's path (DESIGN §7, "Writing").

Why. In WAL mode with ``synchronous=NORMAL`` a commit only appends to the WAL;
the fsyncs happen in checkpoints, which copy the WAL's pages into the database
file (fsync of the WAL before, of the database after). SQLite runs one by
default in the connection that commits, right after the commit, once the WAL
holds 1,000 pages (4 MB): during sustained ingest that is the group writer's
thread every few groups, and it waits there for the disk. Measured under wrk
(``--workers 2``, writer thread timed by ``/proc/thread-self/schedstat``): the
writer spent 15% of its time blocked in those fsyncs, only 65% of its time in
a group on the CPU; ``synchronous=OFF`` (no fsync at all, not an option)
raised ingest by about 40%, which is the most moving them can gain.

How. A thread with its own connection runs ``PRAGMA wal_checkpoint(PASSIVE)``
while the writer commits, at most every ``interval_s``: it copies the pages
and does the fsyncs while the writer goes on inserting (a passive checkpoint
never takes the write lock and never waits for a reader or a writer). The
WAL can only start over from its beginning when it is wholly copied at the
moment a write transaction begins, which a checkpoint running beside the
writer rarely gives; so the writer keeps SQLite's automatic checkpoint, at
``WRITER_AUTOCHECKPOINT`` pages: right after a commit, with nothing else
writing, it copies the few pages this thread has not copied yet, and the WAL
restarts. That bounds the WAL to about ``WRITER_AUTOCHECKPOINT`` pages (plus
one group) whatever this thread does, and keeps the writer's own checkpoints
short and half as frequent. Measured in alternating wrk runs (as issue 20,
``--workers 2``, 8 s each): the writer's time on the CPU inside a group rose
from 64-67% to 70-72%, ingest by 1.0-1.25x in alternating pairs (the spread
of a shared machine; docs/BENCHMARKS.md "ingest_wrk", round 4), and the WAL
stayed under 10 MB.

Durability is the store's: the same checkpoint with the same fsyncs, run by
another thread. A checkpoint that fails (a full disk, an I/O error) is
counted and tried again after the next commit; the writer's commits do not
depend on it (their own automatic checkpoint still bounds the WAL).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

INTERVAL_S = 0.05
"""Between two checkpoints while the writer commits (measured best of 0.02-0.25 s)."""

WRITER_AUTOCHECKPOINT = 2000
"""Pages (of 4 kB) after which the writer's own commit checkpoints: the WAL's bound."""


@dataclass(slots=True)
class CheckpointStats:
    """What the checkpoint thread did (tests, benchmarks)."""

    runs: int = 0
    frames_copied: int = 0  # the WAL frames backfilled, as the last run reported
    errors: int = 0
    last_error: str | None = None


class Checkpointer:
    """Runs passive checkpoints of ``path``'s WAL on a thread while ``wrote`` is called.

    ``wrote`` is cheap and safe from any thread (the writer calls it after each
    commit); ``close`` stops the thread after the checkpoint in progress.
    """

    def __init__(self, path: Path, *, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
        self.stats = CheckpointStats()
        self._wrote = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def wrote(self) -> None:
        """The WAL grew: checkpoint it soon (starts the thread the first time)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="tuiaudit-sqlite-checkpoint", daemon=True
                    )
                    self._thread.start()
        self._wrote.set()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running) and close its connection."""
        with self._start_lock:
            self._stop.set()
            thread = self._thread
        self._wrote.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(self.path))}?mode=rw", uri=True, isolation_level=None
            )
        except sqlite3.Error as exc:  # the writer's own checkpoints still run
            self._failed(exc)
            return
        try:
            # The checkpoint's fsyncs follow this connection's setting: the store's.
            conn.execute("PRAGMA synchronous = NORMAL")
            while True:
                self._wrote.wait()
                if self._stop.is_set():
                    return
                self._wrote.clear()
                self._checkpoint(conn)
                if self._stop.wait(self.interval_s):
                    return
        finally:
            conn.close()

    def _failed(self, exc: sqlite3.Error) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        stats = self.stats
        try:
            busy, _log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            self._failed(exc)
            return  # the next commit tries again; the writer's own checkpoint bounds the WAL
        stats.runs += 1
        if not busy and copied >= 0:
            stats.frames_copied = copied
