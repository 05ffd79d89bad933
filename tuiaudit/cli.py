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

TOP = "top_"  # namespace prefix of the common options given before the command

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
    # The common options are accepted before the command too (`tuiaudit --store X
    # status`); main() hands them to the command unless it was given its own.
    for s in COMMON_SETTINGS:
        parser.add_argument(
            f"--{s.name.replace('_', '-')}",
            dest=f"{TOP}{s.name}",
            default=argparse.SUPPRESS,
            metavar=s.metavar,
            help=s.help,
        )
    parser.add_argument(
        "--json",
        dest=f"{TOP}json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output, for the commands that have it",
    )
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
        _common_on_actions(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def _common_on_actions(parser: argparse.ArgumentParser) -> None:
    """Give a command's own sub-commands (``webhooks list``) the common options.

    They default to SUPPRESS there, so a value given before the action
    (``webhooks --store X list``) is not overwritten by an absent one.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in action.choices.values():
            for s in COMMON_SETTINGS:
                child.add_argument(
                    f"--{s.name.replace('_', '-')}",
                    dest=s.name,
                    default=argparse.SUPPRESS,
                    metavar=s.metavar,
                    help=s.help,
                )
            _common_on_actions(child)


def _with_command(argv: list[str]) -> list[str]:
    """``argv`` with ``tui`` inserted when it names no command (bare ``tuiaudit --store X``)."""
    commands = {m.removesuffix("_") for m in COMMAND_MODULES}
    takes_value = {f"--{s.name.replace('_', '-')}" for s in COMMON_SETTINGS}
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("--help", "-h", "--version"):
            return argv
        if word in commands:
            return argv
        if not word.startswith("-"):
            break  # not a command: let the tui command say what it does not know
        i += 2 if word in takes_value else 1
    return ["tui", *argv]


def _merge_top(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Apply the common options given before the command (the command's own win)."""
    for key in [k for k in vars(args) if k.startswith(TOP)]:
        name, value = key[len(TOP) :], getattr(args, key)
        delattr(args, key)
        if name == "json":
            if not hasattr(args, "json"):
                parser.error(f"--json does not apply to `tuiaudit {args.command}`")
            args.json = True
        elif getattr(args, name, None) is None:
            setattr(args, name, value)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(_with_command(argv))
    _merge_top(parser, args)
    try:
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"tuiaudit {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
