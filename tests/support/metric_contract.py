"""The metric names issue 12 makes a contract, with their types, and the names the code
registers: what dashboards and alerts may read."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CONTRACT", "registered", "sample_names"]

CONTRACT: dict[str, str] = {
    "callback_fanout_ingress_requests_total": "counter",
    "callback_fanout_ingress_request_seconds": "histogram",
    "callback_fanout_ingress_body_bytes": "histogram",
    "callback_fanout_ingress_batch_bodies": "histogram",
    "callback_fanout_spool_records": "gauge",
    "callback_fanout_spool_bytes": "gauge",
    "callback_fanout_spool_oldest_seconds": "gauge",
    "callback_fanout_router_bodies_total": "counter",
    "callback_fanout_router_events_total": "counter",
    "callback_fanout_router_parse_seconds": "histogram",
    "callback_fanout_router_batch_events": "histogram",
    "callback_fanout_sender_delay_seconds": "histogram",
    "callback_fanout_sender_delay_negative_total": "counter",
    "callback_fanout_consumer_events_total": "counter",
    "callback_fanout_consumer_handle_seconds": "histogram",
    "callback_fanout_consumer_lag_seconds": "histogram",
    "callback_fanout_consumer_in_flight": "gauge",
    "callback_fanout_consumer_paused": "gauge",
    "callback_fanout_consumer_breaker_state": "gauge",
    "callback_fanout_consumer_breaker_transitions_total": "counter",
    "callback_fanout_broker_connected": "gauge",
    "callback_fanout_broker_blocked": "gauge",
}


def registered() -> dict[str, str]:
    """Every ``callback_fanout_*`` family the ingress, router and worker register, with its
    type (a counter by its ``_total`` name)."""
    from ingress.metrics import IngressMetrics
    from shared.metrics import Metrics
    from workers.router.metrics import RouterMetrics
    from workers.runtime.metrics import WorkerMetrics

    metrics = Metrics()
    IngressMetrics(metrics)
    RouterMetrics(metrics)
    WorkerMetrics(metrics)
    return {
        family.name + ("_total" if family.type == "counter" else ""): family.type
        for family in metrics.registry.collect()
        if family.name.startswith("callback_fanout_")
    }


def sample_names(families: Mapping[str, str]) -> set[str]:
    """The sample names a scrape shows for these metric families (a histogram's ``_bucket``,
    ``_sum`` and ``_count``)."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count")}
    return {
        name + suffix for name, kind in families.items() for suffix in suffixes.get(kind, ("",))
    }
