"""``tuiaudit decode``: blobs, envelopes and JSON lines to tagged JSON; errors exit 1."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from uuid import UUID

import pytest

from tuiaudit.cli import build_parser, main
from tuiaudit.codec import encode_blob, kw

EVENTS = [
    {
        kw("name"): "navigate",
        kw("tracked-at"): datetime(2026, 4, 20, tzinfo=UTC),
        kw("profile-id"): UUID(int=0),
        kw("props"): {kw("route"): "dashboard", kw("tags"): frozenset({"b", "a"})},
    }
]
TAGGED = [
    {
        "name": "navigate",
        "tracked-at": {"$inst": 1776643200000},
        "profile-id": {"$uuid": "00000000-0000-0000-0000-000000000000"},
        "props": {"route": "dashboard", "tags": {"$set": ["a", "b"]}},
    }
]


def envelope(events: str) -> dict[str, str]:
    return {"type": "telemetry-events", "version": "2.4.3", "instance-id": "x", "events": events}


def test_decode_a_blob_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", encode_blob(EVENTS), "--tagged"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == TAGGED
    assert out.startswith("[\n  {\n")  # indented for reading


def test_decode_prints_readable_values_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 14: RFC 3339 text where the codec has {"$inst": …}; --tagged keeps that form.
    assert main(["decode", encode_blob(EVENTS)]) == 0
    (event,) = json.loads(capsys.readouterr().out)
    assert event["tracked-at"] == "2026-04-20T00:00:00Z"
    assert event["profile-id"] == "00000000-0000-0000-0000-000000000000"
    assert sorted(event["props"]["tags"]) == ["a", "b"]


def test_text_that_is_not_a_blob_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "hello"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tuiaudit decode: not a blob: ")
    assert "unsupported blob version" not in err


def test_decode_an_envelope_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = envelope(encode_blob(EVENTS))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(env) + "\n"))
    assert main(["decode", "-", "--compact", "--tagged"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out) == {**env, "events": TAGGED}


def test_decode_json_lines_of_envelopes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [json.dumps(envelope(encode_blob([i]))) for i in range(3)]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["decode", "-", "--compact"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["events"] for line in out] == [[0], [1], [2]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decode", "AAQ"], "blob too short"),
        (["decode", "not a blob!"], "not base64url"),
        (["decode", '{"events": 1}'], 'no "events" blob'),
        (["decode", "{broken"], "looks like JSON but is not"),
        (["decode", "  "], "no input"),
        (["decode", encode_blob(list(range(100))), "--max-size", "10"], "over the 10-byte limit"),
    ],
)
def test_bad_input_exits_1_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tuiaudit decode: ")
    assert message in captured.err


def test_help_has_examples() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    help_text = sub.choices["decode"].format_help()  # type: ignore[attr-defined]
    assert "examples:" in help_text and "tuiaudit decode -" in help_text
