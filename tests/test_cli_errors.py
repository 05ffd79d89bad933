"""User errors end in one line a person can act on, never a traceback (issue 14, items 5 and 6).

Every command runs as a subprocess with bad arguments; none may print
"Traceback". A mistyped store URL names the accepted forms; commands other
than daemon, migrate and import refuse a store that does not exist (and do
not create it); the common options go before or after the command.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path

import pytest
from cli_support import Result, run_cli

from tuiaudit.commands import COMMAND_MODULES

# Commands that serve until stopped get only arguments that must stop them at once.
SERVING = {"daemon", "demo", "receiver", "tui"}
CREATORS = {"daemon", "migrate", "import"}  # the only ones that may create a store


def _bad_invocations(tmp: Path, store: str) -> list[list[str]]:
    missing = str(tmp / "missing.db")
    typo = f"sqllite:///{tmp}/x.db"
    per_command: dict[str, list[list[str]]] = {
        "daemon": [
            ["daemon", "--store", typo],
            ["daemon", "--listen", "nowhere"],
            ["daemon", "--flags", "audit-log,nonsense"],
            ["daemon", "--interval", "soon"],
            ["daemon", "--config", str(tmp / "missing.toml")],
        ],
        "demo": [["demo", "--duration", "-1"], ["demo", "--fail-rate", "2"], ["demo", "--x"]],
        "receiver": [["receiver", "--listen", "nowhere"], ["receiver", "--fail-rate", "5"]],
        "tui": [
            ["tui", "--store", missing],
            ["tui", "--read-only", "--store", missing],
            ["tui", "--store", typo],
            ["tui", "--refresh", "often"],
        ],
        "import": [["import", "--store", store, str(tmp / "absent.jsonl")]],
        "decode": [["decode", "not-a-blob"], ["decode", "AAAA"]],
        "export": [["export", "--store", store, "--since", "last tuesday"]],
        "submit": [["submit", "--store", store, "--name", "x", "--type", "t", "--props", "{"]],
        "consent": [["consent", "--store", store, "--accept", "999"]],
        "status": [["status", "--store", store, "--attempts", "many"]],
        "webhooks": [
            ["webhooks", "--store", store, "test", "999"],
            ["webhooks", "--store", store, "add", "ftp://x"],
            ["webhooks", "list", "--store", missing],
        ],
    }
    out: list[list[str]] = []
    for module in COMMAND_MODULES:
        name = module.removesuffix("_")
        out += per_command.get(name, [])
        if name in SERVING:
            continue
        positional = {"import": [str(tmp / "absent.jsonl")], "decode": ["x"]}.get(name, [])
        action = ["list"] if name == "webhooks" else []
        out += [
            [name, *action, "--store", typo, *positional],
            [name, *action, "--no-such-option"],
        ]
        if name not in CREATORS:
            out.append([name, *action, "--store", str(tmp / f"missing-{name}.db"), *positional])
    return out


def _existing(paths: Iterable[str]) -> list[str]:
    return [p for p in paths if Path(p).exists()]


async def test_no_command_ends_in_a_traceback_on_bad_arguments(tmp_path: Path) -> None:
    store = str(tmp_path / "store.db")
    assert (await run_cli("migrate", "--store", store)).code == 0
    invocations = _bad_invocations(tmp_path, store)
    gate = asyncio.Semaphore(2)  # two cores shared by everyone

    async def one(argv: list[str]) -> tuple[list[str], Result]:
        async with gate:
            return argv, await run_cli(*argv)

    results = await asyncio.gather(*(one(argv) for argv in invocations))
    failures = []
    for argv, result in results:
        said = result.out + result.err
        if "Traceback" in said or result.code == 0 or not result.err.strip():
            failures.append(f"tuiaudit {' '.join(argv)} -> {result.code}\n{said}")
    assert not failures, "\n\n".join(failures)
    assert len(results) >= 3 * len(COMMAND_MODULES)
    # Nothing created a store on the way.
    missing = [argv[argv.index("--store") + 1] for argv in invocations if "--store" in argv]
    assert _existing(p for p in missing if "missing" in p) == []


async def test_a_mistyped_store_url_names_the_accepted_forms(tmp_path: Path) -> None:
    result = await run_cli("status", "--store", f"sqllite:///{tmp_path}/audit.db")
    assert result.code == 2
    assert result.out == ""
    (line,) = result.err.splitlines()
    assert line.startswith("tuiaudit status: --store: unsupported store URL scheme 'sqllite'")
    assert "sqlite:///" in line and "postgresql://" in line


@pytest.mark.parametrize("extra", [[], ["--read-only"]])
async def test_the_dashboard_never_creates_a_store(tmp_path: Path, extra: list[str]) -> None:
    missing = tmp_path / "missing.db"
    result = await run_cli("tui", *extra, "--store", str(missing))
    assert result.code == 1
    (line,) = result.err.splitlines()
    assert line.startswith(f"tuiaudit tui: no store at {missing}")
    assert not missing.exists()


async def test_only_daemon_migrate_and_import_create_a_store(tmp_path: Path) -> None:
    for argv in (
        ["status"],
        ["export"],
        ["consent", "--accept"],
        ["gc"],
        ["preview"],
        ["ship"],
        ["submit", "--name", "x", "--type", "action"],
        ["webhooks", "list"],
    ):
        path = tmp_path / f"{argv[0]}.db"
        result = await run_cli(*argv, "--store", str(path))
        assert result.code != 0 and f"no store at {path}" in result.err, (argv, result)
        assert not path.exists()
    events = tmp_path / "e.jsonl"
    events.write_text('{"name": "x", "type": "action"}\n')
    for argv in (["migrate"], ["import", str(events)]):
        path = tmp_path / f"{argv[0]}-made.db"
        result = await run_cli(*argv, "--store", str(path))
        assert result.code == 0, result.err
        assert path.exists()


async def test_common_options_go_before_or_after_the_command(tmp_path: Path) -> None:
    store = str(tmp_path / "store.db")
    assert (await run_cli("migrate", "--store", store)).code == 0
    for argv in (
        ["--store", store, "status", "--json"],
        ["status", "--store", store, "--json"],
        ["--json", "--store", store, "status"],
        ["--store", store, "--json", "status"],
    ):
        result = await run_cli(*argv)
        assert result.code == 3, (argv, result.err)  # no daemon: exit 3, with the report
        assert json.loads(result.out)["queue"]["pending"] == 0
    for argv in (
        ["webhooks", "list", "--store", store],
        ["webhooks", "--store", store, "list"],
        ["--store", store, "webhooks", "list"],
    ):
        result = await run_cli(*argv)
        assert (result.code, result.err) == (0, ""), argv
        assert result.out.startswith("no webhooks")
    listed = await run_cli("--store", store, "--json", "webhooks", "list")
    assert json.loads(listed.out) == {"webhooks": []}
    # The command's own value wins over one given before it.
    other = str(tmp_path / "other.db")
    result = await run_cli("--store", other, "status", "--store", store)
    assert result.code == 3 and f"store: {store}" in result.out
    not_here = await run_cli("--json", "decode", "x")
    assert not_here.code == 2 and "--json does not apply to `tuiaudit decode`" in not_here.err
