"""Helpers shared by the store-facing commands: open the store, report errors, parse times."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson

from tuiaudit.config import Settings, load_settings
from tuiaudit.storage import open_store, parse_store_url
from tuiaudit.storage.base import SchemaTooNew, Store, StoreError
from tuiaudit.timeutil import parse_timestamp, utcnow

T = TypeVar("T")

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def eprint(*parts: object) -> None:
    print(*parts, file=sys.stderr)


def parse_when(value: str, *, now: datetime | None = None) -> datetime:
    """RFC 3339, epoch milliseconds, or a duration ago (``30m``, ``1h``, ``7d``, ``2w``)."""
    m = _RELATIVE.match(value)
    if m:
        amount, unit = float(m.group(1)), m.group(2).lower()
        return (now or utcnow()) - timedelta(**{_UNITS[unit]: amount})
    if value.strip().lstrip("-").isdigit():
        return parse_timestamp(int(value))
    return parse_timestamp(value.strip())


def when_arg(value: str) -> datetime:
    """argparse ``type=`` for --since/--until."""
    try:
        return parse_when(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or a duration ago such as 30m, 1h, 7d)") from None


def run_with_store(
    args: argparse.Namespace,
    coro_fn: Callable[[Store, Settings], Awaitable[int]],
    *,
    read_only: bool = False,
    migrate: bool = True,
    settings: Settings | None = None,
    create: bool = False,
) -> int:
    """Open the store named by the settings, run ``coro_fn(store, settings)``, close it.

    Store failures become one line on stderr and exit status 1. A SQLite
    store that does not exist is refused unless ``create`` (only ``daemon``,
    ``migrate`` and ``import`` create one): a typo must not leave an empty
    store behind that the daemon never writes to.
    """
    settings = settings or load_settings(args)
    command = getattr(args, "command", None) or "tuiaudit"
    if not create:
        missing = missing_store(settings.store_url)
        if missing:
            eprint(f"tuiaudit {command}: {missing}")
            return 1

    async def main() -> int:
        async with open_store(settings.store_url, read_only=read_only, migrate=migrate) as store:
            return await coro_fn(store, settings)

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        # `tuiaudit export | head`: the reader left; exit quietly like other tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SchemaTooNew as exc:
        eprint(f"tuiaudit {command}: {exc}")
        return 1
    except StoreError as exc:
        eprint(f"tuiaudit {command}: {exc}")  # store errors name the store and the fix
        return 1


def missing_store(url: str) -> str | None:
    """What to say when ``url`` names a SQLite file that does not exist, else None."""
    try:
        path = parse_store_url(url).path
    except ValueError as exc:
        return str(exc)
    if path is None or path.exists():
        return None
    return (
        f"no store at {path}: start the daemon once to create it (`tuiaudit daemon "
        f"--store {path}`, or `tuiaudit migrate --store {path}`), or pass --store "
        "with the right path"
    )


def json_arg(label: str) -> Callable[[str], Any]:
    """argparse ``type=`` for a JSON object option (--props, --context)."""

    def convert(value: str) -> Any:
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{label} is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise argparse.ArgumentTypeError(f"{label} must be a JSON object like '{{\"k\": 1}}'")
        return parsed

    return convert
