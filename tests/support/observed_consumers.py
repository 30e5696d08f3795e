"""Consumers for the test that watches a flow through a real Prometheus (run in a worker child
process): ``steady`` handles every OCR event, ``failing`` fails every one until it is parked."""

from __future__ import annotations

from workers import CallbackEvent, consumer

ROUTES = ["TaskFinish.ImageOCR.*"]


@consumer(name="steady", routes=ROUTES)
async def steady(event: CallbackEvent) -> None:
    """Handles the event (nothing to do)."""


@consumer(name="failing", routes=ROUTES, max_attempts=2, retry_delays=[0.2])
async def failing(event: CallbackEvent) -> None:
    raise RuntimeError(f"failing fails on purpose ({event.job_id})")
