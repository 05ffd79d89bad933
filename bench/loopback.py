"""What bench/ship.py and bench/archive.py share: the 204 sink, phase processes, RSS.

Both compare a daemon component with a plain pipeline, each run in its own
process (so its peak RSS is its own), both POSTing to the SAME sink: a
separate process that only reads the body and answers 204.
"""

from __future__ import annotations

import json
import re
import resource
import socket
import subprocess
import sys
from typing import Any

SINK = r"""
import sys
from aiohttp import web
async def h(request):
    await request.read()
    return web.Response(status=204)
app = web.Application(client_max_size=256 * 2**20)
app.router.add_route("POST", "/{tail:.*}", h)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
            print=lambda *a: print("ready", flush=True))
"""


def rss_mb() -> float:
    """This process's peak RSS in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(script: str, phase: str, *args: str) -> dict[str, Any]:
    """Run ``script --phase phase args`` in a new process; its last stdout line is JSON."""
    out = subprocess.run(
        [sys.executable, script, "--phase", phase, *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def start_server(cmd: list[str], pattern: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd``; its first stdout line must match ``pattern`` (returned)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(pattern, line)
    if not m:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, m.group(0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sink() -> tuple[subprocess.Popen[str], int]:
    """The plain 204 sink on a free loopback port: (process, port)."""
    port = free_port()
    proc, _ = start_server([sys.executable, "-c", SINK, str(port)], "ready")
    return proc, port
