"""OpenTelemetry traces, optional: whether they are on, and the W3C Trace Context of a message.

Tracing is on in a process when the ``otel`` extra is installed (``pip install
'callback-fanout[otel]'``) and the standard variables ask for it: ``OTEL_TRACES_EXPORTER``
names an exporter other than ``none`` (``otlp``, ``console``), or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and
``OTEL_SDK_DISABLED`` is not ``true``. The SDK reads the rest itself: the service name
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the sampler (``OTEL_TRACES_SAMPLER``,
``OTEL_TRACES_SAMPLER_ARG``), the exporter's endpoint and headers, the batch processor's
delays. :func:`configure` decides once per process; when tracing is off nothing here imports
the SDK, and each place that would make a span checks :data:`STATE.on` (one attribute) or was
built without its tracing.

A context travels as the ``traceparent`` and ``tracestate`` of W3C Trace Context: in a
message's headers (``shared.wire.headers``), in a batch entry's facts, and in an event's
envelope. This module only reads and writes those two strings; the spans are made where the
work is (``ingress.otel``, ``workers.router.otel``, ``workers.runtime.otel``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.wire.headers import TRACE_REPLAY_OF, TRACEPARENT, TRACESTATE

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, Span, Tracer

__all__ = [
    "STATE",
    "configure",
    "context_of",
    "current_ids",
    "enable",
    "inject",
    "link_to",
    "replayed",
    "requested",
    "trace_id_of",
    "trace_link",
    "tracer",
]

#: The instrumentation scope of every span the project makes.
SCOPE = "callback_fanout"


@dataclass(slots=True)
class _State:
    """Whether spans are made in this process, and by which tracer."""

    on: bool = False
    tracer: Tracer | None = None
    provider: TracerProvider | None = None


#: The process's tracing: ``STATE.on`` is the one check a hot path makes.
STATE = _State()


def requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the standard ``OTEL_*`` variables of ``env`` (the process's) ask for traces."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def installed() -> bool:
    """Whether the ``otel`` extra (the SDK and the OTLP/HTTP exporter) is installed."""
    try:
        return importlib.util.find_spec("opentelemetry.sdk.trace") is not None
    except ModuleNotFoundError:
        return False


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on in this process when the ``OTEL_*`` variables ask for it and the
    extra is installed; whether it is on. Called once by each role's command."""
    if STATE.on:
        return True
    if not requested(env) or not installed():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()  # resource and sampler from OTEL_SERVICE_NAME, OTEL_TRACES_*
    for exporter in _exporters(env if env is not None else os.environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # handlers' own spans join the same traces
    enable(provider)
    return True


def _exporters(env: Mapping[str, str]) -> list[Any]:
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[Any] = []
    for name in names:
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif name in ("otlp", ""):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout from OTEL_*
        elif name != "none":
            raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not otlp, console or none")
    return exporters


def enable(provider: TracerProvider | None) -> None:
    """Make spans with ``provider`` from now on (tests: an in-memory exporter's), or stop
    making them (``None``)."""
    if provider is None:
        STATE.on, STATE.tracer, STATE.provider = False, None, None
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        release: str | None = version("callback-fanout")
    except PackageNotFoundError:
        release = None
    STATE.provider = provider
    STATE.tracer = provider.get_tracer(SCOPE, release)
    STATE.on = True


def tracer() -> Tracer:
    """The project's tracer; only while tracing is on."""
    assert STATE.tracer is not None, "tracing is off"
    return STATE.tracer


def context_of(traceparent: object, tracestate: object = None) -> Context | None:
    """The remote context of a ``traceparent`` (and ``tracestate``), or ``None`` when it is
    missing or does not read."""
    if not traceparent:
        return None
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {TRACEPARENT: _text(traceparent)}
    if tracestate:
        carrier[TRACESTATE] = _text(tracestate)
    context = TraceContextTextMapPropagator().extract(carrier)
    return context if get_current_span(context).get_span_context().is_valid else None


def inject(span: Span | None = None) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of ``span``, or of the current span; empty when
    it is not valid."""
    from opentelemetry.trace import get_current_span, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    context = set_span_in_context(span) if span is not None else None
    TraceContextTextMapPropagator().inject(carrier, context)
    if span is None and not get_current_span().get_span_context().is_valid:
        return {}
    return carrier


def link_to(traceparent: object, tracestate: object = None) -> Link | None:
    """A span link to the context of a ``traceparent`` (a replayed message's original)."""
    context = context_of(traceparent, tracestate)
    if context is None:
        return None
    from opentelemetry.trace import Link, get_current_span

    return Link(get_current_span(context).get_span_context())


def current_ids() -> tuple[str, str] | None:
    """The trace id and span id of the current span, in hex, when one is recording."""
    from opentelemetry.trace import get_current_span

    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def replayed(headers: dict[str, Any]) -> dict[str, Any]:
    """The headers of a replayed copy: its ``traceparent`` (and ``tracestate``) become
    ``x-trace-replay-of``, so that the copy starts a trace of its own linked to the one it
    was parked in (whether tracing is on in the replaying process or not)."""
    original = headers.pop(TRACEPARENT, None)
    headers.pop(TRACESTATE, None)
    if original:
        headers[TRACE_REPLAY_OF] = original
    return headers


def trace_id_of(traceparent: object) -> str | None:
    """The trace id (32 lower-case hex digits) of a W3C ``traceparent``, or ``None`` when it
    is missing or not one (no OpenTelemetry needed)."""
    if not traceparent:
        return None
    parts = _text(traceparent).strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    trace_id = parts[1].lower()
    return trace_id if all(c in "0123456789abcdef" for c in trace_id) else None


def trace_link(template: str | None, trace_id: str | None) -> str | None:
    """The tracing UI's page of ``trace_id`` by the ``tracing_ui_url`` setting (a template
    with ``{trace_id}``, e.g. ``https://jaeger.example/trace/{trace_id}``); ``None`` without
    a template or a trace id."""
    if not template or not trace_id:
        return None
    return template.replace("{trace_id}", trace_id)


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
