"""The facts of one delivery, beside the event: a handler's optional second parameter.

```python
@consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"])
async def thumbnails(event: CallbackEvent[SnapshotOperation], delivery: Delivery) -> None:
    delivery.log.info("making thumbnails", last_try=delivery.last_attempt)
```

The runtime makes one :class:`Delivery` per try of an event and hands the same one to the
handler and to every middleware (:mod:`workers.middleware`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from structlog.typing import FilteringBoundLogger

from shared.callbacks.events import CallbackEvent
from shared.logs import get_logger

__all__ = ["Delivery"]


@dataclass(slots=True)
class Delivery:
    """One try of one event by one consumer (read it, do not change it: the runtime made it).

    ``attempt`` counts from 1 (the first delivery) to ``max_attempts`` (the last before the
    event is parked). ``request_id`` is the ingress's id for the HTTP request that carried
    the callback (its ``X-Request-Id`` answer header), ``received_at`` when the ingress took
    it; both are empty for an event without an envelope.
    """

    consumer: str
    attempt: int
    max_attempts: int
    routing_key: str
    idempotency_key: str
    request_id: str
    received_at: datetime | None
    _log: FilteringBoundLogger | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, event: CallbackEvent, consumer: str, attempt: int, max_attempts: int) -> Delivery:
        """The delivery of ``event`` to ``consumer`` as its ``attempt``-th try."""
        envelope = event.envelope
        return cls(
            consumer,
            attempt,
            max_attempts,
            event.routing_key,
            event.idempotency_key,
            envelope.request_id if envelope is not None else "",
            envelope.received_at if envelope is not None else None,
        )

    @property
    def last_attempt(self) -> bool:
        """True when a failure now parks the event rather than retrying it."""
        return self.attempt >= self.max_attempts

    @property
    def log(self) -> FilteringBoundLogger:
        """A structlog logger bound with this delivery's facts (made on first use)."""
        if self._log is None:
            self._log = self._bound()
        return self._log

    def _bound(self) -> FilteringBoundLogger:
        return get_logger("consumer").bind(
            consumer=self.consumer,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            routing_key=self.routing_key,
            idempotency_key=self.idempotency_key,
            request_id=self.request_id,
        )
