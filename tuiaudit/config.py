"""Settings: command-line flags, then ``TUIAUDIT_*`` variables, then a TOML file, then defaults.

Every number of docs/DESIGN.md lives here once as a default, so each is configurable
the same three ways. ``DO_NOT_TRACK`` set to anything but empty or ``0``
removes the ``telemetry`` flag whatever else says (DESIGN §7.1), and
``Settings.do_not_track`` records that it did.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from tuiaudit.safe_text import redact_url
from tuiaudit.site_policy import DEFAULT_SITE, SitePolicy, site_policy_from_table
from tuiaudit.storage.url import parse_store_url

KNOWN_FLAGS = ("audit-log", "telemetry", "audit-log-logger", "webhooks", "audit-log-archive")
ARCHIVE_FORMATS = ("json", "transit")
APPROVAL_MODES = ("auto", "manual")  # DESIGN §10; tuiaudit.approval names them
DEFAULT_FLAGS = ("audit-log", "telemetry")


class ConfigError(ValueError):
    """A setting has a value tuiaudit cannot use; the message names it."""


def default_store_path() -> Path:
    """``tuiaudit.db`` in the platform's user data directory (daemon and TUI agree)."""
    return Path(platformdirs.user_data_dir("tuiaudit", appauthor=False)) / "tuiaudit.db"


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("tuiaudit", appauthor=False)) / "config.toml"


@dataclass(frozen=True, slots=True)
class Settings:
    store: str = ""  # "" means default_store_path()
    listen: str = "127.0.0.1:6061"
    flags: tuple[str, ...] = DEFAULT_FLAGS
    telemetry_uri: str | None = None
    interval: float = 10800.0  # seconds between telemetry runs
    token: str | None = None
    token_file: str | None = None  # the token read from a file (not visible in `ps`)
    jitter: float = 10.0  # max random delay before sending, seconds
    accept_policy: int | None = None  # headless consent (DESIGN §7.1)
    public_uri: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    max_body: int = 1024 * 1024
    batch_rows: int = 10_000
    batch_bytes: int = 4 * 1024 * 1024
    max_rows: int = 100_000  # telemetry queue cap
    max_age_days: float = 7.0
    backoff_initial: float = 30.0
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    # Hostile clients (DESIGN §8.2): browser origins allowed to call /api/, and
    # the ingest server's connection limits (daemon/guards.py).
    allowed_origins: tuple[str, ...] = ()
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 15.0
    max_connections: int = 256
    workers: int = 1  # ingest processes (daemon/ingest_workers.py); 1: the daemon serves HTTP
    keep_sent_bodies: str | None = None  # directory for local copies of sent bodies
    approval: str = "auto"  # "manual": every body waits for a person's approval (DESIGN §10)
    # Audit archive and retention (DESIGN §9).
    archive_uri: str | None = None  # http(s)://… POST, or file:///path.jsonl append
    archive_format: str = "json"  # or "transit" (application/transit+json, as the reference)
    archive_interval: float = 300.0  # seconds between archive runs
    archive_chunk: int = 128  # rows per archive POST
    archive_keep_days: float = 0.0  # archived rows kept this long (by created_at), then deleted
    audit_retention_days: float | None = None  # full rows older than this deleted (None: off)
    do_not_track: bool = False  # set when DO_NOT_TRACK removed the telemetry flag
    config_file: str | None = None
    policy: SitePolicy = DEFAULT_SITE  # the [policy] table of the TOML file (DESIGN §3.1)
    given: frozenset[str] = field(default=frozenset(), compare=False)
    """Settings set by a flag, a variable or the TOML file (the rest are defaults):
    a command fills only the others from a live daemon's record (DESIGN §8.1)."""

    @property
    def store_url(self) -> str:
        return self.store or str(default_store_path())

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)


# name -> converter from a string (env var / CLI) or a TOML value
def _flags(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    out = tuple(dict.fromkeys(s.strip() for s in items if str(s).strip()))
    unknown = [f for f in out if f not in KNOWN_FLAGS]
    if unknown:
        raise ConfigError(
            f"unknown flag(s) {', '.join(unknown)}: choose from {', '.join(KNOWN_FLAGS)}"
        )
    return out


def _str_list(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return tuple(s.strip() for s in items if str(s).strip())


def _optional_str(value: Any) -> str | None:
    s = str(value).strip()
    return s or None


def _token(value: Any, what: str) -> str:
    s = str(value).strip()
    if not s:
        # An empty token must not quietly mean "no authentication".
        raise ConfigError(f"is empty: give {what}, or leave the setting out for no token")
    return s


def read_secret_file(path: str, option: str) -> str:
    """The secret in ``path`` (surrounding whitespace removed); one-line errors."""
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().strip()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{option} {path}: not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"{option} {path}: the file is empty")
    return secret


def _number(kind: type) -> Any:
    def convert(value: Any) -> Any:
        try:
            n = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"expected a number, got {value!r}") from None
        if n < 0:
            raise ConfigError(f"expected a non-negative number, got {value!r}")
        return n

    return convert


def _workers(value: Any) -> int:
    n = _number(int)(value)
    if not 1 <= n <= 64:
        raise ConfigError(f"expected 1..64 ingest processes, got {value!r}")
    return int(n)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _archive_format(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ARCHIVE_FORMATS:
        raise ConfigError(f"{value!r} is not an archive format: choose json or transit")
    return text


def _approval(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in APPROVAL_MODES:
        raise ConfigError(f"{value!r} is not an approval mode: choose auto or manual")
    return text


def _optional_days(value: Any) -> float | None:
    """A number of days, or "" / "off" for none."""
    if isinstance(value, str) and value.strip().lower() in ("", "off", "none"):
        return None
    days: float = _number(float)(value)
    return days


def _store(value: Any) -> str:
    url = str(value)
    if url.strip():
        try:
            parse_store_url(url)
        except ValueError as exc:
            raise ConfigError(f"{exc} (e.g. /srv/audit.db, sqlite:///srv/audit.db)") from None
    return url


_CONVERTERS: dict[str, Any] = {
    "store": _store,
    "listen": lambda v: (parse_listen(str(v)), str(v))[1],
    "flags": _flags,
    "telemetry_uri": _optional_str,
    "interval": _number(float),
    "token": lambda v: _token(v, "a token"),
    "token_file": lambda v: _token(v, "a file name"),
    "jitter": _number(float),
    "accept_policy": _number(int),
    "public_uri": _optional_str,
    "trusted_proxies": _str_list,
    "max_body": _number(int),
    "batch_rows": _number(int),
    "batch_bytes": _number(int),
    "max_rows": _number(int),
    "max_age_days": _number(float),
    "backoff_initial": _number(float),
    "connect_timeout": _number(float),
    "request_timeout": _number(float),
    "allowed_origins": _str_list,
    "header_timeout": _number(float),
    "body_timeout": _number(float),
    "keepalive_timeout": _number(float),
    "max_connections": _number(int),
    "workers": _workers,
    "keep_sent_bodies": _optional_str,
    "approval": _approval,
    "archive_uri": _optional_str,
    "archive_format": _archive_format,
    "archive_interval": _number(float),
    "archive_chunk": _number(int),
    "archive_keep_days": _number(float),
    "audit_retention_days": _optional_days,
}


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen must be HOST:PORT (e.g. 127.0.0.1:6061), got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def env_name(name: str) -> str:
    return "TUIAUDIT_" + name.upper()


def load_settings(
    cli: Mapping[str, Any] | argparse.Namespace | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    origins: dict[str, str] | None = None,
) -> Settings:
    """Resolve settings from CLI values (None = not given), environment, TOML, defaults.

    ``origins``, when given, receives where each setting that is not a default
    came from (``flag --listen``, ``env TUIAUDIT_LISTEN``, ``file PATH``): what
    ``tuiaudit config show`` prints.
    """
    environ = os.environ if environ is None else environ
    given = vars(cli) if isinstance(cli, argparse.Namespace) else dict(cli or {})
    chosen = given.get("config")
    if chosen is None:
        chosen = environ.get("TUIAUDIT_CONFIG")
    # An empty name (--config "" or TUIAUDIT_CONFIG="") means "no file at all",
    # not "the default one": the way to run with flags and variables alone.
    config_file = chosen or None
    toml_values = {} if chosen == "" else _read_toml(config_file)

    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f.name
        if name not in _CONVERTERS:
            continue
        for origin, source in (
            (f"--{name.replace('_', '-')}", given.get(name)),
            (env_name(name), environ.get(env_name(name))),
            (
                f"{name} in {config_file}",
                toml_values.get(name, toml_values.get(name.replace("_", "-"))),
            ),
        ):
            if source is None:
                continue
            try:
                values[name] = _CONVERTERS[name](source)
            except ConfigError as exc:
                raise ConfigError(f"{origin}: {exc}") from None
            if origins is not None:
                origins[name] = (
                    f"flag {origin}"
                    if origin.startswith("--")
                    else f"env {origin}"
                    if origin.startswith("TUIAUDIT_")
                    else f"file {config_file or default_config_path()}"
                )
            break

    settings = replace(Settings(), **values, config_file=config_file, given=frozenset(values))
    if toml_values.get("policy") is not None:
        try:
            where = f"[policy] in {config_file or default_config_path()}"
            site = site_policy_from_table(toml_values["policy"], where)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        settings = replace(settings, policy=site)
        if origins is not None:
            origins["policy"] = f"file {config_file or default_config_path()}"
    if settings.token_file is not None:
        if settings.token is not None:
            raise ConfigError("give --token or --token-file, not both")
        settings = replace(settings, token=read_secret_file(settings.token_file, "--token-file"))
        if origins is not None:
            origins["token"] = f"token_file ({origins.get('token_file', '')})"
    if do_not_track(environ) and settings.has("telemetry"):
        settings = replace(
            settings,
            flags=tuple(f for f in settings.flags if f != "telemetry"),
            do_not_track=True,
        )
        if origins is not None:
            origins["flags"] = "DO_NOT_TRACK (removed telemetry)"
    return settings


def setting_names() -> list[str]:
    """Every configurable setting (a flag, a variable, a TOML key), in declaration order."""
    return [f.name for f in fields(Settings) if f.name in _CONVERTERS]


def do_not_track(environ: Mapping[str, str]) -> bool:
    """``DO_NOT_TRACK`` asks for no telemetry: any value but empty or ``0`` (DESIGN §7.1).

    Not a yes/no parse: ``2``, ``true``, ``yes`` or ``please`` all mean "do not".
    """
    return environ.get("DO_NOT_TRACK", "").strip() not in ("", "0")


def _read_toml(path: str | None) -> dict[str, Any]:
    if path is None:
        candidate = default_config_path()
        if not candidate.exists():
            return {}
        path = str(candidate)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    # Accept either top-level keys or a [tuiaudit] table.
    table = data.get("tuiaudit", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [tuiaudit] must be a table")
    return table


@dataclass(frozen=True, slots=True)
class SettingHelp:
    name: str
    help: str
    metavar: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# The settings every command accepts on the command line.
COMMON_SETTINGS = (
    SettingHelp("store", "store URL: sqlite:///path.db, a plain path, or postgresql://…", "URL"),
    SettingHelp(
        "config", "TOML settings file (default: config.toml in the user config dir)", "FILE"
    ),
)

# Audit archive and retention (DESIGN §9): the daemon, `tuiaudit archive` and `tuiaudit gc`.
ARCHIVE_SETTINGS = (
    SettingHelp(
        "archive_uri",
        "where full audit rows are archived (flag audit-log-archive): http(s)://… or "
        "file:///path.jsonl",
        "URI",
    ),
    SettingHelp("archive_format", "archive body: json (default) or transit", "FORMAT"),
    SettingHelp("archive_interval", "seconds between archive runs (default 300)", "SECONDS"),
    SettingHelp("archive_chunk", "rows per archive POST (default 128)", "N"),
    SettingHelp(
        "archive_keep_days", "archived rows older than this are deleted (default 0)", "DAYS"
    ),
    SettingHelp(
        "audit_retention_days",
        "full audit rows older than this are deleted, archived or not (default off)",
        "DAYS",
    ),
)

DAEMON_SETTINGS = (
    SettingHelp("listen", "ingest API address (default 127.0.0.1:6061)", "HOST:PORT"),
    SettingHelp(
        "flags",
        "comma-separated: audit-log,telemetry,audit-log-logger,webhooks,audit-log-archive",
        "LIST",
    ),
    SettingHelp("telemetry_uri", "where telemetry goes: http(s)://… or file:///path.jsonl", "URI"),
    SettingHelp("interval", "seconds between telemetry runs (default 10800)", "SECONDS"),
    SettingHelp("token", "bearer token required on /api/ requests", "TOKEN"),
    SettingHelp("token_file", "read the bearer token from FILE (kept out of `ps`)", "FILE"),
    SettingHelp("allowed_origins", "browser origins allowed to call /api/ (default: none)", "LIST"),
    SettingHelp("max_connections", "open connections to the ingest API (default 256)", "N"),
    SettingHelp("workers", "ingest processes: 2 parses requests on a second core (default 1)", "N"),
    SettingHelp("jitter", "max random delay before a telemetry run sends (default 10)", "SECONDS"),
    SettingHelp("accept_policy", "accept this telemetry policy version headlessly", "VERSION"),
    SettingHelp("public_uri", "public URI reported in instance-start", "URI"),
    SettingHelp("trusted_proxies", "peers whose X-Forwarded-For is trusted", "LIST"),
    SettingHelp("max_rows", "telemetry queue cap (default 100000)", "N"),
    SettingHelp("max_age_days", "telemetry rows older than this are dropped (default 7)", "DAYS"),
    SettingHelp("batch_rows", "rows per telemetry batch (default 10000)", "N"),
    SettingHelp("batch_bytes", "max encoded bytes per batch body (default 4 MiB)", "BYTES"),
    SettingHelp("keep_sent_bodies", "keep a copy of each sent body in DIR (off by default)", "DIR"),
    SettingHelp(
        "approval",
        "manual: every body waits until `tuiaudit approve SHA256` (default auto)",
        "MODE",
    ),
    *ARCHIVE_SETTINGS,
)


def add_setting_arguments(
    parser: argparse.ArgumentParser, settings: tuple[SettingHelp, ...]
) -> None:
    """Add ``--name`` options that default to None, so unset flags fall through to env/TOML."""
    for s in settings:
        env = f" [env {env_name(s.name)}]" if s.name != "config" else " [env TUIAUDIT_CONFIG]"
        parser.add_argument(
            f"--{s.name.replace('_', '-')}",
            dest=s.name,
            default=None,
            metavar=s.metavar,
            help=s.help + env,
            **s.extra,
        )


# The settings a daemon records in its state row (``daemon_state.info``) so
# that every command and the dashboard use the daemon's, not their own
# defaults (DESIGN §8.1). Secrets never leave the process: the token is only
# said to be set, a URI loses its user info and query.
RECORDED = (
    "flags",
    "telemetry_uri",
    "interval",
    "jitter",
    "accept_policy",
    "max_rows",
    "max_age_days",
    "batch_rows",
    "batch_bytes",
    "backoff_initial",
    "do_not_track",
    "approval",
)


def record_settings(settings: Settings) -> dict[str, Any]:
    """``settings`` as JSON for the state row, secrets redacted."""
    out: dict[str, Any] = {}
    for name in RECORDED:
        value = getattr(settings, name)
        out[name.replace("_", "-")] = list(value) if isinstance(value, tuple) else value
    uri = settings.telemetry_uri
    if uri is not None:
        shown = redact_url(uri)
        out["telemetry-uri"] = shown
        out["telemetry-uri-redacted"] = shown != uri
    out["token-set"] = settings.token is not None
    return out


def with_recorded(settings: Settings, record: Mapping[str, Any] | None) -> Settings:
    """``settings`` with every recorded value the user did not give taken from ``record``.

    A redacted telemetry URI is kept for display and hold reasons only: the
    caller must not send to it (``telemetry-uri-redacted`` says so).
    """
    if not record:
        return settings
    values: dict[str, Any] = {}
    for name in RECORDED:
        key = name.replace("_", "-")
        if name in settings.given or key not in record:
            continue
        value = record[key]
        if name == "do_not_track":
            if isinstance(value, bool):
                values[name] = value
            continue
        if value is None:
            if name in ("telemetry_uri", "accept_policy"):
                values[name] = None
            continue
        try:
            values[name] = _CONVERTERS[name](value)
        except ConfigError:
            continue  # a record written by another version: keep ours
    return replace(settings, **values)
