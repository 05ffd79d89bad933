"""systemd's notify protocol over a real datagram socket, and the shipped unit verified."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_daemon import live_daemon

from tuiaudit.daemon import notify

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "systemd" / "tuiaudit.service"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound AF_UNIX datagram socket, as systemd holds for a Type=notify service."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)  # a bound on a hung test, not a timing assert
        yield str(path), sock


def test_states_arrive_as_datagrams(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    env = {"NOTIFY_SOCKET": path}
    assert notify.notify("READY=1\nSTATUS=up", environ=env)
    assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    assert notify.notify("WATCHDOG=1", environ=env)
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_abstract_namespace_socket() -> None:
    name = f"tuiaudit-test-{uuid.uuid4()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(30)
        assert notify.notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STOPPING=1"


def test_not_under_systemd_or_socket_gone_is_quiet(tmp_path: Path) -> None:
    assert notify.notify("READY=1", environ={}) is False
    assert notify.notify("READY=1", environ={"NOTIFY_SOCKET": "relative/path"}) is False
    gone = str(tmp_path / "nobody-listens.sock")
    assert notify.notify("READY=1", environ={"NOTIFY_SOCKET": gone}) is False


def test_daemon_says_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    with live_daemon(tmp_path / "s.db", "--flags", "audit-log", env={"NOTIFY_SOCKET": path}) as d:
        ready = sock.recv(4096).decode().splitlines()
        assert "READY=1" in ready
        assert f"STATUS=listening on 127.0.0.1:{d.port}" in ready
        assert f"MAINPID={d.proc.pid}" in ready
        assert sock.recv(4096) == b"WATCHDOG=1"  # from the heartbeat
        d.proc.send_signal(signal.SIGTERM)
        states = []
        while not any(s.startswith(b"STOPPING=1") for s in states):
            states.append(sock.recv(4096))
        assert d.proc.wait(30) == 0


# ------------------------------------------------------------------ the unit


def test_unit_declares_what_the_operator_expects() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=tuiaudit",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "LoadCredential=token:",
        "--token-file ${CREDENTIALS_DIRECTORY}/token",
    ):
        assert line in text, line


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
    reason="systemd-analyze is not installed (Debian package: systemd)",
)
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    # ExecStart must name an existing executable: point it at this venv's
    # tuiaudit (the unit's /usr/local/bin path is the documented install).
    exe = shutil.which("tuiaudit") or str(Path(sys.executable).with_name("tuiaudit"))
    unit = tmp_path / "tuiaudit.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/tuiaudit", exe))
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # verify also warns about unrelated units of a container's systemd: only
    # lines about our unit count.
    ours = [line for line in (out.stdout + out.stderr).splitlines() if "tuiaudit" in line]
    assert out.returncode == 0 and not ours, out.stdout + out.stderr
