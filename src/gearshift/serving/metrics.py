"""Prometheus metrics of one server, in a registry of its own (several servers per process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gearshift.types import PoolStatus

LATENCY_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
)
HANDOFF_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("gearshift_requests", "Inference requests received", ["model"],
                                registry=r)
        self.answered = Counter("gearshift_answered", "Requests answered with a result",
                                ["variant"], registry=r)
        self.on_time = Counter("gearshift_on_time", "Results delivered within their deadline",
                               ["variant"], registry=r)
        self.errors = Counter("gearshift_errors", "Requests answered with an error", ["status"],
                              registry=r)
        self.latency = Histogram("gearshift_latency_seconds", "Server-side request latency",
                                 ["variant"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.handoff = Histogram(
            "gearshift_replica_handoff_seconds",
            "Time a replica was held per request beyond its service time: the hand-off of the "
            "request to it and of the answer back",
            ["variant"], buckets=HANDOFF_BUCKETS_S, registry=r)
        self.queue = Gauge("gearshift_queue_length", "Requests waiting for a replica", registry=r)
        self.in_flight = Gauge("gearshift_in_flight", "Requests being served", registry=r)
        self.rate = Gauge("gearshift_arrival_rate_rps", "Arrival rate over the last period",
                          registry=r)
        self.active = Gauge("gearshift_active_variant", "1 for the variant being served",
                            ["variant"], registry=r)
        self.replicas = Gauge("gearshift_replicas", "Replicas of the current allocation",
                              registry=r)
        self.threads = Gauge("gearshift_threads_per_replica", "Threads per replica", registry=r)
        self.switches = Gauge("gearshift_variant_switches", "Variant switches so far", registry=r)
        self.reallocations = Gauge("gearshift_allocation_changes", "R x T changes so far",
                                   registry=r)
        self.restarts = Gauge("gearshift_worker_restarts", "Replicas replaced after dying",
                              registry=r)
        self.fallbacks = Gauge("gearshift_fallbacks", "Requests answered by a lighter variant "
                               "than the one in force, so far", registry=r)
        self.upgrades = Gauge("gearshift_upgrades", "Requests answered by a more accurate "
                              "variant than the one in force (found a replica free), so far",
                              registry=r)

    def observe_pool(self, status: PoolStatus, variants: list[str], rate_rps: float) -> None:
        self.queue.set(status.queue_length)
        self.in_flight.set(status.in_flight)
        self.rate.set(rate_rps)
        for v in variants:
            self.active.labels(v).set(1.0 if v == status.variant else 0.0)
        self.replicas.set(status.allocation.replicas)
        self.threads.set(status.allocation.threads)
        self.switches.set(status.switches)
        self.reallocations.set(status.allocation_changes)
        self.restarts.set(status.worker_restarts)
        self.fallbacks.set(status.fallbacks)
        self.upgrades.set(status.upgrades)

    def render(self) -> bytes:
        return generate_latest(self.registry)
