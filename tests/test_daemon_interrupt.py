"""Ctrl+C on a daemon with a send in flight (issue 14, item 8), through the real CLI.

The first SIGINT says it finishes the send in flight and how to stop now;
the second stops now, while the receiver still holds the request. Then
``status`` shows the daemon stopped and none of its components running.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from cli_support import daemon, run_cli
from shipper_support import Received, Reply, ScriptedReceiver

from tuiaudit.policy import POLICY_VERSION

HOLD_S = 3600.0  # the receiver never answers while the test runs


async def test_first_ctrl_c_finishes_the_send_in_flight_second_stops_now(tmp_path: Path) -> None:
    store = str(tmp_path / "audit.db")
    receiver = ScriptedReceiver(default=Reply(delay=HOLD_S))
    in_flight = asyncio.Event()

    def on_request(rec: Received) -> None:
        in_flight.set()

    receiver.on_request = on_request
    async with receiver.serve() as rx:
        async with daemon(
            store,
            "--telemetry-uri",
            rx.url,
            "--jitter",
            "0",
            "--accept-policy",
            str(POLICY_VERSION),
            "--shutdown-timeout",
            "600",
            # The request would wait for the receiver all that time: only the
            # second Ctrl+C can end it before the test's bound below.
            env={"TUIAUDIT_REQUEST_TIMEOUT": str(HOLD_S)},
        ) as d:
            await asyncio.wait_for(in_flight.wait(), 60)  # the start-up run posts
            d.proc.send_signal(signal.SIGINT)
            said = await _wait_for_line(d.log, "Ctrl+C again to stop now")
            assert said == (
                "tuiaudit daemon: finishing the batch in flight (Ctrl+C again to stop now)"
            )
            d.proc.send_signal(signal.SIGINT)
            # Stops while the receiver still holds the request (HOLD_S), far
            # before --shutdown-timeout: the second Ctrl+C did not wait.
            code = await asyncio.wait_for(d.proc.wait(), 30)
            assert code == 0
            assert await _wait_for_line(d.log, "stopping now") == "tuiaudit daemon: stopping now"
            assert not any("Traceback" in str(line) for line in d.log)
    status = await run_cli("status", "--json", "--store", store)
    assert status.code == 3
    (stopped,) = status.json["daemons"]
    assert stopped["status"] == "stopped"
    assert "shipping" not in stopped["info"] and stopped["next-run-at"] is None


async def _wait_for_line(log: list[dict[str, object]], needle: str) -> str:
    """The first plain-text stderr line holding ``needle`` (the log is JSON otherwise)."""
    async with asyncio.timeout(60):
        while True:
            for entry in log:
                line = str(entry.get("line", "")).strip()
                if needle in line:
                    return line
            await asyncio.sleep(0.05)
