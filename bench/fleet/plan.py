"""The fleet run's sizes and fault schedule: the full run and the CI-sized one.

Times are seconds from the start of the load. The same checks apply to both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    load_s: float
    rate: float  # requests per second per host
    per_request: int  # events per request
    hook_every: int  # every n-th event is a webhook event
    pg_partition: tuple[float, float]  # (at, seconds): host h1 cut from PostgreSQL
    rx_partition: tuple[float, float]  # host h3 cut from the receiver
    pg_restart_at: float
    clock_step_at: float  # host h2's wall clock +10 minutes
    kill_at: float  # kill -9 of the host holding the shipper lock (then restarted, as systemd)
    drain_limit_s: float  # after the load: the queues must empty within this
    interval: float  # --interval: seconds between telemetry runs
    backoff_initial: float
    latency_ms: float = 15.0
    jitter_ms: float = 10.0
    reset_rate: float = 0.05
    reset_within: float = 8.0  # a reset connection dies within this many seconds
    grace_s: float = 15.0  # after a fault ends, errors still count as its aftermath
    clock_step_s: float = 600.0
    # Wait for webhook deliveries still claimed (by the killed daemon, say) to go
    # out. Since a claim ends with its claimer's sessions that takes seconds; with
    # False they are only reported (a claim that outlives its daemon would be a bug).
    await_dead_claims: bool = True


FULL = Plan(
    load_s=240,
    rate=4,
    per_request=10,
    hook_every=10,
    pg_partition=(15, 30),
    rx_partition=(60, 40),
    pg_restart_at=120,
    clock_step_at=140,
    kill_at=170,
    drain_limit_s=600,
    interval=5,
    backoff_initial=5,
)

CI = Plan(
    load_s=40,
    rate=3,
    per_request=5,
    hook_every=5,
    pg_partition=(3, 10),
    rx_partition=(5, 8),
    pg_restart_at=16,
    clock_step_at=19,
    kill_at=20,
    drain_limit_s=25,
    interval=2,
    backoff_initial=2,
    reset_within=4.0,
    grace_s=12.0,
)
