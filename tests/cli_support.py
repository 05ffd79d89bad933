"""The real ``tuiaudit`` command as a subprocess, and a real daemon to talk to.

Everything runs through ``python -m tuiaudit`` with a clean environment (no
``TUIAUDIT_*`` from the developer's shell, no config file), as a new user
would run it. Waiting is on the processes' own output, never on a timer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

START_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 120.0


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_") and k != "DO_NOT_TRACK"
    }
    env["TUIAUDIT_CONFIG"] = ""  # no config file: flags, then defaults
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


async def run_cli(*argv: str, stdin: bytes | None = None) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tuiaudit",
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), CLI_TIMEOUT_S)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


@dataclass
class RunningDaemon:
    proc: asyncio.subprocess.Process
    port: int
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _read_log(proc: asyncio.subprocess.Process, into: list[dict[str, Any]]) -> None:
    assert proc.stderr is not None
    async for raw in proc.stderr:
        try:
            into.append(json.loads(raw))
        except ValueError:
            into.append({"event": "text", "line": raw.decode(errors="replace")})


@asynccontextmanager
async def daemon(
    store: str, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[RunningDaemon]:
    """``tuiaudit daemon --store STORE --listen 127.0.0.1:0 ARGS``, until SIGTERM at exit."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tuiaudit",
        "daemon",
        "--store",
        store,
        "--listen",
        "127.0.0.1:0",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(**(env or {})),
    )
    assert proc.stderr is not None
    log: list[dict[str, Any]] = []
    port = None
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            async for raw in proc.stderr:
                line = json.loads(raw)
                log.append(line)
                if line.get("event") == "daemon-listening":
                    port = int(line["port"])
                    break
        assert port is not None, f"the daemon did not start: {log}"
        reader = asyncio.create_task(_read_log(proc, log))
        try:
            yield RunningDaemon(proc, port, log)
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
            await reader
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
