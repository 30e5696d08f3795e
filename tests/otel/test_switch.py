"""When tracing is on, and the small pieces: the UI link, a replayed copy's headers, log ids."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import otel
from shared.logs import add_trace_ids
from shared.wire.headers import TRACE_REPLAY_OF, TRACEPARENT, TRACESTATE

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "false"}, True),
    ],
)
def test_traces_are_on_only_when_the_otel_variables_ask_for_them(
    env: dict[str, str], on: bool
) -> None:
    assert otel.requested(env) is on


def test_configure_leaves_tracing_off_without_the_variables() -> None:
    assert otel.configure({}) is False
    assert otel.STATE.on is False


def test_the_ui_link_fills_the_template_with_the_trace_id() -> None:
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    assert (
        otel.trace_link("https://jaeger.example/trace/{trace_id}", trace_id)
        == f"https://jaeger.example/trace/{trace_id}"
    )
    assert otel.trace_link(None, trace_id) is None
    assert otel.trace_link("https://jaeger.example/trace/{trace_id}", "") is None


@pytest.mark.parametrize(
    ("traceparent", "trace_id"),
    [
        (PARENT, "0af7651916cd43dd8448eb211c80319c"),
        (PARENT.upper().encode(), "0af7651916cd43dd8448eb211c80319c"),  # as a header's bytes
        (None, None),
        ("", None),
        ("00-0af7651916cd43dd-b7ad6b7169203331-01", None),  # too short
        ("00-" + "0" * 32 + "-b7ad6b7169203331-01", None),  # the invalid all-zero id
        ("00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01", None),  # not hex
        ("nonsense", None),
    ],
)
def test_the_trace_id_of_a_traceparent_needs_no_opentelemetry(
    traceparent: object, trace_id: str | None
) -> None:
    assert otel.trace_id_of(traceparent) == trace_id


def test_a_replayed_copy_carries_its_original_context_as_a_link_not_a_parent() -> None:
    headers: dict[str, object] = {TRACEPARENT: PARENT, TRACESTATE: "k=v", "x-request-id": "r"}
    assert otel.replayed(headers) == {TRACE_REPLAY_OF: PARENT, "x-request-id": "r"}
    assert otel.replayed({"x-request-id": "r"}) == {"x-request-id": "r"}


def test_a_context_that_does_not_read_is_none() -> None:
    assert otel.context_of(None) is None
    assert otel.context_of("not a traceparent") is None
    assert otel.context_of(PARENT.encode()) is not None


def test_log_lines_carry_the_ids_of_the_active_span_only(spans: InMemorySpanExporter) -> None:
    assert add_trace_ids(None, "info", {"event": "outside"}) == {"event": "outside"}
    with otel.tracer().start_as_current_span("inside") as span:
        line = add_trace_ids(None, "info", {"event": "inside"})
    context = span.get_span_context()
    assert line == {
        "event": "inside",
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }


def test_with_tracing_off_log_lines_are_left_alone() -> None:
    assert otel.STATE.on is False
    assert add_trace_ids(None, "info", {"event": "e"}) == {"event": "e"}
