"""The cost of the hardened policy (DESIGN §3.1) on the ingest hot path, in one run.

Compares, alternately on the same machine load:

* ``anonymise_many`` of 1,000 events: the policy before §3.1 (the module as
  it was at ``--baseline``, read from git) and the policy now;
* ``AuditLog.submit_many`` of 1,000 events in mode B on a real SQLite store,
  with each of the two policies (validation, preparation, the policy and the
  store's insert: what the ingest API pays per batch).

Two event mixes: ``bench/ingest.py``'s backend events (UUID/number/text
props, a small context) and frontend-shaped navigate events with a browser
user agent in the context (route, three ids, a float; the UA parser's cache
warm, as in a day of traffic). Prints medians and the spread (min-max).

    python bench/policy_cost.py                 # ~20 s
    python bench/policy_cost.py --rounds 5      # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from ingest import make_events  # bench/ingest.py, same folder

from tuiaudit import audit as audit_module
from tuiaudit import policy
from tuiaudit.audit import AuditLog
from tuiaudit.events import prepare_backend_events
from tuiaudit.storage import open_store

BASELINE = "c40bf3b929f9cf37f649b9019b5594f936f1dc55"  # the last commit before §3.1
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def navigate_events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "name": "navigate",
            "type": "action",
            "props": {
                "route": "workspace",
                "file-id": str(uuid.uuid4()),
                "team-id": str(uuid.uuid4()),
                "page-id": str(uuid.uuid4()),
                "ratio": 0.123456 + i,
            },
            "context": {"version": "2.4.3", "client-user-agent": CHROME, "initiator": "app"},
        }
        for i in range(n)
    ]


def baseline_policy(rev: str) -> ModuleType:
    """``tuiaudit/policy.py`` as it was at ``rev`` (its imports still exist)."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:tuiaudit/policy.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(source)
    spec = importlib.util.spec_from_file_location("baseline_policy", fh.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_policy"] = module
    spec.loader.exec_module(module)
    return module


def _old_signature(old: ModuleType) -> Callable[..., Any]:
    """The baseline's ``anonymise_many`` called as the audit log calls it now."""

    def call(rows: Sequence[Any], *, site: Any = None, trusted: bool = False) -> Any:
        return old.anonymise_many(rows)

    return call


def spread(samples: Sequence[float]) -> str:
    return f"{statistics.median(samples):8.2f}  ({min(samples):.2f}-{max(samples):.2f})"


def alternate(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    for fn in sides.values():
        fn()  # warm-up: plans, memos, the UA parser's cache
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args(argv)
    old = baseline_policy(args.baseline)
    mixes = {"backend events": make_events, "navigate + UA": navigate_events}

    print("anonymise_many(1000), microseconds per event: median (min-max)")
    for label, make in mixes.items():
        rows = [p.row for p in prepare_backend_events(make(1000), now=datetime.now(UTC))]
        t = alternate(
            {
                "before": functools.partial(old.anonymise_many, rows),
                "after": functools.partial(policy.anonymise_many, rows),
            },
            args.rounds,
        )
        us = {k: [s * 1e3 for s in v] for k, v in t.items()}  # 1000 events: ms = us/event
        ratio = statistics.median(us["after"]) / statistics.median(us["before"])
        print(f"  {label:15s} before {spread(us['before'])}   after {spread(us['after'])}")
        print(f"  {'':15s} after/before x{ratio:.2f}")

    print("\nAuditLog.submit_many(1000), mode B, SQLite: events/s median (min-max)")
    with tempfile.TemporaryDirectory() as tmp:
        async with open_store(f"sqlite:///{tmp}/bench.db") as store:
            audit = AuditLog(store, ["audit-log", "telemetry"])
            for label, make in mixes.items():
                events = make(1000)
                rates: dict[str, list[float]] = {"before": [], "after": []}
                for i in range(args.rounds + 1):
                    for side in ("before", "after"):
                        setattr(  # the name the audit log calls  # noqa: B010
                            audit_module,
                            "anonymise_many",
                            _old_signature(old) if side == "before" else policy.anonymise_many,
                        )
                        t0 = time.perf_counter()
                        await audit.submit_many(events)
                        if i:  # the first round warms up
                            rates[side].append(len(events) / (time.perf_counter() - t0))
                setattr(audit_module, "anonymise_many", policy.anonymise_many)  # noqa: B010
                ratio = statistics.median(rates["after"]) / statistics.median(rates["before"])
                print(
                    f"  {label:15s} before {spread(rates['before'])}   "
                    f"after {spread(rates['after'])}   after/before x{ratio:.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
