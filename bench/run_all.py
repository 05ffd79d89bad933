"""Run every benchmark in bench/ and write docs/BENCHMARKS.md (the command beside each figure).

    python bench/run_all.py            # the report run (a few minutes)
    python bench/run_all.py --quick    # smaller sizes and budgets (about a minute or two)
    python bench/run_all.py --only codec,otel --out /tmp/b.md

Each script runs in its own process, one after the other (never two at
once: they would share the two cores), and prints its figures next to a
baseline measured in the same run (the raw store, the JSON+zstd baseline, the
plain drain pipeline, the raw sqlite3 page, OpenTelemetry's exporter). The
report keeps each script's output verbatim under the exact command that
produced it, with the machine, the commit and the wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUI_STORE = "/tmp/tuiaudit-bench/big2m.db"
TUI_PG = "postgresql://postgres@127.0.0.1:5432/test?schema=bench_tui"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    what: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()


BENCHES = (
    Bench("ingest", "bench/ingest.py", "AuditLog.submit_many into the store, modes A/B/C, vs the "
          "raw store (same rows, same transaction sizes)", (), ("--quick",)),
    Bench("ingest_http", "bench/ingest_http.py", "HTTP ingest through a real daemon vs the raw "
          "store limit (same events, the daemon's transaction size, alternating rounds, median)",
          (), ("--seconds", "2", "--count", "2000", "--rounds", "3")),
    Bench("ingest_wrk", "bench/ingest_http.py", "issue 20: wrk (1 thread, 8 connections, 100 "
          "frontend events per request) against daemons with --workers 1 and 2 vs the rows "
          "inserted raw into a migrated store and a minimal table, alternating rounds, medians",
          ("--wrk", "--workers", "1,2"), ("--wrk", "--workers", "1,2", "--backends", "sqlite")),
    Bench("policy_cost", "bench/policy_cost.py", "the hardened policy (DESIGN §3.1) vs the "
          "policy before it, anonymise_many and submit_many, alternating, medians", (),
          ("--rounds", "5")),
    Bench("codec", "bench/codec.py", "blob v4 encode/decode vs orjson+zstd (and the JVM "
          "reference when installed)", (), ("--events", "5000", "--seconds", "1",
          "--no-reference")),
    Bench("ship", "bench/ship.py", "draining a telemetry backlog to the local receiver vs a "
          "plain select+JSON+zstd+POST+delete pipeline (a baseline, not a ceiling)", (),
          ("--rows", "20000", "--reps", "1")),
    Bench("otel", "bench/otel.py", "our shipper vs OpenTelemetry's batch log exporter "
          "(OTLP/HTTP), same events, same sink, warmed up, repeated, medians", (),
          ("--events", "20000", "--reps", "2")),
    Bench("archive", "bench/archive.py", "archiving a 1,000,000-row audit backlog (chunks of "
          "128) vs a plain select+JSON+POST+update pipeline, alternating runs, medians", (),
          ("--rows", "20000", "--reps", "1")),
    Bench("search_index", "bench/search_index.py", "SQLite's trigram index: raw insert vs "
          "FTS5 in the writer's transaction vs the store's insert and its indexer (CPU time)",
          ("--rows", "20000"), ()),
    Bench("search_backlog", "bench/search_backlog.py", "what the index backlog costs a search: "
          "exact count and first page over 100,000-400,000 unindexed rows (the indexer's "
          "BACKLOG_LIMIT)", (), ("--backlogs", "100000")),
    Bench("tui", "bench/tui.py", "the dashboard on a 2,000,000-row SQLite store (filters, "
          "indexed free-text search, live tail) vs the raw sqlite3 query", ("--store", TUI_STORE),
          ("--store", TUI_STORE)),
    Bench("tui_postgresql", "bench/tui.py", "the same on a 2,000,000-row PostgreSQL store "
          "(COPY, then migration 0005 CONCURRENTLY) vs the raw asyncpg query; EXPLAIN on a miss",
          ("--store", TUI_PG, "--rows", "200000"), ("--store", TUI_PG)),
)  # fmt: skip


@dataclass
class Result:
    bench: Bench
    argv: list[str]
    code: int
    seconds: float
    output: str


def run(bench: Bench, quick: bool, limit_s: float) -> Result:
    args = list(bench.quick if quick else bench.full)
    argv = [sys.executable, bench.script, *args]
    shown = ["python", bench.script, *args]
    if bench.name == "tui" and quick and not Path(TUI_STORE).exists():
        return Result(bench, shown, 0, 0.0, f"skipped in --quick: {TUI_STORE} (2,000,000 rows) is "
                      "not built yet; a run without --quick builds it once")  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env = {k: v for k, v in env.items() if not k.startswith("TUIAUDIT_")}
    print(f"$ {' '.join(shown)}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit_s
        )
        code, out = proc.returncode, proc.stdout + (proc.stderr if proc.returncode else "")
    except subprocess.TimeoutExpired as exc:
        code = -1
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        out += f"\n[stopped after {limit_s:.0f} s]"
    seconds = time.perf_counter() - t0
    print(out.rstrip(), flush=True)
    print(f"[{bench.name}: exit {code}, {seconds:.1f} s]\n", flush=True)
    return Result(bench, shown, code, seconds, out.rstrip())


def machine() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU(s) {cpu}, "
        f"Python {platform.python_version()}, commit {commit or 'unknown'}"
    )


def report(results: list[Result], quick: bool, argv: list[str]) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python bench/run_all.py" + (" " + " ".join(argv) if argv else "") + "`"
        f" on {now}; {machine()}.",
        "Every figure is printed by its script next to a baseline measured in the same run, "
        "on the same machine, so the ratio is what to read; absolute numbers move with the "
        "machine and with whatever else shares its cores. "
        + ("This is a `--quick` run: smaller sizes and budgets. " if quick else "")
        + "Re-run any section with the command above it.",
        "",
        "| benchmark | what it measures | exit | wall time |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| [{r.bench.name}](#{r.bench.name}) | {r.bench.what} | {r.code} | "
                     f"{r.seconds:.0f} s |")  # fmt: skip
    for r in results:
        lines += [
            "",
            f"## {r.bench.name}",
            "",
            r.bench.what + ".",
            "",
            "```",
            f"$ {' '.join(r.argv)}",
            r.output,
            "```",
        ]
    lines += [
        "",
        "Reliability figures (kill -9 loops, crash mid-ingest, live reader, full disk, fuzzing) "
        "are in [RELIABILITY.md](RELIABILITY.md), each with its command.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and time budgets")
    p.add_argument("--only", help="comma-separated names: " + ",".join(b.name for b in BENCHES))
    p.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    p.add_argument("--limit", type=float, default=1800.0, help="seconds allowed per script")
    args = p.parse_args()
    wanted = set(args.only.split(",")) if args.only else {b.name for b in BENCHES}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    results = [run(b, args.quick, args.limit) for b in BENCHES if b.name in wanted]
    shown_args = [a for a in sys.argv[1:]]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report(results, args.quick, shown_args))
    print(f"wrote {args.out}")
    return 0 if all(r.code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
