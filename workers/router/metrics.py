"""The router's metrics: bodies routed or parked, events by (catalogued) event name, tag and
state, events per confirmed message, parse time. Children are bound here, once."""

from __future__ import annotations

from shared.callbacks.catalogue import known_words
from shared.metrics import BATCH_BUCKETS, PARSE_BUCKETS, Counter, CounterFamily, Histogram, Metrics

__all__ = ["RouterMetrics"]


class RouterMetrics:
    """The router's families in ``metrics``."""

    def __init__(self, metrics: Metrics) -> None:
        bodies = metrics.counter(
            "callback_fanout_router_bodies_total",
            "Raw bodies the router took, by outcome: routed (its events published) or "
            "parked (in the unparsed queue).",
            ("outcome",),
        )
        self.routed: Counter = bodies.labels("routed")
        self.parked: Counter = bodies.labels("parked")
        self._events: CounterFamily = metrics.counter(
            "callback_fanout_router_events_total",
            "Events published by the router, by the words of their routing key; a word "
            "outside the vendor's catalogue counts as `other`.",
            ("event_name", "tag", "state"),
        )
        self.batch_events: Histogram = metrics.histogram(
            "callback_fanout_router_batch_events",
            "Events per message confirmed by the broker (how much the router's group commit "
            "coalesces).",
            BATCH_BUCKETS,
        ).labels()
        self.parse_seconds: Histogram = metrics.histogram(
            "callback_fanout_router_parse_seconds",
            "Seconds to parse one raw body (whether it parses or not).",
            PARSE_BUCKETS,
        ).labels()

    def event_routed(self, routing_key: str) -> None:
        """Count one published event (its labels come from a closed set)."""
        self._events.labels(*known_words(routing_key)).inc()
