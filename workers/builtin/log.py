"""The ``log`` consumer: one structured line per event."""

from __future__ import annotations

import pydantic

from shared.logs import get_logger
from workers import CallbackEvent, consumer
from workers.consumer import ConsumerSpec, LoadedConsumer

__all__ = ["Options", "build", "log_consumer"]

log = get_logger("consumer.log")


class Options(pydantic.BaseModel):
    """The ``log`` built-in takes no options."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


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


def build(spec: ConsumerSpec, options: Options) -> LoadedConsumer:
    """A ``log`` consumer under the name, routes and policy of ``spec``."""
    del options  # nothing to configure
    return LoadedConsumer.from_handler(spec, log_consumer, f"built-in log as {spec.name!r}")
