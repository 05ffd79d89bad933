"""The store-facing commands, run in-process through ``tuiaudit.cli.main``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tuiaudit.cli import build_parser, main
from tuiaudit.commands._common import parse_when
from tuiaudit.commands.import_ import import_records, read_csv, read_jsonl
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter, AuditRow

MINE = ("daemon", "submit", "import", "export", "status", "migrate", "consent")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("TUIAUDIT_") or key == "DO_NOT_TRACK":
            monkeypatch.delenv(key)
    monkeypatch.setenv("TUIAUDIT_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")


def rows(store_url: str, **flt: Any) -> list[AuditRow]:
    async def fetch() -> list[AuditRow]:
        async with open_store(store_url) as store:
            return [r async for r in store.iter_rows(AuditFilter(**flt))]

    return asyncio.run(fetch())


def cli(*argv: str) -> int:
    return main(list(argv))


# --------------------------------------------------------------------- help


@pytest.mark.parametrize("name", MINE)
def test_every_command_has_help_with_examples(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(name, "--help")
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"tuiaudit {name}" in out and "--store" in out


# ------------------------------------------------------------------- submit


def test_submit_goes_through_the_modes(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("migrate", "--store", store_url) == 0  # submit never creates a store (issue 14)
    capsys.readouterr()
    pid = str(uuid.uuid4())
    code = cli(
        "submit",
        "--store",
        store_url,
        "--name",
        "login-with-password",
        "--type",
        "action",
        "--profile-id",
        pid,
        "--props",
        '{"email": "a@b.example", "token": "t", "n": 1}',
        "--context",
        '{"version": "1"}',
        "--tracked-at",
        "2024-05-01T12:00:00Z",
        "--ip-addr",
        "192.0.2.1",
    )
    assert code == 0 and "stored 2 rows" in capsys.readouterr().out
    [full] = rows(store_url, source="backend", name="login-with-password")
    assert str(full.profile_id) == pid and full.ip_addr == "192.0.2.1"
    assert full.props == {"email": "a@b.example", "n": 1}  # reserved keys never stored
    [tele] = rows(store_url, source="telemetry:backend")
    assert tele.props.get("email-domain") == "b.example" and "email" not in tele.props

    assert (
        cli("submit", "--store", store_url, "--name", "x", "--type", "t", "--flags", "audit-log")
        == 0
    )
    assert len(rows(store_url, name="x")) == 1


def test_submit_rejects_bad_fields(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("migrate", "--store", store_url) == 0  # submit never creates a store (issue 14)
    assert (
        cli("submit", "--store", store_url, "--name", "x", "--type", "t", "--profile-id", "no") == 2
    )
    assert "profile-id" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli("submit", "--store", store_url, "--name", "x", "--type", "t", "--props", "[1]")
    assert rows(store_url) == []


# ---------------------------------------------------------- import / export


def _events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.uuid4()),
            "name": f"ev-{i % 3}",
            "type": "action",
            "profile-id": str(uuid.uuid4()),
            "props": {"i": i, "tag": 'x,"quoted"\nline', "nested": {"a": [1, 2]}},
            "context": {"version": "1.0"},
            "ip-addr": "198.51.100.7",
            "tracked-at": f"2024-05-01T12:00:{i % 60:02d}.{i % 1000:03d}Z",
        }
        for i in range(n)
    ]


def test_import_reports_bad_lines_and_keeps_the_good(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _events(5)
    lines = [json.dumps(e) for e in good[:2]]
    lines += ["{not json", json.dumps([1]), json.dumps({"name": "", "type": "a"}), ""]
    lines += [json.dumps(e) for e in good[2:]]
    lines += [json.dumps({"name": "ok", "type": "a", "props": {"v": 1}, "colour": "red"})]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    code = cli("import", "--store", store_url, "--flags", "audit-log", "--batch", "2", str(src))
    out, err = capsys.readouterr()
    assert code == 1
    assert "5 events accepted" in out and "4 rejected" in out
    assert "line 3: not valid JSON" in err and "line 4: not a JSON object" in err
    assert "line 5: name:" in err and "line 10: colour: unknown field" in err
    assert {str(r.id) for r in rows(store_url)} == {e["id"] for e in good}


def test_import_reads_stdin(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = "\n".join(json.dumps(e) for e in _events(3)).encode()

    class Stdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr("sys.stdin", Stdin)
    assert cli("import", "--store", store_url, "--flags", "audit-log", "-") == 0
    assert len(rows(store_url)) == 3


def _comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # An exported row is restored as it was, created-at included (issue 14 item 7).
    return sorted(records, key=lambda r: r["id"])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_import_round_trip(fmt: str, store_url: str, tmp_path: Path) -> None:
    src_store = f"sqlite:///{tmp_path}/source.db"
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in _events(2500)) + "\n")
    assert cli("import", "--store", src_store, "--flags", "audit-log", str(events)) == 0
    first = tmp_path / f"first.{fmt}"
    assert cli("export", "--store", src_store, "--format", fmt, "-o", str(first)) == 0
    assert (
        cli("import", "--store", store_url, "--flags", "audit-log", "--format", fmt, str(first))
        == 0
    )
    second = tmp_path / f"second.{fmt}"
    assert cli("export", "--store", store_url, "--format", fmt, "-o", str(second)) == 0

    def load(path: Path) -> list[dict[str, Any]]:
        if fmt == "jsonl":
            return [json.loads(line) for line in path.read_text().splitlines()]
        out = []
        with path.open(newline="") as fh:
            for rec in csv.DictReader(fh):
                rec["props"], rec["context"] = json.loads(rec["props"]), json.loads(rec["context"])
                out.append({k: v for k, v in rec.items() if v != ""})
        return out

    a, b = load(first), load(second)
    assert len(a) == 2500
    assert _comparable(a) == _comparable(b)


def test_export_filters(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "e.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in _events(9)) + "\n")
    assert cli("import", "--store", store_url, str(src)) == 0  # mode B: 18 rows
    capsys.readouterr()

    def export(*flags: str) -> list[dict[str, Any]]:
        assert cli("export", "--store", store_url, *flags) == 0
        return [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert len(export()) == 9  # the audit log: telemetry copies only when asked (issue 14)
    assert len(export("--telemetry")) == 18
    assert {r["source"] for r in export("--source", "telemetry:*")} == {"telemetry:backend"}
    assert len(export("--source", "backend", "--name", "ev-1")) == 3
    assert len(export("--since", "1h")) == 9  # the telemetry copies are dated 00:00 today
    assert export("--since", "1h", "--until", "30m") == []
    assert (
        len(export("--text", "QUOTED")) == 9
    )  # case-insensitive, props JSON (telemetry drops strings)
    profile = export("--source", "backend")[0]["profile-id"]
    assert len(export("--profile", profile)) == 1
    assert len(export("--profile", profile, "--telemetry")) == 2  # the copy keeps it


def test_parse_when() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2030, 1, 8, tzinfo=UTC)
    assert parse_when("7d", now=now) == now - timedelta(days=7)
    assert parse_when("90m", now=now) == now - timedelta(minutes=90)
    assert parse_when("2024-05-01T00:00:00Z") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("0") == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_when("last tuesday")


async def test_import_streams_in_batches(store_url: str) -> None:
    data = "\n".join(json.dumps(e) for e in _events(30)).encode()
    async with open_store(store_url) as store:
        report = await import_records(store, ("audit-log",), read_jsonl(io.BytesIO(data)), batch=7)
        assert (report.accepted, report.rows, report.rejected) == (30, 30, 0)
        bad_csv = b"name,type,props\nok,a,{}\nbad,a,{nope\n"
        report = await import_records(store, ("audit-log",), read_csv(io.BytesIO(bad_csv)))
        assert report.accepted == 1 and report.reasons == [(3, "props: not valid JSON")]


# ------------------------------------------------------ status / consent / migrate


def test_status_and_export_on_a_missing_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "absent.db")
    assert cli("status", "--store", url) == 1
    assert cli("export", "--store", url) == 1
    err = capsys.readouterr().err
    assert err.count("start the daemon once") == 2 and not (tmp_path / "absent.db").exists()


def test_status_without_a_daemon(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("migrate", "--store", store_url) == 0
    capsys.readouterr()
    assert cli("status", "--store", store_url, "--json") == 3
    data = json.loads(capsys.readouterr().out)
    assert data["daemon"] == "never-started" and data["queue"]["pending"] == 0
    assert set(data["drops"]) >= {"age", "cap", "rejected", "consent-revoked", "user-purge"}
    assert cli("status", "--store", store_url) == 3
    out = capsys.readouterr().out
    assert "daemon: never-started" in out and "pending telemetry rows: 0" in out


def test_consent_show_accept_revoke(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Only daemon, migrate and import create a store (issue 14, tests/test_cli_errors.py).
    assert cli("migrate", "--store", store_url) == 0
    assert cli("consent", "--store", store_url) == 0
    out = capsys.readouterr().out
    assert f"version {POLICY_VERSION}" in out and "not accepted" in out
    assert cli("consent", "--store", store_url, "--accept", str(POLICY_VERSION + 1)) == 2
    assert "current version" in capsys.readouterr().err
    assert cli("consent", "--store", store_url, "--accept") == 0
    assert f"version {POLICY_VERSION} accepted" in capsys.readouterr().out
    src = tmp_path / "e.jsonl"
    src.write_text("\n".join(json.dumps(e) for e in _events(4)) + "\n")
    assert cli("import", "--store", store_url, str(src)) == 0
    capsys.readouterr()
    assert cli("consent", "--store", store_url, "--revoke") == 0
    assert "4 pending telemetry rows deleted" in capsys.readouterr().out
    assert rows(store_url, source="telemetry:*") == []


def test_migrate_check(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("migrate", "--store", store_url) == 0
    assert "schema version" in capsys.readouterr().out
    assert cli("migrate", "--store", store_url, "--check") == 0
    assert "up to date" in capsys.readouterr().out


def test_parser_builds_with_all_my_commands() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(MINE) <= set(sub.choices)  # type: ignore[union-attr]
