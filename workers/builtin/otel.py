"""The built-ins' own spans, when tracing is on (``shared.otel``): children of the attempt.

``forward``'s request is an HTTP client span (``POST``, its URL without credentials or
query, the answer's status) whose context the request carries on (``traceparent``), so the
internal endpoint's own spans join the trace; ``archive``'s batch insert is a database
client span (``INSERT <table>``, the rows in the batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared import otel

__all__ = ["forward_span", "insert_span"]


@contextmanager
def forward_span(url: str, headers: dict[str, str]) -> Iterator[Span]:
    """The client span of one forward request; ``headers`` get its trace context."""
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    full = f"{scheme}://{parts.hostname or ''}:{port}{parts.path or '/'}"
    with otel.tracer().start_as_current_span(
        "POST",
        kind=SpanKind.CLIENT,
        attributes={
            "http.request.method": "POST",
            "url.full": full,  # no credentials, no query (it may hold a secret)
            "server.address": parts.hostname or "",
            "server.port": port,
        },
        record_exception=False,
        set_status_on_exception=False,  # the reason may quote the answer: only its type
    ) as span:
        headers.update(otel.inject(span))
        try:
            yield span
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR))
            raise


@contextmanager
def insert_span(table: str, rows: int) -> Iterator[Span]:
    """The client span of one batch insert into the archive's ``table``."""
    with otel.tracer().start_as_current_span(
        f"INSERT {table}",
        kind=SpanKind.CLIENT,
        attributes={
            "db.system.name": "postgresql",
            "db.operation.name": "INSERT",
            "db.collection.name": table,
            "db.operation.batch.size": rows,
        },
    ) as span:
        yield span
