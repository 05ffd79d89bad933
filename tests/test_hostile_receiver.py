"""Issue 13, hostile envelopes against the real receiver and ``tuiaudit decode``.

Decompression amplification (a cached string referenced many times, millions
of declared empty lists), deep nesting and id-less events: each is refused or
handled, and the receiver still writes later envelopes and still stops on
SIGTERM. The decoder's memory is measured on a subprocess (its peak RSS).
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hostile_support import (
    amplified_fressian,
    deep_fressian,
    empty_lists_fressian,
    envelope,
    idless_events_fressian,
)

from tuiaudit.codec import DecodeError, blob_frame, decode_blob
from tuiaudit.daemon.receiver import STATE_KEY, make_receiver_app, serve


@asynccontextmanager
async def running(out: Path, **kw: Any):  # type: ignore[no-untyped-def]
    app = make_receiver_app(out, **kw)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/", app[STATE_KEY]
    finally:
        await runner.cleanup()


async def post(url: str, body: bytes) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        text = await r.read()
        return r.status, (orjson.loads(text) if text else None)


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


# ------------------------------------------------------------- 4. id-less events


async def test_events_without_an_id_are_all_written(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    async with running(out) as (url, state):
        first = envelope(idless_events_fressian(["login", "login", "logout"]))
        assert (await post(url, first))[0] == 204
        assert (await post(url, envelope(idless_events_fressian(["login"]))))[0] == 204
    written = lines(out)
    assert [line["count"] for line in written] == [3, 1]
    assert state.events == 4 and state.duplicate_events == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # 10. created 0600


# -------------------------------------------------------- 5. amplification


def test_decoder_budget_refuses_amplified_blobs() -> None:
    with pytest.raises(DecodeError, match="budget of 67108864 bytes"):
        decode_blob(blob_frame(amplified_fressian()))
    with pytest.raises(DecodeError, match="budget of 1000000 elements"):
        decode_blob(blob_frame(empty_lists_fressian()))
    with pytest.raises(DecodeError, match="nested too deeply"):
        decode_blob(blob_frame(deep_fressian(500)))
    # The budget is configurable, and honest data far below it decodes.
    assert decode_blob(blob_frame(amplified_fressian(1000, 10)), max_bytes=11_000)
    with pytest.raises(DecodeError, match="budget of 10000 bytes"):
        decode_blob(blob_frame(amplified_fressian(1000, 10)), max_bytes=10_000)


async def test_receiver_refuses_amplification_and_keeps_writing(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    amplified = envelope(amplified_fressian())
    assert len(amplified) < 4096  # 2 KB on the wire standing for 1 GB
    async with running(out) as (url, state):
        for body in (amplified, envelope(empty_lists_fressian()), envelope(deep_fressian(900))):
            status, problem = await post(url, body)
            assert status == 400
            assert "does not decode" in problem["detail"]
        assert (await post(url, envelope(idless_events_fressian(["later"]))))[0] == 204
    [line] = lines(out)
    assert line["count"] == 1 and state.write_errors == 0
    assert out.stat().st_size < 10_000


def _peak_rss_kib(cmd: list[str], stdin: bytes) -> tuple[int, bytes, int]:
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    err = proc.stderr.read()
    proc.stderr.close()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, err, usage.ru_maxrss  # KiB on Linux


def test_decode_command_memory_stays_bounded() -> None:
    cmd = [sys.executable, "-m", "tuiaudit", "decode", "-"]
    baseline_code, _, baseline = _peak_rss_kib(cmd, envelope(idless_events_fressian(["a"])))
    assert baseline_code == 0
    for attack in (amplified_fressian(), empty_lists_fressian()):
        code, err, peak = _peak_rss_kib(cmd, envelope(attack))
        assert code == 1
        assert err.decode().count("\n") == 1 and "budget" in err.decode()
        # Before the budget: 2 GB (amplified) and 1.2 GB (empty lists).
        assert peak - baseline < 100 * 1024, f"{peak - baseline} KiB above the baseline"


# ------------------------------------------- the writer never dies, SIGTERM works


async def test_receiver_process_survives_hostile_envelopes_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    out = tmp_path / "r.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tuiaudit", "receiver", "--listen", "127.0.0.1:0",
        "--out", str(out), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    url = banner.split("listening on ", 1)[1].split(" ", 1)[0]
    try:
        # Nested just under what the decoder refuses, and far past it.
        for depth in (90, 5000):
            await post(url, envelope(deep_fressian(depth)))
        assert (await post(url, envelope(idless_events_fressian(["after"]))))[0] == 204
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    names = [e for line in lines(out) for e in line["events"]]
    assert any("after" in orjson.dumps(e).decode() for e in names)
