"""The SQLite writer's compiled bulk insert (storage/_sqlite_bulk.pyx) against its
reference, ``sqlite3.Cursor.executemany`` in ``BEGIN IMMEDIATE`` … ``COMMIT``: on
every input the same rows stored, byte for byte and type for type, or the same
error class with SQLite's message, and nothing stored.

On real store files made by ``tuiaudit migrate``'s migrations (every index and
trigger). The writer's own behaviour with and without this module is in
tests/test_store_group_commit.py (every test there runs both ways).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuiaudit.storage import open_store
from tuiaudit.storage import sqlite_writer as writer
from tuiaudit.storage.columns import AUDIT_COLUMNS
from tuiaudit.storage.sqlite_writer import INSERT_ROW

try:
    from tuiaudit.storage._sqlite_bulk import BulkInsert
except ImportError:  # a checkout without the build: outside CI these tests skip
    BulkInsert = None  # type: ignore[assignment,misc]

needs_compiled = pytest.mark.skipif(BulkInsert is None, reason="the bulk insert is not built")


def test_ci_has_the_compiled_bulk_insert() -> None:
    """Under CI=true the extension must be built: CI cannot silently lose it."""
    if os.environ.get("CI") != "true":
        pytest.skip("only CI requires the build (a plain checkout may lack a compiler)")
    assert BulkInsert is not None, "tuiaudit.storage._sqlite_bulk is not built (pip install -e .)"
    assert writer.bulk_module is not None, "the writer does not use the bulk insert"


@needs_compiled
def test_the_module_runs_the_sqlite_that_sqlite3_runs() -> None:
    from tuiaudit.storage import _sqlite_bulk

    assert writer.same_sqlite(_sqlite_bulk)
    assert _sqlite_bulk.library_address() != 0


def test_another_copy_of_sqlite_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module whose SQLite is elsewhere than _sqlite3's (a Python with SQLite built
    into _sqlite3): two copies of SQLite would drop each other's POSIX locks."""
    elsewhere = types.SimpleNamespace(library_address=lambda: 4096)
    assert not writer.same_sqlite(elsewhere)  # type: ignore[arg-type]
    monkeypatch.setattr(writer, "same_sqlite", lambda module: False)
    assert writer._bulk_module() is None


def test_pure_python_turns_the_module_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUIAUDIT_PURE_PYTHON", "1")
    assert writer._bulk_module() is None


@pytest.fixture
async def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    async with open_store(f"sqlite:///{path}", migrate=True):
        pass
    return path


def stored(path: Path) -> list[tuple[Any, ...]]:
    """Every audit row with each value's SQLite type, in insertion order."""
    cols = [c.strip() for c in AUDIT_COLUMNS.split(",")]
    select = ", ".join(f"{c}, typeof({c})" for c in cols)
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {select} FROM audit_log ORDER BY rowid").fetchall()
    finally:
        conn.close()


def executemany(path: Path, rows: list[list[str | None]]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(INSERT_ROW, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def bulk(path: Path, busy_timeout_ms: int = 5000) -> BulkInsert:
    return BulkInsert(
        f"file:{path}?mode=rw", INSERT_ROW, ["PRAGMA synchronous = NORMAL"], busy_timeout_ms
    )


def a_row(i: int = 0, **kw: str | None) -> list[str | None]:
    values: dict[str, str | None] = {
        "id": str(uuid.uuid4()),
        "name": f"event-{i}",
        "type": "action",
        "source": "frontend",
        "profile_id": str(uuid.uuid4()),
        "ip_addr": "192.0.2.1",
        "props": f'{{"n":{i}}}',
        "context": "{}",
        "tracked_at": "2024-05-01T12:00:00.000000Z",
        "created_at": "2024-05-01T12:00:00.000000Z",
        "archived_at": None,
    }
    values.update(kw)
    return list(values.values())


@pytest.fixture
def files(tmp_path: Path, store_file: Path) -> Iterator[tuple[Path, Path]]:
    """Two copies of a fresh store: one for the bulk insert, one for executemany."""
    other = tmp_path / "reference.db"
    src = sqlite3.connect(store_file)
    dst = sqlite3.connect(other)
    src.backup(dst)
    src.close()
    dst.close()
    yield store_file, other


# Text SQLite must store exactly: empty, NUL, every plane, quotes and backslashes.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", "\x00", "a\x00b", "é", "日本", "\U0001f600", "\\u0000", "'\"", "%s"]
)


@needs_compiled
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.lists(st.tuples(TEXT, TEXT, st.none() | TEXT), min_size=1, max_size=30))
def test_rows_are_stored_as_executemany_stores_them(
    files: tuple[Path, Path], data: list[tuple[str, str, str | None]]
) -> None:
    mine, reference = files
    rows = [
        a_row(i, name=name, props=props, archived_at=archived)
        for i, (name, props, archived) in enumerate(data)
    ]
    b = bulk(mine)
    try:
        assert b.insert(rows) == len(rows)
    finally:
        b.close()
    executemany(reference, rows)
    assert stored(mine) == stored(reference)


@needs_compiled
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.lists(
        st.lists(st.tuples(TEXT, TEXT, st.none() | TEXT), max_size=8), min_size=1, max_size=5
    ),
    packed=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_packed_parts_are_stored_as_executemany_stores_their_rows(
    files: tuple[Path, Path], data: list[list[tuple[str, str, str | None]]], packed: list[bool]
) -> None:
    """Parts packed (an ingest worker's bytes) or not, in their order, in one insert."""
    mine, reference = files
    parts = [
        [a_row(i, name=name, props=props, archived_at=archived) for name, props, archived in part]
        for i, part in enumerate(data)
    ]
    given_parts = [
        msgspec.msgpack.encode(part) if pack else part
        for part, pack in zip(parts, packed, strict=False)
    ]
    rows = [r for part in parts for r in part]
    b = bulk(mine)
    try:
        assert b.insert_parts(given_parts) == len(rows)
    finally:
        b.close()
    if rows:
        executemany(reference, rows)
    assert stored(mine) == stored(reference)


def _raw_str(n: int) -> bytes:
    """A msgpack str of n bytes in its widest header (str 32): still msgpack."""
    return b"\xdb" + n.to_bytes(4, "big") + b"x" * n


@needs_compiled
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x91",  # an array of one row, cut short
        msgspec.msgpack.encode([a_row(1)])[:-1],
        msgspec.msgpack.encode([a_row(1)]) + b"\xc0",  # something after the rows
        msgspec.msgpack.encode([a_row(1)[:10]]),
        msgspec.msgpack.encode([[*a_row(1), None]]),
        msgspec.msgpack.encode([[42, *a_row(1)[1:]]]),
        msgspec.msgpack.encode([[b"x", *a_row(1)[1:]]]),
        msgspec.msgpack.encode({"rows": [a_row(1)]}),
        msgspec.msgpack.encode(a_row(1)),  # a row, not rows
        b"\x91\x9b" + _raw_str(3) * 10 + b"\xdb\x7f\xff\xff\xff",  # a length past the end
    ],
    ids=lambda d: d[:12].hex(),
)
async def test_packed_rows_of_another_shape_are_refused_before_any_sql(
    store_file: Path, data: bytes
) -> None:
    b = bulk(store_file)
    with pytest.raises(ValueError, match="packed rows are not a msgpack array of 11-value rows"):
        b.insert_parts([[a_row(0)], data])
    b.insert_parts([b"\x91\x9b" + _raw_str(36) + _raw_str(7) * 9 + b"\xc0"])  # str 32 headers
    b.close()
    assert [r[2] for r in stored(store_file)] == ["xxxxxxx"]


@needs_compiled
async def test_tuples_lists_and_other_sequences_are_rows(store_file: Path) -> None:
    b = bulk(store_file)
    b.insert([tuple(a_row(1)), a_row(2)])
    b.insert(iter([a_row(3)]))  # any iterable of rows
    b.close()
    assert [r[2] for r in stored(store_file)] == ["event-1", "event-2", "event-3"]


@needs_compiled
async def test_a_duplicate_id_fails_the_whole_insert_as_executemany_does(
    store_file: Path,
) -> None:
    first = a_row(1)
    b = bulk(store_file)
    b.insert([first])
    dup = [a_row(2), a_row(3, id=first[0]), a_row(4)]
    with pytest.raises(sqlite3.IntegrityError) as mine:
        b.insert(dup)
    with pytest.raises(sqlite3.IntegrityError) as reference:
        executemany(store_file, dup)
    assert str(mine.value) == str(reference.value) == "UNIQUE constraint failed: audit_log.id"
    assert mine.value.sqlite_errorcode == reference.value.sqlite_errorcode
    assert [r[0] for r in stored(store_file)] == [first[0]]  # all or nothing
    b.insert([a_row(5)])  # the transaction was ended: the connection goes on
    assert len(stored(store_file)) == 2
    b.close()


@needs_compiled
async def test_a_not_null_column_refuses_null(store_file: Path) -> None:
    b = bulk(store_file)
    with pytest.raises(
        sqlite3.IntegrityError, match=r"NOT NULL constraint failed: audit_log\.name"
    ):
        b.insert([a_row(1), a_row(2, name=None)])
    b.close()
    assert stored(store_file) == []


@needs_compiled
@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([a_row(1)[:10]], ValueError, "a row has 10 values, the statement takes 11"),
        ([[*a_row(1), None]], ValueError, "a row has 12 values"),
        ([[42, *a_row(1)[1:]]], TypeError, "a value is int: only str or None are bound"),
        ([[b"x", *a_row(1)[1:]]], TypeError, "a value is bytes"),
        ([a_row(1), "not a row of values"], ValueError, "a row has 19 values"),
        (
            [[*a_row(1)[:6], "\ud800", *a_row(1)[7:]]],
            UnicodeEncodeError,
            "surrogates not allowed",
        ),
    ],
)
async def test_bad_rows_are_refused_before_any_sql(
    store_file: Path, rows: list[Any], error: type[Exception], match: str
) -> None:
    b = bulk(store_file)
    with pytest.raises(error, match=match):
        b.insert([a_row(0), *rows])
    b.insert([a_row(9)])  # nothing was begun: the connection goes on
    b.close()
    assert [r[2] for r in stored(store_file)] == ["event-9"]


@needs_compiled
async def test_a_store_locked_by_another_writer_is_reported_busy(store_file: Path) -> None:
    other = sqlite3.connect(store_file, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    b = bulk(store_file, busy_timeout_ms=50)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        b.insert([a_row(1)])
    other.execute("COMMIT")
    other.close()
    b.insert([a_row(2)])
    b.close()
    assert [r[2] for r in stored(store_file)] == ["event-2"]


@needs_compiled
def test_the_transaction_runs_without_the_gil(store_file: Path) -> None:
    """The insert waits in SQLite's busy handler for a write lock that only Python
    code in another thread can release: it succeeds only because that thread gets
    the GIL meanwhile (holding it, the insert would time out "locked")."""
    other = sqlite3.connect(store_file, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    b = bulk(store_file, busy_timeout_ms=30_000)
    outcome: list[BaseException | int] = []
    started = threading.Event()

    def insert() -> None:
        started.set()
        try:
            outcome.append(b.insert([a_row(1), a_row(2)]))
        except BaseException as exc:
            outcome.append(exc)

    inserter = threading.Thread(target=insert)
    inserter.start()
    started.wait()
    time.sleep(0.2)  # the insert is (almost surely) waiting for the lock by now
    other.execute("COMMIT")  # Python, which needs the GIL
    inserter.join()
    other.close()
    b.close()
    assert outcome == [2]
    assert [r[2] for r in stored(store_file)] == ["event-1", "event-2"]


@needs_compiled
def test_a_store_that_cannot_be_opened_is_an_operational_error(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        bulk(tmp_path / "missing.db")


@needs_compiled
def test_a_statement_sqlite_refuses_is_an_operational_error(store_file: Path) -> None:
    with pytest.raises(sqlite3.OperationalError, match="no such table: nowhere"):
        BulkInsert(f"file:{store_file}?mode=rw", "INSERT INTO nowhere VALUES (?)")


@needs_compiled
def test_a_closed_insert_refuses(store_file: Path) -> None:
    b = bulk(store_file)
    b.close()
    b.close()  # idempotent
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        b.insert([a_row(1)])
