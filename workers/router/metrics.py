"""The router's metrics: bodies routed or parked, events by (catalogued) event name, tag and
state, events per confirmed message, parse time, the sender's own delay. Children are bound
here, once."""

from __future__ import annotations

from shared.callbacks.catalogue import OTHER, TAGS, known_words
from shared.callbacks.events import CallbackEvent
from shared.metrics import (
    BATCH_BUCKETS,
    PARSE_BUCKETS,
    Counter,
    CounterFamily,
    Histogram,
    HistogramFamily,
    Metrics,
)

__all__ = ["SENDER_DELAY_BUCKETS", "RouterMetrics", "sender_delay"]

#: Seconds from a job's end (the vendor's clock) to the ingress's receive time: 5 s to 1 day
#: (600: the late-sender alert's threshold). Few buckets: every tag of the catalogue has them.
SENDER_DELAY_BUCKETS = (5, 30, 60, 300, 600, 900, 1800, 3600, 21600, 86400)


def sender_delay(event: CallbackEvent) -> float | None:
    """Seconds from the job's ``end_time`` (the vendor's clock) to the ingress's receive time
    (ours); None when the event has no end time or no envelope. Negative when the clocks
    disagree by more than the delay (skew)."""
    envelope = event.envelope
    if event.end_time is None or envelope is None:
        return None
    return (envelope.received_at - event.end_time).total_seconds()


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

        self._sender_delay: HistogramFamily = metrics.histogram(
            "callback_fanout_sender_delay_seconds",
            "Seconds from a job's EndTime (the vendor's clock) to the ingress's receive time "
            "(ours), by the job's tag (`other` outside the vendor's catalogue): how late the "
            "vendor calls back. Negative delays (clock skew) are not observed here but "
            "counted in callback_fanout_sender_delay_negative_total.",
            SENDER_DELAY_BUCKETS,
            ("tag",),
        )
        self._sender_negative: CounterFamily = metrics.counter(
            "callback_fanout_sender_delay_negative_total",
            "Events whose job ended after the ingress received them by the vendor's and our "
            "clocks (clock skew), by tag; left out of callback_fanout_sender_delay_seconds.",
            ("tag",),
        )
        # Bound at start for every tag of the catalogue (a closed set) and `other`: a tag's
        # first delays count in rate() as the later ones do, and its skew reads 0, not nothing.
        self._delay_children: dict[str, tuple[Histogram, Counter]] = {
            tag: (self._sender_delay.labels(tag), self._sender_negative.labels(tag))
            for tag in (*sorted(TAGS), OTHER)
        }

    def event_routed(self, routing_key: str, delay: float | None = None) -> None:
        """Count one published event (its labels come from a closed set), and the sender's
        delay of its job (:func:`sender_delay`) when known."""
        words = known_words(routing_key)
        self._events.labels(*words).inc()
        if delay is None:
            return
        observed, negative = self._delay_children[words[1]]
        if delay >= 0:
            observed.observe(delay)
        else:
            negative.inc()
