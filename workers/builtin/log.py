"""The ``log`` consumer: one structured line per event."""

from __future__ import annotations

from shared.logs import get_logger
from workers import CallbackEvent, consumer

__all__ = ["log_consumer"]

log = get_logger("consumer.log")


@consumer(name="log", routes=["#"])
async def log_consumer(event: CallbackEvent) -> None:
    """Log the event's identity and outcome (never its body)."""
    log.info(
        "event",
        routing_key=event.routing_key,
        job_id=event.job_id,
        state=event.state,
        code=event.code,
        idempotency_key=event.idempotency_key,
        request_id=event.envelope.request_id if event.envelope else None,
    )
