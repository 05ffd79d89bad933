"""One module per ``tuiaudit`` command.

Each module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` (options and
an epilog with examples) and ``run(args) -> int`` (the exit status). Command
modules are imported lazily so ``tuiaudit status`` never pays for Textual.
"""

# Order is the order of ``tuiaudit --help``.
COMMAND_MODULES = (
    "tui",
    "daemon",
    "demo",
    "preview",
    "ship",
    "approve",
    "reject",
    "archive",
    "status",
    "submit",
    "import_",
    "export",
    "decode",
    "receiver",
    "consent",
    "gc",
    "migrate",
    "webhooks",
    "config",
    "completion",
)
