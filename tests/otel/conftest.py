"""Tracing on, in this process: an SDK provider whose spans the test reads back."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import otel


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test (every span sampled), off again after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.enable(provider)
    yield exporter
    otel.enable(None)
    provider.shutdown()


def tree(finished: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> list[str]:
    """The spans as an indented outline: each under its parent, siblings by name then start;
    a span's line is its name, kind and the attributes that tell it apart."""
    by_id = {s.context.span_id: s for s in finished}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in finished:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in by_id else None, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s.name, s.start_time or 0)):
            lines.append("  " * depth + describe(span))
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


#: The attributes a line of :func:`tree` shows, when the span has them.
SHOWN = (
    "callback_fanout.consumer",
    "callback_fanout.attempt",
    "callback_fanout.outcome",
    "error.type",
)


def attrs(span: ReadableSpan) -> Mapping[str, object]:
    """The span's attributes (none: empty)."""
    return span.attributes or {}


def describe(span: ReadableSpan) -> str:
    attributes = attrs(span)
    shown = " ".join(f"{k.split('.')[-1]}={attributes[k]!s}" for k in SHOWN if k in attributes)
    kind = span.kind.name
    return f"{span.name} [{kind}]" + (f" {shown}" if shown else "")
