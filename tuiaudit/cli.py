"""The ``tuiaudit`` command tree (also ``python -m tuiaudit``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from tuiaudit import __version__
from tuiaudit.commands import COMMAND_MODULES
from tuiaudit.config import COMMON_SETTINGS, ConfigError, add_setting_arguments

DESCRIPTION = """\
tuiaudit: an audit log with opt-in anonymous telemetry.
With no command, opens the dashboard on the store (same as `tuiaudit tui`).
Settings come from flags, then TUIAUDIT_* environment variables, then a TOML
file (--config), then defaults."""


def _load_commands() -> list[ModuleType]:
    # Every listed command must import: a broken one fails the CLI loudly
    # rather than vanishing from --help.
    return [importlib.import_module(f"tuiaudit.commands.{name}") for name in COMMAND_MODULES]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuiaudit",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tuiaudit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _load_commands():
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_setting_arguments(cmd, COMMON_SETTINGS)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or (argv[0].startswith("--") and argv[0] not in ("--help", "--version")):
        argv = ["tui", *argv]
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"tuiaudit {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
