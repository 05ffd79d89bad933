"""The SQLite store on a full file system (a small tmpfs): 503, nothing lost, resumes.

The scenario is ``bench/reliability/disk_full.py``; it needs the right to
mount a tmpfs (root on Linux: CI runs as root) and skips with the reason
otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.disk_full import MountUnavailable, disk_full_scenario


@pytest.mark.slow
async def test_disk_full_answers_503_keeps_every_ack_and_resumes(tmp_path: Path) -> None:
    try:
        figures = await disk_full_scenario(tmp_path, size_mb=4.0)
    except MountUnavailable as exc:
        pytest.skip(str(exc))
    print(figures)
    assert figures["statuses"].get(503, 0) >= 20  # it did fill up, and said so
    assert set(figures["statuses"]) <= {204, 503}
    assert figures["lost_acknowledged"] == 0
    assert figures["integrity_check"] == "ok"
    assert set(figures["healthz"]) == {200}  # reads still answer on a full disk
    assert figures["daemon_exit"] == 0
