"""Issue 13: the fuzz suite, extended with markup, control characters and cache-amplified blobs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hostile_support import amplified_fressian
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.text import Text

from tuiaudit.codec import DecodeError, blob_frame, decode_blob, fressian_loads
from tuiaudit.codec import codes as C
from tuiaudit.events import prepare_backend_event
from tuiaudit.safe_text import (
    CONTROL_CHARS,
    csv_cell,
    csv_uncell,
    escape_controls,
    has_control,
    json_safe,
)
from tuiaudit.tui.render import plain
from tuiaudit.validation import ValidationError

NOW = datetime(2024, 5, 1, tzinfo=UTC)
MARKUP = st.sampled_from(["[/]", "[bold]", "[on black black]", "[link=https://x]", "[", "]", "\\["])
CONTROLS = st.sampled_from([chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]])
HOSTILE = st.lists(st.one_of(st.text(max_size=5), MARKUP, CONTROLS), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(name=HOSTILE, key=HOSTILE)
def test_ingest_refuses_exactly_the_control_characters(name: str, key: str) -> None:
    event = {"name": name or "x", "type": "action", "props": {key or "k": {key or "k": 1}}}
    bad = has_control(name) or has_control(key)
    try:
        prepare_backend_event(event, now=NOW)
    except ValidationError as exc:
        reasons = " ".join(e.reason for e in exc.errors)
        assert bad or "characters" in reasons, reasons
        if bad:
            assert "control characters" in reasons
    else:
        assert not bad


@settings(max_examples=300, deadline=None)
@given(text=HOSTILE)
def test_shown_text_has_no_controls_and_no_markup(text: str) -> None:
    shown = escape_controls(text)
    assert CONTROL_CHARS.search(shown) is None
    cell = plain(text)  # what the dashboard puts in a table cell
    assert isinstance(cell, Text) and cell.plain == shown and not cell.spans
    json_text = json_safe('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    assert not any(0x7F <= ord(c) <= 0x9F for c in json_text)
    assert csv_uncell(csv_cell(text)) == text
    assert not csv_cell(text).startswith(("=", "+", "-", "@", "\t", "\r"))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 4096), refs=st.integers(0, 300), budget=st.integers(0, 200_000))
def test_cache_amplification_is_charged_in_full(size: int, refs: int, budget: int) -> None:
    data = amplified_fressian(size, refs)
    total = size * (refs + 1)
    try:
        value = fressian_loads(data, max_bytes=budget)
    except DecodeError as exc:
        assert total > budget and "budget" in str(exc)
    else:
        assert total <= budget and len(value) == refs + 1


@settings(max_examples=200, deadline=None)
@given(
    blob=st.binary(max_size=64),
    head=st.sampled_from([C.PUT_PRIORITY_CACHE, C.LIST, C.BEGIN_CLOSED_LIST, 0x80, 0xE5]),
    repeat=st.integers(1, 2000),
)
def test_cache_and_list_soup_only_ever_raises_decode_error(
    blob: bytes, head: int, repeat: int
) -> None:
    data = bytes([C.LIST, 0x40]) + bytes([head]) * repeat + blob
    try:
        decode_blob(blob_frame(data), max_elements=10_000, max_bytes=100_000)
    except DecodeError:
        pass


@pytest.mark.parametrize("depth", [99, 100, 101, 10_000])
def test_depth_limit_is_exact(depth: int) -> None:
    data = bytes([C.LIST_PACKED_LENGTH_START + 1]) * depth + b"\x00"
    if depth <= 100:
        assert fressian_loads(data) is not None
    else:
        with pytest.raises(DecodeError, match="nested too deeply"):
            fressian_loads(data)
