"""CPU per event of each stage of one frontend ingest request, this checkout vs a baseline.

Issue 20, part 1: the Python work the daemon does per event before a row
reaches the writer. The body is ``frontend_body()`` of bench/ingest_wrk.py
(100 ``update-file`` events, 5 props, 3 context keys, fresh uuid4 ids), made
once and posted to both sides. The stages, as daemon/ingest.py's
``post_events`` runs them:

* ``parse_body``: orjson and the strict-JSON checks;
* ``frontend_batch``: the envelope (profile id, events list);
* ``prepare_frontend_events``: validation and the full rows (alone);
* ``anonymise_many``: the policy's telemetry copies of those rows (alone);
* ``ingest_frontend``: ``AuditLog.ingest_frontend`` in mode B with a store
  that takes the rows and does nothing: validation, preparation, the policy
  and the interleaving of full and shared rows, as the handler calls it;
* ``worker_ingest``: the same call with the store an ingest worker has
  (daemon/ingest_channel.py ``RemoteStore`` for SQLite) on a channel that
  encodes the frame and sends nothing: ``ingest_frontend`` plus the rows
  packed (``ingest_channel.pack_rows``) and the msgpack frame.

"request work" = parse_body + frontend_batch + ingest_frontend (what the
handler pays per event before ``insert_rows``; rows_params and the writer
are not in it). "worker work" = parse_body + frontend_batch + worker_ingest:
all an ingest worker process does per event of a request (issue 20: the
writer shares the two cores with the workers) bar aiohttp and the socket.

Each side (this checkout, and ``--baseline`` checked out with ``git worktree
add`` into a temporary directory) runs in its own subprocess; the rounds
alternate between them, so both see the same machine load. A round is
``--requests`` requests; per stage the CPU time (``time.process_time``) per
event is summed over the round; reported are the medians over ``--rounds``
rounds, the spread (min-max) and the ratio now / baseline.

    python bench/ingest_stages.py                     # baseline c2466d5, ~40 s
    python bench/ingest_stages.py --baseline HEAD~3
    python bench/ingest_stages.py --profile           # cProfile of this checkout
    python bench/ingest_stages.py --callgrind         # instructions per event, ~3 min
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STAGES = (
    "parse_body",
    "frontend_batch",
    "prepare_frontend_events",
    "anonymise_many",
    "ingest_frontend",
    "worker_ingest",
)
IP = "127.0.0.1"


# ------------------------------------------------------------------- the child


class _NullStore:
    """Takes the rows and stores nothing: the request work without the writer."""

    async def insert_rows(self, rows: Sequence[Any], jobs: Sequence[Any] = ()) -> None:
        return None

    async def add_drops(self, reason: str, n: int) -> None:
        return None


class _FrameChannel:
    """A worker's channel that encodes each ask's frame (as ``Channel._send``) and
    sends nothing: the worker's part of handing the rows over, without the socket."""

    def __init__(self) -> None:
        import msgspec

        self._encode = msgspec.msgpack.Encoder().encode
        self._next = 0
        self.frames = 0

    async def ask(self, kind: str, body: Any = None) -> Any:
        self._next += 1
        self._encode([self._next, kind, body])
        self.frames += 1
        return None


def _run(coro: Any) -> Any:
    """Run a coroutine that never suspends (the null store's awaits complete at once)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the coroutine suspended")


class Child:
    """One side of the comparison, in its own interpreter (its own tuiaudit)."""

    def __init__(self, body: bytes) -> None:
        from tuiaudit.audit import AuditLog
        from tuiaudit.daemon.ingest import frontend_batch, parse_body
        from tuiaudit.daemon.ingest_channel import RemoteStore
        from tuiaudit.events import prepare_frontend_events
        from tuiaudit.policy import anonymise_many

        self.body = body
        self.parse_body = parse_body
        self.frontend_batch = frontend_batch
        self.prepare = prepare_frontend_events
        self.anonymise_many = anonymise_many
        flags = ["audit-log", "telemetry"]
        self.audit = AuditLog(_NullStore(), flags)  # type: ignore[arg-type]
        self.channel = _FrameChannel()
        remote = RemoteStore(self.channel, "sqlite")  # type: ignore[arg-type]
        self.worker = AuditLog(remote, flags)  # type: ignore[arg-type]

    def handler(self, worker: bool) -> Any:
        """One request of the handler's path as a function: to the null store, or
        (``worker``) to a worker's ``RemoteStore``."""
        parse, batch, body = self.parse_body, self.frontend_batch, self.body
        audit = self.worker if worker else self.audit

        def one() -> None:
            pid, events = batch(parse(body))
            _run(audit.ingest_frontend(events, profile_id=pid, ip_addr=IP, request_id=uuid.uuid4()))

        return one

    def request(self, acc: dict[str, float]) -> int:
        """One request, every stage timed; returns its event count."""
        clock = time.process_time
        t0 = clock()
        parsed = self.parse_body(self.body)
        t1 = clock()
        profile_id, events = self.frontend_batch(parsed)
        t2 = clock()
        now = datetime.now(UTC)
        rid = uuid.uuid4()
        t3 = clock()
        rows = self.prepare(events, profile_id=profile_id, ip_addr=IP, now=now, request_id=rid)
        t4 = clock()
        self.anonymise_many(rows)
        t5 = clock()
        stored = _run(
            self.audit.ingest_frontend(events, profile_id=profile_id, ip_addr=IP, request_id=rid)
        )
        t6 = clock()
        frames = self.channel.frames
        stored_too = _run(
            self.worker.ingest_frontend(events, profile_id=profile_id, ip_addr=IP, request_id=rid)
        )
        t7 = clock()
        assert stored == stored_too == 2 * len(events), stored  # mode B: every event twice
        assert self.channel.frames == frames + 1  # one frame a request
        acc["parse_body"] += t1 - t0
        acc["frontend_batch"] += t2 - t1
        acc["prepare_frontend_events"] += t4 - t3
        acc["anonymise_many"] += t5 - t4
        acc["ingest_frontend"] += t6 - t5
        acc["worker_ingest"] += t7 - t6
        return len(events)

    def round(self, requests: int) -> dict[str, float]:
        acc = dict.fromkeys(STAGES, 0.0)
        events = sum(self.request(acc) for _ in range(requests))
        return {k: v / events * 1e6 for k, v in acc.items()}

    def profile(self, requests: int, top: int) -> str:
        """cProfile of a worker's path (parse, batch, ingest_frontend into a RemoteStore),
        top by own time."""
        one = self.handler(worker=True)

        def work() -> None:
            for _ in range(requests):
                one()

        work()  # warm the memos and plans, as a running daemon has them
        prof = cProfile.Profile()
        prof.runcall(work)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        return out.getvalue()


def child_count(body_path: str, requests: int, path: str) -> None:
    """Warm up, then ``requests`` requests of the handler's path (``path`` "worker":
    into a worker's RemoteStore, else the null store), for callgrind to count."""
    child = Child(Path(body_path).read_bytes())
    child.round(10)
    one = child.handler(worker=path == "worker")
    for _ in range(requests):
        one()


def child_main(body_path: str) -> None:
    child = Child(Path(body_path).read_bytes())
    child.round(20)  # warm-up: plans, memos, the UA parser, the allocator
    import tuiaudit.audit

    print(json.dumps({"ready": True, "source": tuiaudit.audit.__file__}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "round":
            print(json.dumps(child.round(cmd["requests"])), flush=True)
        elif cmd["op"] == "profile":
            print(json.dumps({"text": child.profile(cmd["requests"], cmd["top"])}), flush=True)
        else:
            return


# ------------------------------------------------------------------ the parent


class Side:
    """A child interpreter importing tuiaudit from ``source`` (a checkout)."""

    def __init__(self, label: str, source: Path, body_path: Path) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(body_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=source,
        )
        hello = json.loads(self._line())
        # The child must import the tree it was given, not the editable install.
        assert hello["source"].startswith(str(source)), (hello["source"], source)

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.label}: the child exited ({self.proc.wait()})")
        return line

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@contextmanager
def baseline_tree(commit: str) -> Any:
    """``commit`` checked out in a temporary worktree, importable as ``tuiaudit``."""
    tmp = Path(tempfile.mkdtemp(prefix="ingest_stages_"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "-q", str(tree), commit],
        cwd=ROOT,
        check=True,
    )
    try:
        # The editable install maps tuiaudit.daemon and tuiaudit.storage to the
        # top-level folders; in the worktree, symlinks do the same on sys.path.
        for sub in ("daemon", "storage"):
            (tree / "tuiaudit" / sub).symlink_to(tree / sub, target_is_directory=True)
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


def _stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def report(results: dict[str, list[dict[str, float]]], labels: tuple[str, str]) -> str:
    now_label, base_label = labels
    lines = [
        f"{'stage (µs CPU per event)':26} {'now':>22} {'baseline':>22} {'now/base':>9}",
    ]

    def total(r: dict[str, float]) -> float:
        return r["parse_body"] + r["frontend_batch"] + r["ingest_frontend"]

    def worker_total(r: dict[str, float]) -> float:
        return r["parse_body"] + r["frontend_batch"] + r["worker_ingest"]

    rows = [
        (s, [r[s] for r in results[now_label]], [r[s] for r in results[base_label]]) for s in STAGES
    ]
    rows.append(
        (
            "request work",
            [total(r) for r in results[now_label]],
            [total(r) for r in results[base_label]],
        )
    )
    rows.append(
        (
            "worker work",
            [worker_total(r) for r in results[now_label]],
            [worker_total(r) for r in results[base_label]],
        )
    )
    for name, now_values, base_values in rows:
        m, lo, hi = _stats(now_values)
        bm, blo, bhi = _stats(base_values)
        lines.append(
            f"{name:26} {m:7.2f} ({lo:5.2f}-{hi:5.2f}) {bm:7.2f} ({blo:5.2f}-{bhi:5.2f}) "
            f"{m / bm:8.2f}x"
        )
    return "\n".join(lines)


def instructions(source: Path, body_path: Path, requests: int, path: str) -> int:
    """Instructions callgrind counts for a child importing ``source`` running ``requests``
    of ``path`` ("request": to the null store, "worker": to a worker's RemoteStore)."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child-count",
            str(body_path),
            str(requests),
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source), "PYTHONHASHSEED": "0"},
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    assert match is not None, out.stderr[-2000:]
    return int(match.group(1))


_PATHS = {
    "request": "request work (parse_body + frontend_batch + ingest_frontend, null store)",
    "worker": "worker work (parse_body + frontend_batch + ingest_frontend into RemoteStore: "
    "+ the rows packed + frame)",
}


def callgrind_report(
    now: Path, base: Path, body_path: Path, requests: int, paths: Sequence[str]
) -> str:
    """Instructions per event of each of ``paths``: a run of ``requests`` requests
    less a run of none (start-up and warm-up), each side."""
    events = requests * 100
    lines = []
    for path in paths:
        per_event = {}
        for label, source in (("now", now), ("baseline", base)):
            runs = [instructions(source, body_path, n, path) for n in (0, requests)]
            per_event[label] = (runs[1] - runs[0]) / events
        ratio = per_event["now"] / per_event["baseline"]
        lines.append(
            f"callgrind, {_PATHS[path]}, {requests} requests less none: "
            f"now {per_event['now']:,.0f} instructions per event, "
            f"baseline {per_event['baseline']:,.0f}, now/base {ratio:.2f}x"
        )
    return "\n".join(lines)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="c2466d5", help="commit to compare with")
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds per side")
    parser.add_argument("--requests", type=int, default=30, help="requests of 100 events a round")
    parser.add_argument("--profile", action="store_true", help="cProfile this checkout only")
    parser.add_argument("--top", type=int, default=25, help="entries of the profile")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="instructions per event of the handler's path under valgrind (repeatable under load)",
    )
    parser.add_argument(
        "--paths",
        default="worker,request",
        help="--callgrind: which paths, of worker (to a RemoteStore) and request (null store)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-count", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child)
        return 0
    if args.child_count:
        child_count(args.child_count[0], int(args.child_count[1]), args.child_count[2])
        return 0

    sys.path.insert(0, str(HERE))
    from ingest_wrk import frontend_body  # bench/ingest_wrk.py: the wrk body

    body, events, _profile = frontend_body(datetime.now(UTC))
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(body)
        f.flush()
        body_path = Path(f.name)
        print(
            f"one frontend request: {len(events)} events, {len(body)} bytes "
            f"(bench/ingest_wrk.py frontend_body); load average {load()} on "
            f"{os.cpu_count()} cores"
        )
        if args.profile:
            side = Side("now", ROOT, body_path)
            try:
                reply = side.ask(op="profile", requests=max(args.requests * 10, 100), top=args.top)
            finally:
                side.close()
            print(reply["text"])
            return 0
        if args.callgrind:
            with baseline_tree(args.baseline) as tree:
                paths = [p for p in args.paths.split(",") if p]
                print(callgrind_report(ROOT, tree, body_path, args.requests, paths))
            print(f"load average at the end {load()}")
            return 0
        with baseline_tree(args.baseline) as tree:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=tree,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            here = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            sides = [Side("now", ROOT, body_path), Side("baseline", tree, body_path)]
            results: dict[str, list[dict[str, float]]] = {"now": [], "baseline": []}
            try:
                for i in range(args.rounds):
                    order = sides if i % 2 == 0 else sides[::-1]
                    for side in order:
                        results[side.label].append(side.ask(op="round", requests=args.requests))
            finally:
                for side in sides:
                    side.close()
        print(
            f"now: this checkout (HEAD {here} + working tree), baseline: {commit}; "
            f"{args.rounds} alternating rounds of {args.requests} requests per side, "
            "time.process_time, medians (min-max)"
        )
        print(report(results, ("now", "baseline")))
        print(f"load average at the end {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
