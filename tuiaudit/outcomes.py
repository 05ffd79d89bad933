"""What a daemon action did, in words: one wording for the CLI and the dashboard.

An action's result is a JSON object in the control queue (``tuiaudit ship``
asking the daemon, the dashboard's keys); these functions turn it into a
sentence a person can act on, never a Python ``dict`` or ``True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tuiaudit.webhook_admin import describe_test


def _n(count: Any, one: str, many: str | None = None) -> str:
    n = int(count or 0)
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _size(n: Any) -> str:
    value = float(n or 0)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover


def describe_run(result: Mapping[str, Any]) -> str:
    """One telemetry run (``RunReport.to_dict()``) as sentences."""
    parts: list[str] = []
    gc = result.get("gc") or {}
    dropped = int(gc.get("age") or 0) + int(gc.get("cap") or 0)
    if dropped:
        parts.append(
            f"GC dropped {_n(dropped, 'telemetry row')} "
            f"({gc.get('age') or 0} too old, {gc.get('cap') or 0} over the cap)"
        )
    held = result.get("held")
    if held:
        parts.append(f"nothing sent: held ({held})")
        return "; ".join(parts) + "."
    rows, batches = result.get("rows-sent") or 0, result.get("batches-sent") or 0
    if batches:
        parts.append(
            f"sent {_n(rows, 'row')} in {_n(batches, 'batch', 'batches')} "
            f"({_size(result.get('bytes-sent'))})"
        )
    elif not result.get("error") and not result.get("awaiting-approval"):
        parts.append("the queue was empty: no batch to send")
    if result.get("refused"):
        parts.append(
            f"{_n(result['refused'], 'approved body', 'approved bodies')} not sent: their "
            "rows changed or their rebuilt bytes differ, a new approval is needed"
        )
    if result.get("awaiting-approval"):
        parts.append(
            f"{_n(result['awaiting-approval'], 'body', 'bodies')} waiting for approval "
            "(`tuiaudit approve --list`)"
        )
    report_ok = result.get("report-ok")
    if report_ok is not None:
        parts.append("instance report sent" if report_ok else "the instance report failed")
    if result.get("quarantined"):
        parts.append(f"{_n(result['quarantined'], 'row')} quarantined (the receiver rejected them)")
    if result.get("error"):
        kind = result.get("error-class") or "error"
        text = f"stopped by a {kind} failure: {result['error']}; the unsent rows are kept"
        if result.get("retry-at"):
            text += f", retry at {str(result['retry-at'])[:19].replace('T', ' ')} UTC"
        parts.append(text)
    return "; ".join(parts) + "."


def _gc(r: Mapping[str, Any]) -> str:
    total = int(r.get("total") or (int(r.get("age") or 0) + int(r.get("cap") or 0)))
    if not total:
        return "GC ran: no telemetry row was old enough or over the cap."
    return (
        f"GC dropped {_n(total, 'telemetry row')} "
        f"({r.get('age') or 0} too old, {r.get('cap') or 0} over the cap)."
    )


_SENTENCES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "ship-now": describe_run,
    "pause": lambda r: "Shipping paused: nothing is sent until it is resumed.",
    "resume": lambda r: "Shipping resumed.",
    "gc": _gc,
    "accept-policy": lambda r: f"Telemetry policy version {r.get('accepted-version')} accepted.",
    "revoke-policy": lambda r: (
        f"Consent withdrawn; {_n(r.get('purged'), 'pending telemetry row')} deleted."
    ),
    "release-quarantine": lambda r: (
        f"{_n(r.get('released'), 'quarantined row')} back in the queue: the next run sends them."
    ),
    "purge-quarantine": lambda r: f"{_n(r.get('purged'), 'quarantined row')} deleted.",
    "purge-pending": lambda r: f"{_n(r.get('purged'), 'pending telemetry row')} deleted.",
    "approve": lambda r: f"Body {str(r.get('approved'))[:12]}… approved: the shipper sends it.",
    "reject": lambda r: (
        f"Body {str(r.get('rejected'))[:12]}… rejected; "
        f"{_n(r.get('quarantined'), 'row')} quarantined (rejected-by-user)."
    ),
    "webhook-test": describe_test,  # the words `tuiaudit webhooks test` prints
}


def describe_result(kind: str, result: Mapping[str, Any]) -> str:
    """A finished action's result in words (an unknown kind lists its facts)."""
    sentence = _SENTENCES.get(kind)
    if sentence is not None:
        try:
            return sentence(result)
        except (TypeError, ValueError):
            pass  # a result of another shape (another version's daemon): list it
    facts = ", ".join(f"{k.replace('-', ' ')}: {v}" for k, v in result.items() if k != "error")
    return f"{kind} done" + (f" ({facts})." if facts else ".")


def describe_failure(kind: str, result: Mapping[str, Any]) -> str:
    return f"{kind} failed: {result.get('error') or 'the daemon gave no reason'}"
