"""A thumbnail of every image a Snapshot job wrote: a consumer of one kind of event.

The annotation ``CallbackEvent[SnapshotOperation]`` is the contract: the type checker knows
that ``event.operation`` is a ``SnapshotOperation``, and the runtime parks, without a retry,
an event of another kind that reaches the consumer. The second parameter, the ``Delivery``,
tells which try this is and logs with the delivery's ids bound.
"""

from __future__ import annotations

from workers import CallbackEvent, Delivery, GiveUp, SnapshotOperation, consumer


@consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"], concurrency=16, max_attempts=5)
async def thumbnails(event: CallbackEvent[SnapshotOperation], delivery: Delivery) -> None:
    if event.state != "Success":
        raise GiveUp(f"snapshot failed: {event.code} {event.message}")  # park now, no retry
    result = event.operation.media_result
    written = result.output_file if result is not None else None
    if written is None or written.bucket is None:
        raise GiveUp("the job reports no images")
    for name in written.object_name:
        key = f"{written.object_prefix or ''}{name}"
        delivery.log.info("thumbnail", bucket=written.bucket, key=key)
        # raise anything to retry later with backoff; Retry(delay=60) to choose the step
        await make_thumbnail(written.bucket, key)


async def make_thumbnail(bucket: str, key: str) -> None:
    """Your code: read the image, scale it down, write the thumbnail beside it."""
