"""Formatting shared by the panes: times, sizes, ages, rows as JSON, marked fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.text import Text

from tuiaudit.safe_text import escape_controls, json_safe
from tuiaudit.storage.base import AuditRow

ROW_FIELDS = (
    "id",
    "name",
    "type",
    "source",
    "profile_id",
    "ip_addr",
    "tracked_at",
    "created_at",
    "archived_at",
    "props",
    "context",
)


def plain(value: object, style: str = "") -> Text:
    """Stored or remote text shown as it is (DESIGN §8.2): never parsed as markup, so
    ``oops[/]`` cannot crash a table nor ``[on black black]`` hide text; control
    characters escaped so none reaches the terminal."""
    return Text(escape_controls(value), style=style)


def fmt_time(dt: datetime | None) -> str:
    if dt is None:
        return "—"
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def fmt_age(delta: timedelta | None) -> str:
    """``3s``, ``4m 10s``, ``2h 5m``, ``3d 4h``."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{sign}{minutes}m {s}s"
    hours, m = divmod(minutes, 60)
    if hours < 24:
        return f"{sign}{hours}h {m}m"
    days, h = divmod(hours, 24)
    return f"{sign}{days}d {h}h"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return (
        value
        if isinstance(value, dict | list | int | float | bool) or value is None
        else str(value)
    )


def row_as_dict(row: AuditRow) -> dict[str, Any]:
    """Every field of the row, JSON-ready (UUIDs and times as strings)."""
    return {name: _json_value(getattr(row, name)) for name in ROW_FIELDS}


def pretty_json(value: Any) -> str:
    return json_safe(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str))


def marked_row(row: AuditRow, marks: dict[str, tuple[str, str]], *, side: str) -> Text:
    """The row as indented ``key: value`` lines, each changed field styled and annotated.

    ``marks`` maps a field path (``ip_addr``, ``props.email``) to ``(action, rule)``.
    On the ``full`` side a removed field is struck through in red; on the
    ``shared`` side an altered field is yellow; both say which rule did it.
    """
    text = Text()
    data = row_as_dict(row)
    for name in ROW_FIELDS:
        value = data[name]
        if name in ("props", "context"):
            text.append(f"{name}:", style="bold")
            if not value:
                text.append(" {}")
            text.append("\n")
            for key, inner in value.items():
                label = f"  {escape_controls(key)}: "
                _line(text, label, inner, marks.get(f"{name}.{key}"), side)
            for path, (action, rule) in marks.items():
                # Fields the policy removed still show on the shared side, as gone.
                prefix = f"{name}."
                if side == "shared" and action == "removed" and path.startswith(prefix):
                    if path[len(prefix) :] not in value:
                        gone = escape_controls(path[len(prefix) :])
                        text.append(f"  {gone}", style="red strike")
                        text.append(f"  ✗ {rule}\n", style="red")
        else:
            mark = marks.get(name)
            if side == "shared" and mark and mark[0] == "removed" and name not in data:
                continue
            _line(text, f"{name}: ", value, mark, side)
    return text


def _line(text: Text, label: str, value: Any, mark: tuple[str, str] | None, side: str) -> None:
    rendered = json_safe(json.dumps(value, ensure_ascii=False, default=str))
    if len(rendered) > 60:
        rendered = rendered[:57] + "…"
    text.append(label, style="bold")
    if mark is None:
        text.append(rendered + "\n")
        return
    action, rule = mark
    if action == "removed":
        text.append(rendered, style="red strike" if side == "full" else "red")
        text.append(f"  ✗ {rule}\n", style="red")
    else:
        text.append(rendered, style="yellow")
        text.append(f"  ~ {rule}\n", style="yellow")
