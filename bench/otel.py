"""The same telemetry events through our shipper and through OpenTelemetry's batch log exporter.

    python bench/otel.py                 # 100,000 events
    python bench/otel.py --events 20000 --reps 3  # quicker

Both send to the same local sink (a separate process on loopback: an aiohttp
handler that reads each body, counts its bytes, and answers 204/200; it counts
the records only after the timed part). The events are the anonymised
telemetry copies the ingest path stores (``bench/ship.py``'s mix).

* ours, in memory: ``tuiaudit.batch.plan_batches`` (Fressian + zstd blob v4 in
  the JSON envelope, 10,000 events per POST) posted with aiohttp;
* ours, shipper: ``Shipper.run_once`` draining the same rows from a SQLite
  store (select, encode, POST, ledger, delete);
* OTel: ``opentelemetry-sdk`` ``BatchLogRecordProcessor`` +
  ``OTLPLogExporter`` (OTLP/HTTP protobuf to ``/v1/logs``), one log record per
  event with the event as a map body, first with the SDK's defaults (a 2,048
  record queue, 512 per export: records emitted faster than exported are
  dropped), then tuned (queue = every event, 10,000 per export), then tuned
  with gzip.

Every case first runs once on a few thousand events (warm-up: imports,
connections, protobuf and codec first calls; not reported), then ``--reps``
times on all events, the order of the cases rotating from one repetition to
the next so none always runs first on a quiet (or busy) machine. Figures are
the median over the repetitions, with the spread (min-max) of events/s:
events/s from the first event handed over to the last one answered, wire
bytes/event (request bodies only), events delivered.
Needs the bench-only packages ``opentelemetry-sdk`` and
``opentelemetry-exporter-otlp-proto-http``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from statistics import median
from typing import Any

SINK = r"""
import sys, json
from aiohttp import web
bodies = {"ours": [], "otel": []}
# Wire bytes: Content-Length (aiohttp hands read() a gzip body already inflated).
async def ours(request):
    bodies["ours"].append((request.content_length, await request.read()))
    return web.Response(status=204)
async def otel(request):
    bodies["otel"].append((request.content_length, await request.read()))
    return web.Response(status=200, body=b"", content_type="application/x-protobuf")
async def stats(request):
    from tuiaudit.codec import decode_envelope
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    import gzip
    out = {}
    for kind, items in bodies.items():
        records = 0
        for _, b in items:
            if kind == "ours":
                env = json.loads(b)
                if env.get("type") == "telemetry-events":
                    records += len(decode_envelope(env)["events"])
            else:
                if b[:2] == b"\x1f\x8b":
                    b = gzip.decompress(b)
                req = ExportLogsServiceRequest.FromString(b)
                records += sum(len(s.log_records) for r in req.resource_logs for s in r.scope_logs)
        wire = sum(n if n is not None else len(b) for n, b in items)
        out[kind] = {"requests": len(items), "bytes": wire, "records": records}
    bodies["ours"].clear(); bodies["otel"].clear()
    return web.json_response(out)
app = web.Application(client_max_size=256 * 2**20)
app.router.add_post("/v1/logs", otel)
app.router.add_get("/stats", stats)
app.router.add_post("/{tail:.*}", ours)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None,
            print=lambda *a: print("ready", flush=True))
"""


def make_rows(n: int) -> list[Any]:
    """Anonymised telemetry rows, as ``bench/ship.py`` seeds them."""
    from tuiaudit.events import prepare_backend_events
    from tuiaudit.policy import anonymise
    from tuiaudit.timeutil import utcnow

    rng = random.Random(42)
    names = ["navigate", "create-file", "update-file", "login-with-password", "export-shapes"]
    teams = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50)]
    now = utcnow() - timedelta(hours=1)
    raws = [
        {
            "name": rng.choice(names),
            "type": "action",
            "profile-id": str(uuid.UUID(int=rng.getrandbits(128))),
            "props": {
                "team-id": rng.choice(teams),
                "file-id": str(uuid.UUID(int=rng.getrandbits(128))),
                "count": rng.randrange(1000),
                "ok": rng.random() < 0.5,
                "email": "someone@example.org",
            },
            "context": {"version": "2.4.1", "initiator": "app"},
        }
        for _ in range(n)
    ]
    return [anonymise(p.row) for p in prepare_backend_events(raws, now=now)]


def otel_body(row: Any) -> dict[str, Any]:
    """The event as the OTLP record body: the same fields our batch carries."""
    return {
        "id": str(row.id),
        "name": row.name,
        "type": row.type,
        "source": row.source,
        "tracked-at": int(row.tracked_at.timestamp() * 1000),
        "profile-id": str(row.profile_id),
        "props": row.props,
        "context": row.context,
    }


async def sink_stats(base: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(base + "/stats") as r:
        return dict(await r.json())


async def run_ours_memory(rows: list[Any], base: str) -> float:
    import aiohttp

    from tuiaudit.batch import plan_batches

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        for start in range(0, len(rows), 10_000):
            for b in plan_batches(
                rows[start : start + 10_000], instance_id=uuid.UUID(int=1), version="1",
                max_bytes=4 * 2**20,
            ):  # fmt: skip
                headers = {"Idempotency-Key": b.batch_key, "Content-Type": "application/json"}
                async with s.post(base + "/ours", data=b.body, headers=headers) as r:
                    assert r.status == 204
    return time.perf_counter() - t0


async def run_ours_shipper(rows: list[Any], base: str, tmp: str) -> float:
    """Drain ``rows`` from a fresh SQLite store (one per call: the same ids again)."""
    import aiohttp

    from tuiaudit.config import Settings
    from tuiaudit.consent import accept
    from tuiaudit.daemon.shipper import Shipper
    from tuiaudit.policy import POLICY_VERSION
    from tuiaudit.storage import open_store

    url = f"sqlite:///{tmp}/otel-bench-{uuid.uuid4().hex[:8]}.db"
    async with open_store(url) as store:
        await accept(store, POLICY_VERSION)
        for start in range(0, len(rows), 10_000):
            await store.insert_rows(rows[start : start + 10_000])
        settings = Settings(store=url, telemetry_uri=base + "/ours", jitter=0)
        async with aiohttp.ClientSession() as session:
            shipper = Shipper(store, settings, session=session, instance_id=uuid.UUID(int=1))
            t0 = time.perf_counter()
            run_report = await shipper.run_once(jitter=False, report=False)
            elapsed = time.perf_counter() - t0
        assert run_report.ok and run_report.rows_sent == len(rows), run_report.summary()
    return elapsed


def run_otel(rows: list[Any], base: str, *, tuned: bool, gzip: bool) -> float:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    exporter = OTLPLogExporter(
        endpoint=base + "/v1/logs",
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )
    # tuned: a queue that holds every event (at least one export's worth), 10k per export
    queue = max(len(rows), 10_000)
    kw = {"max_queue_size": queue, "max_export_batch_size": 10_000} if tuned else {}
    provider = LoggerProvider()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, **kw))  # type: ignore[arg-type]
    logger = provider.get_logger("tuiaudit.bench")
    bodies = [(otel_body(r), int(r.tracked_at.timestamp() * 1e9)) for r in rows]
    t0 = time.perf_counter()
    for body, ts in bodies:
        logger.emit(timestamp=ts, body=body, event_name=body["name"])
    provider.force_flush(timeout_millis=600_000)
    elapsed = time.perf_counter() - t0
    provider.shutdown()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of every case")
    ap.add_argument("--warmup", type=int, default=5_000, help="events of the untimed first run")
    args = ap.parse_args()
    try:
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        print("otel: skipped: pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http")
        return 0
    import logging

    logging.getLogger("opentelemetry").setLevel(logging.ERROR)  # queue-full warnings
    n = args.events
    rows = make_rows(n)
    port = _free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        base = f"http://127.0.0.1:{port}"
        # case name -> one (events/s, bytes/event, delivered, requests) per repetition
        runs: dict[str, list[tuple[float, float, int, int]]] = {}
        with tempfile.TemporaryDirectory() as tmp:

            def cases(rs: list[Any]) -> list[tuple[str, Any, str]]:
                return [
                    ("ours, in memory (blob v4, 10k/POST)",
                     lambda: asyncio.run(run_ours_memory(rs, base)), "ours"),
                    ("ours, shipper from SQLite",
                     lambda: asyncio.run(run_ours_shipper(rs, base, tmp)), "ours"),
                    ("OTel SDK defaults (queue 2048, 512/export)",
                     lambda: run_otel(rs, base, tuned=False, gzip=False), "otel"),
                    ("OTel tuned (queue all, 10k/export)",
                     lambda: run_otel(rs, base, tuned=True, gzip=False), "otel"),
                    ("OTel tuned + gzip",
                     lambda: run_otel(rs, base, tuned=True, gzip=True), "otel"),
                ]  # fmt: skip

            for _name, fn, _kind in cases(rows[: args.warmup]):
                fn()
                asyncio.run(sink_stats(base))  # read and reset: the warm-up is not reported
            timed = cases(rows)
            for rep in range(args.reps):
                shift = rep % len(timed)
                for name, fn, kind in timed[shift:] + timed[:shift]:
                    elapsed = fn()
                    st = asyncio.run(sink_stats(base))[kind]
                    runs.setdefault(name, []).append(
                        (
                            st["records"] / elapsed if elapsed else 0.0,
                            st["bytes"] / st["records"] if st["records"] else 0.0,
                            st["records"],
                            st["requests"],
                        )
                    )
    finally:
        sink.terminate()
        sink.wait(10)
    print(
        f"{n:,} anonymised telemetry events, loopback sink in a separate process; "
        f"each case warmed up on {min(args.warmup, n):,} events, then {args.reps} rotating "
        "repetitions: medians (events/s spread min-max)"
    )
    head = (
        f"{'sender':<44}{'events/s':>11}{'(min-max)':>21}{'bytes/event':>13}"
        f"{'delivered':>11}{'requests':>10}"
    )
    print(head)
    print("-" * len(head))
    medians: dict[str, tuple[float, float]] = {}
    for name, reps in runs.items():
        eps = [r[0] for r in reps]
        bpe = median(r[1] for r in reps)
        medians[name] = (median(eps), bpe)
        span = f"({min(eps):,.0f}-{max(eps):,.0f})"
        print(
            f"{name:<44}{median(eps):>11,.0f}{span:>21}{bpe:>13.1f}"
            f"{median(r[2] for r in reps):>11,.0f}{median(r[3] for r in reps):>10,.0f}"
        )
    names = list(runs)
    ours, tuned, gz = medians[names[0]], medians[names[3]], medians[names[4]]
    print()
    print(
        f"ours in memory vs OTel tuned (medians): x{ours[0] / tuned[0]:.1f} events/s; "
        f"wire bytes/event x{tuned[1] / ours[1]:.1f} fewer than OTel, "
        f"x{gz[1] / ours[1]:.1f} fewer than OTel + gzip"
    )
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
