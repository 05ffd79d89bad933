"""A real ``tuiaudit daemon`` subprocess on loopback, for synchronous tests (schemathesis).

Started with ``--listen 127.0.0.1:0``; the port is read from its
``daemon-listening`` log line; SIGTERM at exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

START_TIMEOUT_S = 60.0


@dataclass
class LiveDaemon:
    proc: subprocess.Popen[bytes]
    port: int
    log: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_") and k != "DO_NOT_TRACK"
    }


def _drain(stream: IO[bytes], log: list[str], port: list[int], started: threading.Event) -> None:
    for raw in stream:
        line = raw.decode(errors="replace")
        log.append(line)
        if not started.is_set() and '"daemon-listening"' in line:
            port.append(int(json.loads(line)["port"]))
            started.set()
    started.set()  # EOF: the daemon exited


@contextmanager
def live_daemon(
    store: Path | str, *args: str, env: dict[str, str] | None = None
) -> Iterator[LiveDaemon]:
    argv = [sys.executable, "-m", "tuiaudit", "daemon", "--store", str(store)]
    argv += ["--listen", "127.0.0.1:0", *args]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env() | (env or {}),
    )
    assert proc.stderr is not None
    log: list[str] = []
    port: list[int] = []
    started = threading.Event()
    reader = threading.Thread(target=_drain, args=(proc.stderr, log, port, started), daemon=True)
    reader.start()
    try:
        started.wait(START_TIMEOUT_S)
        assert port, "the daemon did not start:\n" + "".join(log)
        yield LiveDaemon(proc, port[0], log)
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stderr.close()
