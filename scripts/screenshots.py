"""Write SVG screenshots of every dashboard screen into screenshots/.

Runs the demo environment in process (daemon, a flaky local receiver,
synthetic traffic) for a few seconds so each screen shows a realistic state
(rows, a telemetry queue, sent and failed batches), then drives the dashboard
with Textual's Pilot and saves each screen with ``app.save_screenshot``.

    .venv/bin/python scripts/screenshots.py [--seconds 12] [--out screenshots]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tuiaudit.demo.run import Demo
from tuiaudit.tui.app import AuditApp

SIZE = (120, 36)


async def settle(app: AuditApp, pilot: Any) -> None:
    for _ in range(2):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def capture(out: Path, seconds: float) -> list[Path]:
    workdir = Path(tempfile.mkdtemp(prefix="tuiaudit-shots-"))
    written: list[Path] = []
    try:
        async with Demo(workdir, fail_rate=0.35, interval=3.0, rate=25, seed=42) as demo:
            await asyncio.sleep(seconds)
            assert demo.daemon is not None
            # Leave some rows waiting, so the queue and the next batch are not empty.
            await demo.daemon.store.enqueue_command("pause", {})
            await asyncio.sleep(1.5)
            app = AuditApp(demo.store_url, settings=demo.settings, refresh_interval=None)
            app.title = "tuiaudit"
            async with app.run_test(size=SIZE) as pilot:
                await settle(app, pilot)

                def shot(name: str) -> None:
                    written.append(Path(app.save_screenshot(f"{name}.svg", str(out))))

                shot("audit")
                table = app.audit_view.table
                # A login with an email: the row whose sharing is most interesting.
                for i in range(table.row_count):
                    row = table.audit_rows[str(table.coordinate_to_cell_key((i, 0)).row_key.value)]
                    if row.source == "backend" and "email" in row.props:
                        table.move_cursor(row=i)
                        break
                await pilot.pause()
                await pilot.press("enter")
                await pilot.pause()
                shot("row-detail")
                await pilot.press("w")
                await settle(app, pilot)
                shot("shared")
                await pilot.press("3")
                await settle(app, pilot)
                shot("batch")
                await pilot.press("4")
                await settle(app, pilot)
                shot("shipping")
                await pilot.press("5")
                await settle(app, pilot)
                shot("webhooks")
                await pilot.press("6")
                await settle(app, pilot)
                shot("archive")
                await pilot.press("1")
                await pilot.press("slash", *"name:navigate")
                await pilot.press("enter")
                await settle(app, pilot)
                shot("audit-filtered")
                await pilot.press("question_mark")
                await pilot.pause()
                shot("help")
                await pilot.press("escape")
                await pilot.press("a")
                await pilot.pause()
                shot("accept-policy")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="demo traffic before shots")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent.parent / "screenshots")
    )
    args = parser.parse_args()
    # The demo daemon's warnings (injected 503s) are expected; keep the output to paths.
    logging.getLogger("tuiaudit").addHandler(logging.NullHandler())
    logging.getLogger("tuiaudit").propagate = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(capture(out, args.seconds)):
        print(path)


if __name__ == "__main__":
    main()
