"""``tuiaudit completion SHELL``: a completion script generated from the command tree (shtab)."""

from __future__ import annotations

import argparse
import sys

import shtab

from tuiaudit.cli import build_parser

NAME = "completion"
HELP = "print a shell completion script (bash, zsh or fish) generated from the commands"

SHELLS = ("bash", "zsh", "fish")

EPILOG = """\
The script is generated from the same argparse tree as --help, so it knows
every command, action and option of this version.

install:
  bash:  tuiaudit completion bash > ~/.local/share/bash-completion/completions/tuiaudit
  zsh:   tuiaudit completion zsh > "${fpath[1]}/_tuiaudit"    (then: compinit)
  fish:  tuiaudit completion fish > ~/.config/fish/completions/tuiaudit.fish
  now, in this bash:  eval "$(tuiaudit completion bash)\""""

# Options that name a file or a directory complete as paths.
_FILE_OPTIONS = {"--config", "--token-file", "--secret-file", "--output", "-o", "--out"}
_DIR_OPTIONS = {"--keep-sent-bodies"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete for")


def script(shell: str) -> str:
    """The completion script for ``shell``."""
    parser = build_parser()
    _mark_paths(parser)
    return shtab.complete(parser, shell=shell)


def _mark_paths(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _mark_paths(child)
        elif _FILE_OPTIONS.intersection(action.option_strings):
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif _DIR_OPTIONS.intersection(action.option_strings):
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(script(args.shell))
    return 0
