"""The command list: every module in tuiaudit/commands is a listed command, and loads."""

from __future__ import annotations

import pkgutil

import pytest

import tuiaudit.commands
from tuiaudit import cli
from tuiaudit.commands import COMMAND_MODULES


def test_every_command_module_is_listed() -> None:
    found = {m.name for m in pkgutil.iter_modules(tuiaudit.commands.__path__)}
    helpers = {name for name in found if name.startswith("_")}
    assert found - helpers == set(COMMAND_MODULES)


def test_a_command_that_fails_to_import_fails_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not "not written yet, so absent from --help": a broken command is a broken CLI.
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*COMMAND_MODULES, "no_such_command"))
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        cli.build_parser()
