"""Prometheus metrics: one registry per process (or per role), cheap instruments, bucket sets.

A :class:`Metrics` object is one ``prometheus_client`` registry with the process collectors
(``process_*``, ``python_*``) and ``callback_fanout_broker_connected{role}``; each role adds
its own families to it (``ingress.metrics``, ``workers.router.metrics``,
``workers.runtime.metrics``) and the admin port serves it at ``GET /metrics``
(:func:`render`). ``run`` has one for the whole process; a role run alone, or a role started
by a test, has its own.

The instruments are plain Python numbers, updated from the event loop only, and read by
``prometheus_client`` when ``/metrics`` is scraped (also on the event loop): no lock per
update. ``prometheus_client``'s own ``Counter.inc`` and ``Histogram.observe`` take a lock each
time (about 0.3 and 0.7 µs on the development machine, against 0.04 and 0.12 µs here), which
the ingress, at 70 µs of CPU a request, would feel. Labelled children are made once, when a
role starts, and kept by the code that updates them: nothing is looked up per request.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from shared.settings import Settings

__all__ = [
    "BATCH_BUCKETS",
    "CONTENT_TYPE",
    "HANDLER_BUCKETS",
    "LAG_BUCKETS",
    "PARSE_BUCKETS",
    "REQUEST_BUCKETS",
    "SIZE_BUCKETS",
    "Counter",
    "CounterFamily",
    "Gauge",
    "GaugeFamily",
    "Histogram",
    "HistogramFamily",
    "Metrics",
    "metrics_for",
    "render",
]

#: Seconds from a request's head to its answer: 0.5 ms to 5 s.
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: Seconds to parse one body: 0.1 ms to 1 s.
PARSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1)
#: Seconds a consumer's handler runs: 1 ms to 60 s (the default handler timeout).
HANDLER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Seconds from the ingress's receive time to a handler's success: 10 ms to 1 h.
LAG_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600
)  # fmt: skip
#: Bytes of a body: 256 B to 16 MiB (the largest accepted is 10 MiB by default).
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
#: Bodies in one broker message (group commit): 1 to 256, the most a batch holds.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

#: The ``Content-Type`` of :func:`render`'s text.
CONTENT_TYPE = CONTENT_TYPE_LATEST

Labels = tuple[str, ...]
Child = TypeVar("Child")


class Counter:
    """One counter series. Update it from the event loop only."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Gauge:
    """One gauge series, set by the code, or read from ``function`` at each scrape."""

    __slots__ = ("function", "value")

    def __init__(self, function: Callable[[], float] | None = None) -> None:
        self.value = 0.0
        self.function = function

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def read(self) -> float:
        return float(self.function()) if self.function is not None else self.value


class Histogram:
    """One histogram series: a count per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: value <= bound
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """The ``le`` buckets as Prometheus exposes them, ``+Inf`` last."""
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), float(total)))
        return buckets


class _Family(Generic[Child]):
    """A metric name, its help and label names, and its children by label values."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.children: dict[Labels, Child] = {}

    def labels(self, *values: str) -> Child:
        """The child for ``values`` (made on first use): bind it once, keep it."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self._new_child()
        return child

    def _new_child(self) -> Child:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class CounterFamily(_Family[Counter]):
    def _new_child(self) -> Counter:
        return Counter()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in self.children.items():
            family.add_metric(values, child.value)
        yield family


class GaugeFamily(_Family[Gauge]):
    def _new_child(self) -> Gauge:
        return Gauge()

    def read_from(self, function: Callable[[], float], *values: str) -> None:
        """The child for ``values`` reads ``function`` at each scrape."""
        self.labels(*values).function = function

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in self.children.items():
            family.add_metric(values, child.read())
        yield family


class HistogramFamily(_Family[Histogram]):
    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.bounds = tuple(sorted(float(b) for b in buckets))
        if not self.bounds or len(set(self.bounds)) != len(self.bounds):
            raise ValueError(f"{name}: buckets must be distinct, at least one")

    def _new_child(self) -> Histogram:
        return Histogram(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in self.children.items():
            family.add_metric(values, child.cumulative(), child.sum)
        yield family


class Metrics:
    """One registry: what one ``GET /metrics`` serves.

    Comes with the process collectors, ``callback_fanout_broker_connected{role}`` and
    ``callback_fanout_broker_blocked{role}``; the
    roles add their families with :meth:`counter`, :meth:`gauge` and :meth:`histogram`. A
    name can be added once per registry (``ValueError`` on a second time).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self._broker = self.gauge(
            "callback_fanout_broker_connected",
            "1 while the role is connected to RabbitMQ, else 0.",
            ("role",),
        )
        self._blocked = self.gauge(
            "callback_fanout_broker_blocked",
            "1 while RabbitMQ blocks the role's connection (a memory or disk alarm), else 0.",
            ("role",),
        )

    def counter(
        self, name: str, documentation: str, labelnames: Sequence[str] = ()
    ) -> CounterFamily:
        """A counter family; ``name`` ends in ``_total``."""
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {name}")
        family = CounterFamily(name.removesuffix("_total"), documentation, labelnames)
        self.registry.register(family)
        return family

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> GaugeFamily:
        family = GaugeFamily(name, documentation, labelnames)
        self.registry.register(family)
        return family

    def histogram(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
    ) -> HistogramFamily:
        family = HistogramFamily(name, documentation, labelnames, buckets)
        self.registry.register(family)
        return family

    def broker_connected(self, role: str, connected: Callable[[], bool]) -> None:
        """Export ``connected()`` as ``callback_fanout_broker_connected{role=...}``."""
        self._broker.read_from(lambda: 1.0 if connected() else 0.0, role)

    def broker_blocked(self, role: str, blocked: Callable[[], bool]) -> None:
        """Export ``blocked()`` as ``callback_fanout_broker_blocked{role=...}``."""
        self._blocked.read_from(lambda: 1.0 if blocked() else 0.0, role)


def metrics_for(settings: Settings, given: Metrics | None) -> Metrics | None:
    """Where a role counts: ``given`` (the process's, in ``run``), else a registry of its
    own; None when the ``metrics`` setting is off."""
    if not settings.metrics:
        return None
    return given if given is not None else Metrics()


def render(metrics: Metrics) -> bytes:
    """The registry in Prometheus's text format (:data:`CONTENT_TYPE`)."""
    return generate_latest(metrics.registry)
