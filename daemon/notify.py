"""systemd's notify protocol (``sd_notify``): one datagram to ``$NOTIFY_SOCKET`` per state.

Under ``Type=notify`` (contrib/systemd/tuiaudit.service) the daemon says
``READY=1`` once its ingest API listens, ``WATCHDOG=1`` from every heartbeat
(the unit's ``WatchdogSec=`` restarts a daemon whose event loop hangs) and
``STOPPING=1`` when a shutdown begins. Without ``$NOTIFY_SOCKET`` (not under
systemd) every call is a no-op. The protocol is a few lines, so it is
implemented here rather than pulled in as a dependency: an ``AF_UNIX``
datagram of ``KEY=VALUE`` lines; a socket name starting with ``@`` is in the
abstract namespace.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

from tuiaudit.daemon.logs import log_event

log = logging.getLogger("tuiaudit.daemon.notify")

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def _address(name: str) -> str | bytes:
    if name.startswith("@"):  # abstract namespace: a leading NUL byte, not a file
        return b"\0" + name[1:].encode()
    return name


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=listening"``); False when not under systemd.

    A failure to send is logged, never raised: the service works without it.
    """
    env = os.environ if environ is None else environ
    name = env.get(NOTIFY_SOCKET)
    if not name or not (name.startswith("/") or name.startswith("@")):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(name))
            sock.sendall(state.encode())
    except OSError as exc:
        log_event(log, "notify-failed", logging.WARNING, error=exc.strerror or str(exc))
        return False
    return True


def ready(status: str) -> bool:
    """The service is up (the ingest API listens); ``status`` shows in ``systemctl status``."""
    return notify(f"READY=1\nSTATUS={_one_line(status)}\nMAINPID={os.getpid()}")


def watchdog() -> bool:
    """The event loop is alive (sent from the heartbeat, every 2 s)."""
    return notify("WATCHDOG=1")


def stopping(status: str = "stopping") -> bool:
    return notify(f"STOPPING=1\nSTATUS={_one_line(status)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = ["NOTIFY_SOCKET", "notify", "ready", "stopping", "watchdog"]
