"""One callback followed through the system as one trace, span by span (in-memory exporter)."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import StartSystem
from tests.otel.conftest import attrs, tree
from tests.support.system import Recorder
from tests.support.waiting import eventually

SNAPSHOT = Path(__file__).resolve().parents[1] / "fixtures" / "callbacks" / "snapshot-success.xml"
JOB_ID = "j7c1e0b52e4f111eeb0a1525400c7d3e9"


async def test_a_callback_retried_once_then_handled_by_two_consumers_is_one_trace_of_these_spans(
    start_system: StartSystem, spans: InMemorySpanExporter, prefix: str
) -> None:
    flaky = Recorder("flaky", ["TaskFinish.#"], fail_times=1, retry_delays=[0.2])
    steady = Recorder("steady", ["TaskFinish.Snapshot.*"])
    system = await start_system([flaky, steady])
    answer = await system.post(SNAPSHOT.read_bytes())
    assert answer.status == 200
    await eventually(lambda: len(flaky.events) == 1 and len(steady.events) == 1)
    await eventually(lambda: len(spans.get_finished_spans()) == 7)

    finished = spans.get_finished_spans()
    assert tree(finished) == [
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
    assert len({span.context.trace_id for span in finished}) == 1
    named = {(span.name, attrs(span).get("callback_fanout.attempt")): span for span in finished}
    request = named["POST /callbacks", None]
    assert attrs(request) == {
        "http.request.method": "POST",
        "http.route": "/callbacks",
        "url.path": "/callbacks",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "server.port": system.ingress.port if system.ingress else 0,
        "http.request.body.size": len(SNAPSHOT.read_bytes()),
        "http.response.status_code": 200,
        "callback_fanout.outcome": "accepted",
        "callback_fanout.durable": "confirmed",
    }
    request_id = answer.headers["X-Request-Id"]
    published = named[f"publish {prefix}.raw", None]
    assert attrs(published)["messaging.message.id"] == request_id
    assert attrs(published)["messaging.destination.name"] == f"{prefix}.raw"
    parse = named[f"process {prefix}.raw", None]
    assert attrs(parse)["callback_fanout.job_ids"] == (JOB_ID,)
    assert attrs(parse)["callback_fanout.routing_keys"] == ("TaskFinish.Snapshot.Success",)
    assert attrs(parse)["messaging.message.id"] == request_id
    first = named[f"process {prefix}.consumer.flaky", 1]
    assert first.status.status_code is StatusCode.ERROR
    assert attrs(first)["callback_fanout.retry_delay"] == 0.2
    assert attrs(first)["callback_fanout.job_id"] == JOB_ID
    assert named[f"process {prefix}.consumer.flaky", 2].status.status_code is StatusCode.UNSET
    assert [s.kind for s in finished if s.name.startswith("process")] == [SpanKind.CONSUMER] * 4
    for span in finished:  # never the body, nor anything of it
        assert not any(
            isinstance(v, str) and "<Response>" in v for v in (span.attributes or {}).values()
        )
