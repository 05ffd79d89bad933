"""JSON-lines logging on stderr: one object per line, never a payload value.

Call sites log an event name plus small facts (ids, counts, sizes)::

    log_event(log, "daemon-started", port=6061, flags=["audit-log"])

which becomes ``{"time": "...", "level": "info", "logger": "tuiaudit.daemon",
"event": "daemon-started", "port": 6061, "flags": ["audit-log"]}``. Records
from other loggers (``tuiaudit.audit`` for ``audit-log-logger``, aiohttp) go
through the same formatter; a message that is already a JSON object is
merged rather than quoted.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        message = record.getMessage()
        merged = False
        if message.startswith("{"):
            try:
                parsed = orjson.loads(message)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                out.update(parsed)
                merged = True
        if not merged:
            out["event"] = message
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "fields" and not key.startswith("_"):
                out.setdefault(key, value)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return orjson.dumps(out, default=str).decode()


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event (``fields`` must be ids, counts, sizes, never payloads)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


_handler: logging.Handler | None = None


def configure(level: str | int = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Send every ``tuiaudit.*``, ``aiohttp.*`` and ``asyncpg.*`` record to ``stream`` as
    JSON lines.

    Idempotent: calling it again replaces the handler (tests, repeated runs).
    """
    global _handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    # asyncpg too: its pool logs a reconnect failure (a PostgreSQL restart) with a
    # whole traceback on stderr otherwise; here it is one line with the error.
    for name in ("tuiaudit", "daemon", "storage", "aiohttp", "asyncpg"):
        lg = logging.getLogger(name)
        if _handler is not None:
            lg.removeHandler(_handler)
        lg.addHandler(handler)
        lg.setLevel(lvl)
        lg.propagate = False
    # aiohttp's access log line per request is costly and unstructured: ingest
    # counts requests in /metrics instead.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    _handler = handler
    return handler
