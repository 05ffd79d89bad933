"""The fleet run's figures and checks, from the load's log, the store and the receiver."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncpg

if TYPE_CHECKING:
    from run import Fleet

LEASE_TTL_S = 30.0  # daemon/shipper.py LEASE_TTL_S: the target is a move within 2x


def host_of_port(conn_log: Path, upstream_port: int) -> str | None:
    """The host whose proxied connection left the proxy from ``upstream_port`` (latest)."""
    found = None
    with open(conn_log) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("event") == "open" and rec.get("upstream_port") == upstream_port:
                found = rec["name"]
    return found


def _load(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _telemetry_seqs(path: Path) -> Counter[int]:
    """``props.seq`` of every event the receiver kept (fresh ids only), with counts."""
    seqs: Counter[int] = Counter()
    for rec in _load(path):
        for ev in rec.get("events") or []:
            seq = (ev.get("props") or {}).get("seq") if isinstance(ev, dict) else None
            if isinstance(seq, int):
                seqs[seq] += 1
    return seqs


def attribute(
    t: float, windows: list[dict[str, Any]], grace: float, host: str | None = None
) -> str:
    """The fault whose window (plus its aftermath) holds time ``t``: the latest one
    (of those that concern ``host``, when given)."""
    best = None
    for w in windows:
        if host is not None and w["host"] not in ("*", host):
            continue
        if w["start"] <= t <= w["end"] + grace and (best is None or w["start"] > best["start"]):
            best = w
    return f"{best['fault']}:{best['host']}" if best else "no fault"


def _resets(conn_log: Path) -> list[dict[str, Any]]:
    """The connections the proxy reset on purpose (time, listener: a host's or "rx")."""
    return [r for r in _load(conn_log) if r.get("event") == "reset"]


def _reset_near(resets: list[dict[str, Any]], name: str, t0: float, t1: float) -> bool:
    return any(r["name"] == name and t0 - 1.0 <= r["t"] <= t1 + 0.5 for r in resets)


def _explained_5xx(req: dict[str, Any], windows: list[dict[str, Any]], grace: float) -> bool:
    for w in windows:
        if w["fault"] not in ("partition-db", "pg-restart"):
            continue
        if w["host"] not in ("*", req["host"]):
            continue
        if req["t1"] >= w["start"] and req["t0"] <= w["end"] + grace:
            return True
    return False


async def collect(fleet: Fleet, *, load_end: float, drained: float | None) -> dict[str, Any]:
    p, tmp, windows = fleet.plan, fleet.tmp, fleet.windows
    reqs = _load(tmp / "load.jsonl")
    acked: dict[str, tuple[int, bool]] = {}
    sent = 0
    statuses: Counter[str] = Counter()
    for r in reqs:
        sent += len(r["ev"])
        statuses[str(r["status"])] += 1
        if 200 <= r["status"] < 300:
            for i, seq, hook in r["ev"]:
                acked[i] = (seq, hook)
    conn = await asyncpg.connect(fleet.direct, timeout=10)
    try:
        stored_rows = await conn.fetch(
            "SELECT id::text AS id, (props->>'seq')::bigint AS seq, name FROM audit_log "
            "WHERE source = 'backend' AND name IN ('fleet-load', 'fleet-hook')"
        )
        queue_left = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE source LIKE 'telemetry:%'"
        )
        quarantined = await conn.fetchval("SELECT count(*) FROM quarantine")
        drops = dict(await conn.fetch("SELECT reason, sum(count) FROM drops GROUP BY reason"))
        deliveries = dict(
            await conn.fetch("SELECT status, count(*) FROM webhook_delivery GROUP BY status")
        )
        held = await conn.fetch(
            "SELECT event->>'id' AS id, extract(epoch FROM claim_until - now()) AS left_s "
            "FROM webhook_delivery WHERE status NOT IN ('delivered', 'failed') "
            "AND claim_until > now()"
        )
        ledger = dict(await conn.fetch("SELECT status, count(*) FROM ship_ledger GROUP BY status"))
    finally:
        await conn.close()
    stored = {r["id"]: r["seq"] for r in stored_rows}
    stored_hooks = {r["id"] for r in stored_rows if r["name"] == "fleet-hook"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://{fleet_receiver()}/state", timeout=aiohttp.ClientTimeout(total=30)) as r,
    ):
        rx = await r.json()
    tele_seqs = _telemetry_seqs(tmp / "rx" / "telemetry.jsonl")
    stored_seqs = set(stored.values())
    hook_ids = Counter(h[1] for h in rx["hooks"])

    rx_resets = [r for r in _resets(tmp / "proxy-conns.jsonl") if r["name"] == "rx"]

    def cause(t: float) -> str:
        found = attribute(t, windows, p.grace_s)
        if found == "no fault" and any(t - 60 <= r["t"] <= t for r in rx_resets):
            return "proxy-reset:rx"  # an answer lost with its connection: sent again
        return found

    resends: Counter[str] = Counter()
    for t, _n, dup in rx["telemetry"]["arrivals"]:
        if dup:
            resends["telemetry " + cause(t)] += dup
    first: dict[str, float] = {}
    for t, i, _d in rx["hooks"]:
        if i in first:
            # The fault is the one that interrupted the first delivery (its outcome
            # was never recorded), whenever the re-send came.
            resends["webhook " + cause(first[i])] += 1
        else:
            first[i] = t

    resets = _resets(tmp / "proxy-conns.jsonl")
    five = [r for r in reqs if r["status"] >= 500]
    unexplained, by_reset = [], []
    five_by: Counter[str] = Counter()
    for r in five:
        if _explained_5xx(r, windows, p.grace_s):
            five_by[f"{r['host']} {attribute(r['t1'], windows, p.grace_s, r['host'])}"] += 1
        elif _reset_near(resets, r["host"], r["t0"], r["t1"]):
            by_reset.append(r)  # its PostgreSQL connection was reset by the proxy mid-request
            five_by[f"{r['host']} proxy-reset"] += 1
        else:
            unexplained.append(r)
            five_by[f"{r['host']} no fault"] += 1

    last_fault: dict[str, float] = {}
    for w in windows:
        for h in fleet.procs:
            if w["host"] in ("*", h):
                last_fault[h] = max(last_fault.get(h, 0.0), w["end"])
    recovered = {
        h.name: any(
            r["host"] == h.name and 200 <= r["status"] < 300 and r["t0"] > last_fault.get(h.name, 0)
            for r in reqs
        )
        for h in _hosts()
    }
    alive = {h.name: fleet.procs[h.name].returncode is None for h in _hosts()}
    tracebacks = {
        h.name: (tmp / f"{h.name}.log").read_text(errors="replace").count("Traceback")
        for h in _hosts()
    }
    kill = fleet.events.get("kill")
    move = kill.get("lock-move-s") if isinstance(kill, dict) else None
    held_ids = {h["id"] for h in held}
    lost = [i for i in acked if i not in stored]
    missing_tele = stored_seqs - set(tele_seqs)
    phantom_tele = set(tele_seqs) - stored_seqs
    missing_hooks = stored_hooks - set(hook_ids)
    killed = kill.get("host") if isinstance(kill, dict) else None

    checks = [
        ("0 acknowledged events lost", not lost),
        ("every stored event's telemetry copy received (after de-duplication)",
         not missing_tele and not phantom_tele and max(tele_seqs.values(), default=1) == 1),
        ("queues drained (no telemetry row, no open webhook delivery)",
         drained is not None and queue_left == 0),
        ("every webhook event delivered exactly once after de-duplication",
         not (missing_hooks - held_ids) and set(hook_ids) <= stored_hooks
         and not deliveries.get("failed") and not (held_ids and p.await_dead_claims)),
        (f"shipper lock moved within 2x the lease ({2 * LEASE_TTL_S:.0f} s)",
         move is not None and move <= 2 * LEASE_TTL_S),
        ("ingest 5xx only while a host is cut from PostgreSQL, it restarts, or the proxy "
         "resets the request's connection", not unexplained),
        ("every ingest 5xx is a 503 (the store failed: retry, nothing kept)",
         all(r["status"] == 503 for r in five)),
        ("every daemon alive at the end; only the killed one restarted",
         all(alive.values()) and all(n == (h == killed) for h, n in fleet.restarts.items())),
        ("every host acknowledged events after its last fault (no restart needed)",
         all(recovered.values())),
    ]  # fmt: skip
    return {
        "plan": p.__dict__,
        "events": {
            "sent": sent,
            "acknowledged": len(acked),
            "stored": len(stored),
            "stored-not-acknowledged": len(set(stored) - set(acked)),
            "acknowledged-lost": len(lost),
            "telemetry-received-unique": len(tele_seqs),
            "telemetry-missing": len(missing_tele),
            "telemetry-queue-left": queue_left,
            "quarantined": quarantined,
            "drops": {k: int(v) for k, v in drops.items()},
        },
        "requests-by-status": dict(statuses),
        "ingest-5xx": {
            "total": len(five),
            "by-host-and-fault": dict(five_by),
            "after-a-proxy-reset": len(by_reset),
            "unexplained": len(unexplained),
        },
        "receiver": {k: v for k, v in rx["telemetry"].items() if k != "arrivals"},
        "webhooks": {
            "stored-webhook-events": len(stored_hooks),
            "received-unique": len(hook_ids),
            "arrivals": len(rx["hooks"]),
            "missing": len(missing_hooks),
            "missing-and-not-held-by-a-claim": len(missing_hooks - held_ids),
            "deliveries-by-status": deliveries,
            "open-under-a-claim": len(held),
            "open-under-a-claim-already-received": sum(1 for h in held if h["id"] in hook_ids),
            "claim-lapses-in-s": max((float(h["left_s"]) for h in held), default=None),
        },
        "proxy-resets": dict(Counter(r["name"] for r in resets)),
        "ledger-by-status": ledger,
        "resends-by-fault": dict(resends),
        "faults": [
            {**w, "start": round(w["start"] - fleet.t0, 2), "end": round(w["end"] - fleet.t0, 2)}
            for w in windows
        ],
        "kill": kill,
        "clock-step": fleet.events.get("clock-step"),
        "drain-s": drained,
        "load-s": round(load_end - fleet.t0, 1),
        "recovered": recovered,
        "alive": alive,
        "daemon-restarts": fleet.restarts,
        "start-retries": fleet.start_retries,
        "tracebacks-in-daemon-logs": tracebacks,
        "checks": [{"check": name, "ok": bool(ok)} for name, ok in checks],
    }


def fleet_receiver() -> str:
    from netns import RECEIVER_ADDR

    return f"{RECEIVER_ADDR}:8080"


def _hosts() -> list[Any]:
    from run import HOSTS

    return HOSTS
