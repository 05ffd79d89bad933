"""Fuzz ``tuiaudit import`` (JSON lines): every line is accepted or rejected with a reason,
the accepted ones are exactly what the store gained, and the store stays sound.

Lines mix valid events, near-valid ones, random JSON, raw bytes and ids drawn
from a small pool (so a line can repeat an id already stored, by this file or
an earlier case). One SQLite store serves every case (a private event loop
drives it, as in test_fuzz_ingest.py); ``TUIAUDIT_FUZZ_EXAMPLES`` sets the
number of files.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_support import FUZZ, bounded_memory, watchdog
from hypothesis import given
from hypothesis import strategies as st

from tuiaudit.commands.import_ import import_records, read_jsonl
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter

IDS = [f"0190d5c1-0000-7000-8000-{i:012x}" for i in range(40)]


class Importer:
    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "import.db"
        self.loop = asyncio.new_event_loop()
        self.store: Any = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def open(self) -> None:
        self.opener = open_store(f"sqlite:///{self.path}")
        self.store = await self.opener.__aenter__()

    async def close(self) -> None:
        await self.opener.__aexit__(None, None, None)

    async def backend_rows(self) -> int:
        return int(await self.store.count_rows(AuditFilter(source="backend")))


@pytest.fixture(scope="module")
def importer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Importer]:
    imp = Importer(tmp_path_factory.mktemp("import-fuzz"))
    imp.run(imp.open())
    try:
        yield imp
    finally:
        imp.run(imp.close())
        imp.loop.close()


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=30),
    st.sampled_from(IDS), st.sampled_from(["2024-05-01T12:00:00Z", "yesterday", "", "action"]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
fields = st.sampled_from(
    ["id", "name", "type", "props", "context", "profile-id", "profile_id", "ip-addr",
     "tracked-at", "source", "created-at", "webhook", "archived-at"]
)  # fmt: skip
valid_event = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=20), "type": st.sampled_from(["action", "trigger"])},
    optional={
        "id": st.sampled_from(IDS),
        "props": st.dictionaries(st.text(max_size=8), scalars, max_size=4),
        "context": st.dictionaries(st.text(max_size=8), scalars, max_size=3),
        "tracked-at": st.sampled_from(["2024-05-01T12:00:00Z", 1714564800000]),
    },
)
line = st.one_of(
    valid_event.map(json.dumps),
    valid_event.map(json.dumps),
    st.dictionaries(fields, json_values, max_size=6).map(lambda d: json.dumps(d, allow_nan=True)),
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
    st.just(""),
).map(lambda s: s.replace("\n", " ").encode("utf-8", "surrogatepass"))


@FUZZ
@given(lines=st.lists(line, max_size=25), batch=st.sampled_from([1, 3, 1000]))
def _fuzz_import(importer: Importer, lines: list[bytes], batch: int) -> None:
    data = b"\n".join(lines) + b"\n"
    expected_lines = sum(
        1 for raw in data.split(b"\n") if raw.strip()
    )  # file lines end at \\n only
    before = importer.run(importer.backend_rows())
    with watchdog(30):
        report = importer.run(
            import_records(
                importer.store, ("audit-log",), read_jsonl(io.BytesIO(data)), batch=batch
            )
        )
    after = importer.run(importer.backend_rows())
    assert report.lines == expected_lines
    accounted = report.accepted + report.rejected + report.duplicates + report.telemetry_skipped
    assert accounted == report.lines
    assert after - before == report.accepted == report.rows  # mode A: one row per event
    assert all(reason for _, reason in report.reasons)


def test_fuzzed_imports_account_for_every_line(importer: Importer) -> None:
    _fuzz_import(importer)


def test_importing_retains_no_memory(importer: Importer) -> None:
    """The same 2,000-line file imported twice (every line of the second pass is a
    duplicate or a rejection): the second pass leaves (next to) nothing behind."""
    import random

    rng = random.Random(4)
    lines = []
    for i in range(2000):
        event: dict[str, Any] = {"name": f"n{i % 7}", "type": "action", "props": {"i": i}}
        if rng.random() < 0.3:
            event["id"] = rng.choice(IDS)
        if rng.random() < 0.2:
            event["ip-addr"] = "not an ip"
        lines.append(json.dumps(event).encode())
    data = b"\n".join(lines) + b"\nnot json\n"

    def run() -> None:
        records = read_jsonl(io.BytesIO(data))
        importer.run(import_records(importer.store, ("audit-log",), records, batch=500))

    run()
    with bounded_memory(1.0):
        run()


def test_store_is_sound_after_the_fuzz(importer: Importer) -> None:
    importer.run(importer.store.ping())
    conn = sqlite3.connect(f"file:{importer.path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_a_repeated_id_is_a_counted_duplicate(importer: Importer) -> None:
    data = b"\n".join(
        json.dumps({"id": i, "name": "dup", "type": "action"}).encode()
        for i in ["0190d5c1-0000-7000-8000-ffffffffffff"] * 2 + [None]  # type: ignore[list-item]
    )
    data = data.replace(b'"id": null, ', b"")
    report = importer.run(
        import_records(importer.store, ("audit-log",), read_jsonl(io.BytesIO(data)))
    )
    # A stored id is a duplicate, skipped and counted, not an error (issue 14 item 7).
    assert (report.accepted, report.rejected, report.duplicates) == (2, 0, 1)
    assert report.reasons == []


def test_a_nul_in_ip_addr_is_a_field_error(importer: Importer) -> None:
    data = b'{"name": "x", "type": "action", "ip-addr": "\\u0000"}\n'
    report = importer.run(
        import_records(importer.store, ("audit-log",), read_jsonl(io.BytesIO(data)))
    )
    assert report.rejected == 1 and "ip-addr" in report.reasons[0][1]
