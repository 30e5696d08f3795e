"""The ingress's spans, when tracing is on (``shared.otel``): the request, and its publish.

``POST /callbacks`` is a server span (HTTP semantic conventions) with the outcome the
metrics count, the body's size, and whether the body was confirmed by the broker or spooled.
Its child, ``publish <prefix>.raw``, is a producer span (messaging semantic conventions)
from the moment the body joins the group commit until the broker confirms the message that
carries it (or the spool holds it); its context is the one the body carries to the router,
in its lone message's headers or its batch entry (``RequestFacts.traceparent``).

:func:`traced_receiver` is the only door: ``create_app`` calls it when tracing is on, and
the app is built without it otherwise.
"""

from __future__ import annotations

from aiohttp import web
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ingress.app import CallbackReceiver, Handler
from ingress.groupcommit import Durable, Publisher, RawMeta
from ingress.metrics import Outcome
from shared import otel
from shared.topology import Topology

__all__ = ["TracedPublisher", "traced_receiver"]

#: The outcome of an answer that is not a durable body, by its status (as the metrics say).
_REFUSED: dict[int, Outcome] = {
    400: "bad_request",
    403: "forbidden",
    404: "unauthorized",
    408: "timeout",
    413: "too_large",
    415: "unsupported_encoding",
    429: "rate_limited",
    503: "unavailable",
}
#: Where a durable body is: the ``Durable`` the publisher returns, as the span says it.
_DURABLE = {"accepted": "confirmed", "spooled": "spooled"}


class TracedPublisher:
    """A publisher whose every body is published under a producer span of its own."""

    def __init__(self, inner: Publisher, queue: str) -> None:
        self._inner = inner
        self._queue = queue
        self._name = f"publish {queue}"

    @property
    def ready(self) -> bool:
        return self._inner.ready

    async def publish(self, body: bytes, meta: RawMeta) -> Durable:
        request = trace.get_current_span()
        request.set_attribute("http.request.body.size", len(body))
        with otel.tracer().start_as_current_span(
            self._name,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "send",
                "messaging.operation.name": "publish",
                "messaging.destination.name": self._queue,
                "messaging.rabbitmq.destination.routing_key": self._queue,
                "messaging.message.id": meta.request_id,
                "messaging.message.body.size": len(body),
            },
        ) as span:
            carried = otel.inject(span)
            traced = meta._replace(
                traceparent=carried.get("traceparent"), tracestate=carried.get("tracestate")
            )
            durable = await self._inner.publish(body, traced)
            span.set_attribute("callback_fanout.durable", _DURABLE[durable])
            request.set_attribute("callback_fanout.durable", _DURABLE[durable])
            request.set_attribute("callback_fanout.outcome", durable)
            return durable


def traced_receiver(receiver: CallbackReceiver, topology: Topology) -> Handler:
    """``receiver.receive`` under a server span per request, and the receiver's publisher
    under producer spans (replaced by a :class:`TracedPublisher`)."""
    receiver.publisher = TracedPublisher(receiver.publisher, topology.raw)
    receive = receiver.receive

    async def traced(request: web.Request) -> web.StreamResponse:
        route = request.match_info.route.resource
        template = route.canonical if route is not None else request.path
        with otel.tracer().start_as_current_span(
            f"{request.method} {template}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": request.method,
                "http.route": template,
                "url.path": template,  # never the path itself: it may hold a token
                "url.scheme": request.scheme,
                "network.protocol.version": f"{request.version.major}.{request.version.minor}",
                "server.port": request.url.port or 0,
            },
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                answer = await receive(request)
            except web.HTTPException as refused:
                _answered(span, refused.status)
                raise
            _answered(span, answer.status)
            return answer

    return traced


def _answered(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 300:  # a durable body's outcome is the publisher's (accepted, spooled)
        span.set_attribute("callback_fanout.outcome", _REFUSED.get(status, "bad_request"))
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
