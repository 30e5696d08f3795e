"""The same spans over real OTLP/HTTP: a ``run`` process configured by the OTEL_* variables
alone exports them to a local receiver that decodes the protocol's messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from shared.settings import Settings
from tests.otel.test_span_tree import SNAPSHOT
from tests.support.broker import BrokerClient
from tests.support.http import status_of
from tests.support.processes import RoleProcess, free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.broker


class Receiver:
    """An OTLP/HTTP trace receiver: ``POST /v1/traces`` of protobuf, spans kept in order."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.services: set[str] = set()
        self.content_types: set[str] = set()

    async def traces(self, request: web.Request) -> web.Response:
        self.content_types.add(request.content_type)
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    self.services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    received = Receiver()
    app = web.Application()
    app.add_routes([web.post("/v1/traces", received.traces)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield received, port
    await runner.cleanup()


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def outline(spans: list[Span]) -> list[str]:
    """The spans as ``tests.otel.conftest.tree`` outlines them, from their protocol form."""
    ids = {span.span_id for span in spans}
    children: dict[bytes, list[Span]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else b""
        children.setdefault(parent, []).append(span)
    lines: list[str] = []
    shown = (
        "callback_fanout.consumer",
        "callback_fanout.attempt",
        "callback_fanout.outcome",
        "error.type",
    )

    def walk(parent: bytes, depth: int) -> None:
        for span in sorted(
            children.get(parent, []), key=lambda s: (s.name, s.start_time_unix_nano)
        ):
            attributes = {a.key: _value(a.value) for a in span.attributes}
            told = " ".join(f"{k.split('.')[-1]}={attributes[k]}" for k in shown if k in attributes)
            kind = Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_")
            lines.append("  " * depth + f"{span.name} [{kind}]" + (f" {told}" if told else ""))
            walk(span.span_id, depth + 1)

    walk(b"", 0)
    return lines


async def test_a_run_process_exports_the_callbacks_spans_over_otlp_http(
    settings: Settings,
    broker: BrokerClient,
    receiver: tuple[Receiver, int],
    tmp_path: Path,
) -> None:
    received, port = receiver
    broker.track(["flaky", "steady"], settings.retry_delays)
    public, admin = free_port(), free_port()
    process = await RoleProcess.start(
        "run", settings, "--host", "127.0.0.1", "--port", str(public), "--health-port", str(admin),
        "--spool-dir", str(tmp_path / "spool"),
        "--consumer", "tests.otel.consumers:flaky", "--consumer", "tests.otel.consumers:steady",
        env={
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_SERVICE_NAME": "callback-fanout-under-test",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
        log=tmp_path / "run.log",
    )  # fmt: skip
    prefix = settings.prefix
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                return await status_of(http, f"http://127.0.0.1:{admin}/readyz") == 200

            await eventually(ready, timeout=30, interval=0.1)
            async with http.post(
                f"http://127.0.0.1:{public}/callbacks",
                data=SNAPSHOT.read_bytes(),
                headers={"Content-Type": "application/xml"},
            ) as answer:
                assert answer.status == 200
        await eventually(lambda: len(received.spans) >= 7, timeout=30)
    finally:
        await process.close()
    assert outline(received.spans) == [
        "POST /callbacks [SERVER] outcome=accepted",
        f"  publish {prefix}.raw [PRODUCER]",
        f"    process {prefix}.raw [CONSUMER]",
        f"      publish {prefix}.events [PRODUCER]",
        f"        process {prefix}.consumer.flaky [CONSUMER] consumer=flaky attempt=1"
        " outcome=retried type=RuntimeError",
        f"          process {prefix}.consumer.flaky [CONSUMER] consumer=flaky attempt=2"
        " outcome=handled",
        f"        process {prefix}.consumer.steady [CONSUMER] consumer=steady attempt=1"
        " outcome=handled",
    ]
    assert len({span.trace_id for span in received.spans}) == 1
    assert received.services == {"callback-fanout-under-test"}
    assert received.content_types == {"application/x-protobuf"}
