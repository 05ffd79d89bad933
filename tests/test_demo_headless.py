"""``demo --headless`` shows progress while it runs and its summary on Ctrl+C (issue 14, item 8)."""

from __future__ import annotations

import asyncio
import signal
import sys

from cli_support import clean_env


async def test_headless_demo_prints_progress_and_a_summary_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tuiaudit",
        "demo",
        "--headless",
        "--duration",
        "3600",
        "--interval",
        "2",
        "--seed",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(120):
            first = (await proc.stdout.readline()).decode()
            assert first.startswith("tuiaudit demo: ") and "events ingested" in first, first
            proc.send_signal(signal.SIGINT)
            rest, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out = rest.decode()
    assert proc.returncode == 130
    assert "Traceback" not in out + err.decode()
    assert "  events ingested" in out and "  events shipped" in out and "  still pending" in out
