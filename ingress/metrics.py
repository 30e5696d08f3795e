"""The ingress's metrics: what it answered and how fast, body sizes, group commit, the spool.

Every outcome of ``callback_fanout_ingress_requests_total`` exists at 0 from the start; the
children are bound here, once, and the request path only adds to them.
"""

from __future__ import annotations

import time
from typing import Literal, get_args

from ingress.spool import Spool
from shared.metrics import (
    BATCH_BUCKETS,
    REQUEST_BUCKETS,
    SIZE_BUCKETS,
    Counter,
    Histogram,
    Metrics,
)

__all__ = ["OUTCOMES", "IngressMetrics", "Outcome"]

Outcome = Literal[
    "accepted",
    "spooled",
    "unavailable",
    "unauthorized",
    "forbidden",
    "rate_limited",
    "too_large",
    "bad_request",
    "timeout",
    "unsupported_encoding",
]

#: What an answered request counts as: durable (broker-confirmed, or fsynced in the spool),
#: or the reason it was refused.
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


class IngressMetrics:
    """The ingress's families in ``metrics``, their children bound once."""

    def __init__(self, metrics: Metrics) -> None:
        requests = metrics.counter(
            "callback_fanout_ingress_requests_total",
            "Callback requests answered, by outcome: accepted (broker confirmed), spooled "
            "(fsynced locally) or the reason it was refused.",
            ("outcome",),
        )
        self.requests: dict[Outcome, Counter] = {o: requests.labels(o) for o in OUTCOMES}
        self.request_seconds: Histogram = metrics.histogram(
            "callback_fanout_ingress_request_seconds",
            "Seconds from a callback request's head to its answer (answered requests).",
            REQUEST_BUCKETS,
        ).labels()
        self.body_bytes: Histogram = metrics.histogram(
            "callback_fanout_ingress_body_bytes",
            "Bytes of the callback bodies made durable (after content decoding).",
            SIZE_BUCKETS,
        ).labels()
        self.batch_bodies: Histogram = metrics.histogram(
            "callback_fanout_ingress_batch_bodies",
            "Bodies per message confirmed by the broker (how much group commit coalesces).",
            BATCH_BUCKETS,
        ).labels()
        self._spool: Spool | None = None
        spool_gauges = {
            "callback_fanout_spool_records": ("Bodies in the local spool.", self._records),
            "callback_fanout_spool_bytes": ("Bytes of the spool directory.", self._bytes),
            "callback_fanout_spool_oldest_seconds": (
                "Age of the oldest body in the spool (0 when empty).",
                self._oldest,
            ),
        }
        for name, (text, read) in spool_gauges.items():
            metrics.gauge(name, text).read_from(read)

    def watch_spool(self, spool: Spool) -> None:
        """Export ``spool``'s size and age (without one the spool gauges stay at 0)."""
        self._spool = spool

    def answered(self, outcome: Outcome, started: float) -> None:
        """Count one answered request; ``started`` is its ``time.perf_counter()`` at the head."""
        self.requests[outcome].inc()
        self.request_seconds.observe(time.perf_counter() - started)

    def _records(self) -> float:
        return self._spool.pending if self._spool is not None else 0

    def _bytes(self) -> float:
        return self._spool.used_bytes if self._spool is not None else 0

    def _oldest(self) -> float:
        received = self._spool.oldest_received_at() if self._spool is not None else None
        return max(0.0, time.time() - received) if received is not None else 0.0
