"""The consumer workers' metrics, per consumer: events by outcome, handler time, end-to-end
lag, handlers in flight. Every outcome exists at 0 from the start; children are bound here,
once."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from shared.metrics import HANDLER_BUCKETS, LAG_BUCKETS, Counter, Gauge, Histogram, Metrics
from workers.runtime.handling import Outcome

__all__ = ["BREAKER_STATES", "CONSUMER_OUTCOMES", "ConsumerMetrics", "WorkerMetrics"]

#: What becomes of an event in a consumer. ``timed_out`` is also counted as ``retried`` or
#: ``parked``, whichever followed; ``filtered``: acked unhandled, its filter refused it.
CONSUMER_OUTCOMES = ("handled", "retried", "parked", "duplicate", "timed_out", "filtered")

#: The states a breaker moves to, as ``callback_fanout_consumer_breaker_transitions_total``
#: labels them (``to``).
BREAKER_STATES = ("closed", "open", "half-open")


@dataclass(frozen=True, slots=True)
class ConsumerMetrics:
    """One consumer's children, bound when its worker starts."""

    outcomes: Mapping[str, Counter]
    handle_seconds: Histogram
    lag_seconds: Histogram
    in_flight: Gauge
    paused: Gauge
    breaker_state: Gauge
    breaker_transitions: Mapping[str, Counter]

    def record(self, outcome: Outcome) -> None:
        """Count one settled delivery: its outcome, its handler time, and on success the lag
        since the ingress received the callback (the envelope's ``received_at``)."""
        self.outcomes[outcome.kind].inc()
        if outcome.timed_out:
            self.outcomes["timed_out"].inc()
        if outcome.handler_seconds is not None:
            self.handle_seconds.observe(outcome.handler_seconds)
        event = outcome.event
        if outcome.kind == "handled" and event is not None and event.envelope is not None:
            lag = time.time() - event.envelope.received_at.timestamp()
            self.lag_seconds.observe(max(0.0, lag))


class WorkerMetrics:
    """The consumer families in ``metrics``; :meth:`consumer` binds one consumer's children."""

    def __init__(self, metrics: Metrics) -> None:
        self._events = metrics.counter(
            "callback_fanout_consumer_events_total",
            "Events a consumer took, by outcome: handled, retried, parked (dead queue), "
            "duplicate (dropped by dedupe), timed_out (also counted as retried or parked), "
            "filtered (acked unhandled: its filter refused it).",
            ("consumer", "outcome"),
        )
        self._handle = metrics.histogram(
            "callback_fanout_consumer_handle_seconds",
            "Seconds a consumer's handler ran (every run, whatever its result).",
            HANDLER_BUCKETS,
            ("consumer",),
        )
        self._lag = metrics.histogram(
            "callback_fanout_consumer_lag_seconds",
            "Seconds from the ingress receiving the callback to the handler's success.",
            LAG_BUCKETS,
            ("consumer",),
        )
        self._in_flight = metrics.gauge(
            "callback_fanout_consumer_in_flight",
            "Events a consumer is handling now, in this worker.",
            ("consumer",),
        )
        self._paused = metrics.gauge(
            "callback_fanout_consumer_paused",
            "1 while a consumer is paused (`consumers pause`), as this worker sees it; else 0.",
            ("consumer",),
        )
        self._breaker_state = metrics.gauge(
            "callback_fanout_consumer_breaker_state",
            "A consumer's circuit breaker in this worker: 0 closed, 1 open, 2 half-open.",
            ("consumer",),
        )
        self._breaker_transitions = metrics.counter(
            "callback_fanout_consumer_breaker_transitions_total",
            "Moves of a consumer's circuit breaker in this worker, by the state moved to.",
            ("consumer", "to"),
        )

    def consumer(self, name: str) -> ConsumerMetrics:
        """The children of consumer ``name``; every outcome appears at 0."""
        return ConsumerMetrics(
            outcomes={o: self._events.labels(name, o) for o in CONSUMER_OUTCOMES},
            handle_seconds=self._handle.labels(name),
            lag_seconds=self._lag.labels(name),
            in_flight=self._in_flight.labels(name),
            paused=self._paused.labels(name),
            breaker_state=self._breaker_state.labels(name),
            breaker_transitions={
                to: self._breaker_transitions.labels(name, to) for to in BREAKER_STATES
            },
        )
