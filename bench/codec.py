"""Benchmark of the blob v4 codec on a telemetry-shaped batch (not a test).

Prints events/s and wire bytes/event for:
  * our blob v4 (encode: events -> blob string; decode: blob string -> events),
  * orjson + zstd + base64 of the same events (the JSON ceiling, same run),
  * the reference codec (data.fressian + zstd-jni on the JVM), warmed up on
    the same batch, when Java and its jars are installed.

Targets (issue 3): encode >= 100,000 events/s on one core, and wire
bytes/event <= the JSON+zstd figure. Issue 18: decode >= 200,000 events/s with
the compiled reader (tuiaudit/codec/_fressian_reader.pyx); the pure-Python
reader is measured in the same run (``decode_blob`` with ``reader.compiled``
set aside), both as the best run and as the median CPU time (process_time) of
alternating runs, which the machine's load disturbs less.

    python bench/codec.py [--events 10000] [--seconds 3] [--no-reference] [--profile]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tuiaudit.codec import (  # noqa: E402 - after the path fix, for a plain checkout
    Keyword,
    decode_blob,
    encode_blob,
    encode_blob_parts,
    reader,
    to_tagged_json,
)

BLOBREF_CLJ = ROOT / "tests" / "refcodec" / "blobref.clj"  # the tests' reference codec
REF_BENCH_CLJ = Path(__file__).with_name("refcodec_bench.clj")
JAVA_JARS = ("clojure.jar", "data.fressian.jar", "fressian.jar", "zstd-jni.jar", "data.json.jar")

NAMES = [
    ("navigate", "action", ["file-id", "team-id", "page-id"]),
    ("create-file", "action", ["file-id", "project-id", "team-id"]),
    ("update-file", "action", ["file-id", "revn"]),
    ("open-file", "action", ["file-id", "team-id"]),
    ("export-shapes", "action", ["file-id", "num-shapes", "has-text"]),
    ("login-with-password", "identify", ["is-new", "profile-version"]),
    ("instance-start", "trigger", ["uptime-ms"]),
    ("create-team", "action", ["team-id", "is-default"]),
    ("add-comment", "action", ["file-id", "thread-id", "is-reply"]),
    ("toggle-layer", "action", ["file-id", "visible"]),
]
BROWSERS = ["firefox", "chrome", "safari", "edge"]
OSES = ["linux", "macos", "windows"]
LOCALES = ["en", "es", "fr", "de", "pt-BR", "ja"]


def make_events(n: int, seed: int = 42) -> list[dict[Keyword, Any]]:
    """Telemetry rows as the batch builder emits them (keyword keys, DESIGN §5 step 4)."""
    rnd = random.Random(seed)
    profiles = [uuid.UUID(int=rnd.getrandbits(128), version=4) for _ in range(200)]
    teams = [uuid.UUID(int=rnd.getrandbits(128), version=4) for _ in range(40)]
    files = [uuid.UUID(int=rnd.getrandbits(128), version=4) for _ in range(500)]
    today = datetime(2025, 11, 30, tzinfo=UTC)
    K = Keyword
    events = []
    for _ in range(n):
        name, typ, prop_keys = rnd.choice(NAMES)
        props: dict[Keyword, Any] = {}
        for key in prop_keys:
            if key.endswith("-id"):
                props[K(key)] = rnd.choice(teams if key == "team-id" else files)
            elif key.startswith(("is-", "has-")) or key == "visible":
                props[K(key)] = rnd.random() < 0.5
            else:
                props[K(key)] = rnd.randrange(0, 5000)
        events.append(
            {
                K("name"): name,
                K("type"): typ,
                K("source"): "telemetry:frontend",
                K("tracked-at"): today - timedelta(days=rnd.randrange(7)),
                K("profile-id"): rnd.choice(profiles),
                K("id"): uuid.UUID(int=rnd.getrandbits(128), version=4),
                K("props"): props,
                K("context"): {
                    K("version"): "2.4.3",
                    K("browser"): rnd.choice(BROWSERS),
                    K("os"): rnd.choice(OSES),
                    K("locale"): rnd.choice(LOCALES),
                },
            }
        )
    return events


def json_events(events: list[dict[Keyword, Any]]) -> list[dict[str, Any]]:
    """The same events with string keys, as a JSON sender would have them."""

    def conv(v: Any) -> Any:
        return {str(k): conv(x) for k, x in v.items()} if isinstance(v, dict) else v

    return [conv(e) for e in events]


def rate(fn: Callable[[], Any], n_events: int, seconds: float) -> float:
    """Events/s of ``fn`` (one call = one batch): best single run within ``seconds``.

    Every case, ours, JSON's and the JVM reference's (bench/refcodec_bench.clj),
    gets the same budget and the same rule: warm up for ``seconds``, then the
    best run within another ``seconds``.
    """
    warm_until = time.perf_counter() + seconds
    fn()
    while time.perf_counter() < warm_until:
        fn()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return n_events / best


def pure_decode_blob(blob: str) -> Any:
    """decode_blob with the pure-Python reader (as TUIAUDIT_PURE_PYTHON=1 would have it)."""
    saved, reader.compiled = reader.compiled, None
    try:
        return decode_blob(blob)
    finally:
        reader.compiled = saved


def cpu_medians(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median process_time per call of each function, the functions alternating."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def reference(events: list[dict[Keyword, Any]], seconds: float) -> dict[str, Any] | str:
    """The reference codec's figures, or why it could not run."""
    java_dir = Path("/usr/share/java")
    if shutil.which("java") is None:
        return "java is not installed"
    missing = [j for j in JAVA_JARS if not (java_dir / j).exists()]
    if missing or not BLOBREF_CLJ.exists():
        return f"reference codec not available (missing: {missing or BLOBREF_CLJ})"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump([to_tagged_json(e) for e in events], fh)
    cp = ":".join(str(java_dir / j) for j in JAVA_JARS)
    cmd = ["java", "-cp", cp, "clojure.main", str(REF_BENCH_CLJ), str(BLOBREF_CLJ), fh.name]
    try:
        proc = subprocess.run(
            [*cmd, str(seconds)], capture_output=True, text=True, timeout=600, check=False
        )
    finally:
        Path(fh.name).unlink()
    if proc.returncode != 0:
        return f"reference benchmark failed: {proc.stderr.strip()[-500:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per figure")
    parser.add_argument("--no-reference", action="store_true", help="skip the JVM codec")
    parser.add_argument("--profile", action="store_true", help="cProfile our encoder instead")
    args = parser.parse_args()

    events = make_events(args.events)
    n = len(events)
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx("for _ in range(5): encode_blob(events)", globals(), locals(), "/tmp/p")
        pstats.Stats("/tmp/p").sort_stats("tottime").print_stats(15)
        return 0

    blob, raw_size = encode_blob_parts(events)
    assert decode_blob(blob) == events, "round trip failed"
    ours_enc = rate(lambda: encode_blob(events), n, args.seconds)
    ours_dec = rate(lambda: decode_blob(blob), n, args.seconds)
    assert pure_decode_blob(blob) == events, "the pure reader disagrees"
    pure_dec = rate(lambda: pure_decode_blob(blob), n, args.seconds)
    rounds = max(5, int(args.seconds * 5))
    cpu = cpu_medians({"ours": lambda: decode_blob(blob), "pure": lambda: pure_decode_blob(blob)},
                      rounds)  # fmt: skip

    jevents = json_events(events)
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()

    def json_encode() -> bytes:
        return base64.urlsafe_b64encode(cctx.compress(orjson.dumps(jevents)))

    jblob = json_encode()
    json_raw = len(orjson.dumps(jevents))
    json_enc = rate(json_encode, n, args.seconds)
    json_dec = rate(
        lambda: orjson.loads(dctx.decompress(base64.urlsafe_b64decode(jblob))), n, args.seconds
    )

    print(
        f"batch: {n} telemetry events; one core; every case: {args.seconds:g} s warm-up, "
        f"then the best run within {args.seconds:g} s"
    )
    head = (f"{'codec':<26}{'encode ev/s':>13}{'decode ev/s':>13}{'raw B/ev':>10}"
            f"{'wire B/ev':>11}  {'x JSON enc / dec / wire':>24}")  # fmt: skip
    print(head)
    print("-" * len(head))
    json_wire = len(jblob) / n

    def row(name: str, enc: float, dec: float, raw: float, wire: float) -> None:
        ratios = f"{enc / json_enc:.2f} / {dec / json_dec:.2f} / {wire / json_wire:.3f}"
        print(f"{name:<26}{enc:>13,.0f}{dec:>13,.0f}{raw:>10.1f}{wire:>11.1f}  {ratios:>24}")

    row(f"blob v4 (ours, {reader.implementation()})", ours_enc, ours_dec, raw_size / n,
        len(blob) / n)  # fmt: skip
    row("blob v4 (ours, pure)", ours_enc, pure_dec, raw_size / n, len(blob) / n)
    row("orjson+zstd+base64", json_enc, json_dec, json_raw / n, len(jblob) / n)
    ref = None if args.no_reference else reference(events, args.seconds)
    if isinstance(ref, dict):
        row("blob v4 (reference, JVM)", ref["encode_eps"], ref["decode_eps"],
            ref["raw_bytes"] / n, ref["blob_chars"] / n)  # fmt: skip
    elif ref is not None:
        print(f"{'blob v4 (reference, JVM)':<26}skipped: {ref}")
    print()
    print(f"encode target >= 100,000 ev/s: {ours_enc:,.0f} "
          f"({'met' if ours_enc >= 100_000 else 'NOT met'})")  # fmt: skip
    print(f"decode ({reader.implementation()} reader) target >= 200,000 ev/s: {ours_dec:,.0f} "
          f"({'met' if ours_dec >= 200_000 else 'NOT met'}); x{ours_dec / pure_dec:.2f} the pure "
          f"reader ({pure_dec:,.0f}) in this run")  # fmt: skip
    print(f"decode CPU, median of {rounds} alternating runs: "
          f"{reader.implementation()} {cpu['ours'] * 1e3:.1f} ms/batch "
          f"({n / cpu['ours']:,.0f} ev/s), pure {cpu['pure'] * 1e3:.1f} ms/batch "
          f"({n / cpu['pure']:,.0f} ev/s): x{cpu['pure'] / cpu['ours']:.2f}")  # fmt: skip
    print(f"ratios vs orjson+zstd: encode speed x{ours_enc / json_enc:.2f}, "
          f"decode speed x{ours_dec / json_dec:.2f}, wire size x{len(blob) / len(jblob):.3f} "
          f"({'<= JSON: met' if len(blob) <= len(jblob) else '> JSON: NOT met'})")  # fmt: skip
    if isinstance(ref, dict):
        print(f"ratios vs reference: encode speed x{ours_enc / ref['encode_eps']:.2f}, "
              f"decode speed x{ours_dec / ref['decode_eps']:.2f}, "
              f"wire size x{len(blob) / ref['blob_chars']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
