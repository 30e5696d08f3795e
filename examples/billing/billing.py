"""Results of the production bucket's jobs to a billing service that must not be flooded:
a consumer that holds its destination.

``filter`` takes only the events it names (checked against the event model when the module
is loaded; the others are acked and counted ``filtered``, never handled); ``rate_limit``
lets at most 20 events a second reach the handler (across every worker replica when a Redis
URL is set); ``breaker`` stops taking events for 60 s after 10 failures in a row, so a
billing service that is down is not sent every event's retries while it recovers.
"""

from __future__ import annotations

from workers import Breaker, CallbackEvent, Delivery, consumer


@consumer(
    name="billing",
    routes=["TaskFinish.#"],
    filter={"input.bucket_id": "media-prod-1250000000", "code": ["Success", "0"]},
    rate_limit=20,
    breaker=Breaker(failures=10, cool_down=60),
)
async def billing(event: CallbackEvent, delivery: Delivery) -> None:
    delivery.log.info("billed", job_id=event.job_id, tag=event.tag)
    await charge(event.job_id, event.tag)


async def charge(job_id: str | None, tag: str) -> None:
    """Your code: tell the billing service the job is done (raise to retry)."""
