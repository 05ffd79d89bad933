"""``tuiaudit config``: the effective settings and where each came from; a starter TOML file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from tuiaudit.config import (
    COMMON_SETTINGS,
    DAEMON_SETTINGS,
    Settings,
    add_setting_arguments,
    default_config_path,
    env_name,
    load_settings,
    setting_names,
)
from tuiaudit.safe_text import escape_controls, redact_url

NAME = "config"
HELP = "show the effective settings and where each came from; write a commented config file"

EPILOG = """\
Settings come from flags, then TUIAUDIT_* environment variables, then the TOML
file (--config, TUIAUDIT_CONFIG, or config.toml in the user config dir), then
defaults. `config show` takes the daemon's flags too, to see what a command
line would give.

examples:
  tuiaudit config show
  TUIAUDIT_FLAGS=audit-log tuiaudit config show --listen 0.0.0.0:6061
  tuiaudit config show --json
  tuiaudit config init                      # to the default path, if absent
  tuiaudit config init -o /etc/tuiaudit/config.toml --force
  tuiaudit config init -o -                 # to stdout"""

SECRETS = frozenset({"token"})
"""Never shown: only whether they are set."""
URLS = frozenset({"store", "telemetry_uri", "public_uri", "archive_uri"})
"""Shown without user info or query values (a password in a PostgreSQL URL)."""

# Settings that have no command-line option (and so no SettingHelp): their
# description for `config init`.
_EXTRA_HELP = {
    "max_body": "largest accepted request body, bytes",
    "backoff_initial": "first retry delay after a failed telemetry send, seconds (doubles)",
    "connect_timeout": "telemetry/archive HTTP connect timeout, seconds",
    "request_timeout": "telemetry/archive HTTP request timeout, seconds",
    "header_timeout": "ingest API: seconds for a request's headers to arrive",
    "body_timeout": "ingest API: seconds for a request's body to arrive",
    "keepalive_timeout": "ingest API: seconds an idle keep-alive connection is kept",
}
_EXAMPLES = {
    "telemetry_uri": '"https://telemetry.example/api/audit"',
    "token": '"a-long-random-secret"',
    "token_file": '"/etc/tuiaudit/token"',
    "accept_policy": "1",
    "public_uri": '"https://app.example.com"',
    "keep_sent_bodies": '"/var/lib/tuiaudit/sent"',
    "archive_uri": '"file:///var/lib/tuiaudit/archive.jsonl"',
    "audit_retention_days": "365",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser(
        "show",
        help="the effective settings, each with where it came from (secrets redacted)",
        description="The effective settings, each with where it came from: a flag, an "
        "environment variable, the config file, or the default. Secrets are redacted.",
    )
    show.add_argument("--json", action="store_true", help="one JSON object")
    add_setting_arguments(show, DAEMON_SETTINGS)
    init = sub.add_parser(
        "init",
        help="write a commented TOML file with every setting at its default",
        description="Write a TOML file listing every setting, commented out at its default "
        "with what it does: uncomment and edit the ones to change.",
    )
    init.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it, - for stdout (default: config.toml in the user config dir)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    if args.action == "init":
        return _init(args)
    origins: dict[str, str] = {}
    settings = load_settings(args, origins=origins)
    rows = list(effective(settings, origins))
    if args.json:
        print(orjson.dumps({name: {"value": v, "from": o} for name, v, o in rows}).decode())
        return 0
    width = max(len(name) for name, _, _ in rows)
    shown = [(name, _text(value), origin) for name, value, origin in rows]
    vwidth = min(48, max(len(v) for _, v, _ in shown))
    print(f"config file: {settings.config_file or _default_file()}")
    for name, value, origin in shown:
        print(f"{name:<{width}}  {value:<{vwidth}}  {origin}")
    return 0


def _default_file() -> str:
    path = default_config_path()
    return f"{path} (default)" if path.exists() else f"none ({path} does not exist)"


def effective(settings: Settings, origins: dict[str, str]) -> list[tuple[str, Any, str]]:
    """(name, display value, origin) for every setting, secrets redacted."""
    out: list[tuple[str, Any, str]] = []
    for name in setting_names():
        value: Any = getattr(settings, name)
        if name in SECRETS:
            value = "***" if value is not None else None
        elif name in URLS and isinstance(value, str) and value:
            value = redact_url(value)
        elif isinstance(value, tuple):
            value = list(value)
        if name == "store" and not value:
            value = settings.store_url
        out.append((name.replace("_", "-"), value, origins.get(name, "default")))
    if "policy" in origins:  # a [policy] table in the file (DESIGN §3.1)
        policy = settings.policy
        out.append(("policy", policy.table(), origins["policy"]))
        out.append(("policy-fingerprint", policy.fingerprint, origins["policy"]))
    return out


def _text(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    if isinstance(value, dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return escape_controls(str(value))


# ------------------------------------------------------------------ init


def render_init() -> str:
    """The commented TOML: every setting, commented out at its default."""
    helps = {s.name: s.help for s in (*COMMON_SETTINGS, *DAEMON_SETTINGS)} | _EXTRA_HELP
    defaults = Settings()
    lines = [
        "# tuiaudit settings (written by `tuiaudit config init`).",
        "# Every setting is listed at its default, commented out: uncomment to change.",
        "# Precedence: command-line flags, then TUIAUDIT_* variables, then this file,",
        "# then the defaults. `tuiaudit config show` prints what is in effect and why.",
        "",
    ]
    for name in setting_names():
        default = getattr(defaults, name)
        lines.append(f"# {helps.get(name, name.replace('_', ' '))} [env {env_name(name)}]")
        if name == "store":
            lines.append(
                '# store = "/var/lib/tuiaudit/tuiaudit.db"    '
                "(default: tuiaudit.db in the user data directory)"
            )
        elif default is None:
            example = _EXAMPLES.get(name, '""')
            lines.append(f"# {name.replace('_', '-')} = {example}    (default: unset)")
        else:
            lines.append(f"# {name.replace('_', '-')} = {_toml(default)}")
        lines.append("")
    lines += [
        "# The site's own telemetry policy rules (DESIGN §3.1): they can only share",
        "# less than the built-in policy, except `keep`, which needs a new acceptance.",
        "# [policy]",
        '# profile-id = "keep"          # keep | daily-hash | drop',
        "# strict = false               # true: share only the keys listed in keep",
        "# drop-events = []             # never share these events",
        '# [policy.keep]                # event (or "*") -> { key = count|enum|identifier }',
        '# [policy.drop]                # event (or "*") -> [keys never shared]',
        "",
    ]
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return orjson.dumps(str(value)).decode()  # a JSON string is a valid TOML basic string


def _init(args: argparse.Namespace) -> int:
    text = render_init()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output) if args.output else default_config_path()
    if path.exists() and not args.force:
        print(
            f"tuiaudit config init: {path} exists: keep it, or replace it with --force",
            file=sys.stderr,
        )
        return 1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"tuiaudit config init: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
