"""Events for tests: through the real parser, as the router would publish them."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.callbacks.events import CallbackEvent, Envelope
from shared.callbacks.parser import parse_callback

__all__ = ["make_event", "parse_body"]

_requests = itertools.count(1)


def parse_body(body: bytes, *, content_type: str | None = None) -> list[CallbackEvent]:
    """The events the router makes of ``body``, with the envelope it would give them.

    Raises :class:`~shared.errors.ParseError` for a body the router would park as unparsed.
    """
    envelope = Envelope(
        request_id=f"test-{next(_requests)}",
        received_at=datetime.now(UTC),
        content_type=content_type,
        raw_body=body,
    )
    return parse_callback(body, content_type=content_type, envelope=envelope)


def _code_for(state: str) -> str:
    return "Success" if state == "Success" else "InternalError"


def make_event(
    tag: str = "Transcode",
    state: str = "Success",
    *,
    code: str | None = None,
    message: str | None = None,
    job_id: str | None = None,
    operation: Mapping[str, Any] | None = None,
    input: Mapping[str, Any] | None = None,
    **job: Any,
) -> CallbackEvent:
    """A valid task event (``TaskFinish.<tag>.<state>``) for any task type and state.

    It is built as the vendor would send it (a JSON callback, the vendor's key names) and
    parsed by the real parser, so it is what a consumer receives. ``code`` defaults to
    ``Success`` for a successful state and ``InternalError`` otherwise; ``job_id`` to a new
    unique id (so two events differ, and their idempotency keys too). ``operation`` and
    ``input`` are the vendor's ``Operation`` and ``Input`` objects (``{"MediaResult": ...}``);
    any other keyword is another key of the job (``QueueId="p1"``).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    detail: dict[str, Any] = {
        "Code": code
        if code is not None
        else ("Success" if state == "Success" else "InternalError"),
        "Message": message if message is not None else ("" if state == "Success" else "failed"),
        "JobId": job_id or "j" + uuid.uuid4().hex,
        "State": state,
        "Tag": tag,
        "QueueId": "p" + "0" * 32,
        "CreationTime": (now - timedelta(seconds=2)).isoformat(),
        "StartTime": (now - timedelta(seconds=1)).isoformat(),
        "EndTime": now.isoformat(),
        "Input": dict(input)
        if input is not None
        else {
            "BucketId": "examplebucket-1250000000",
            "Object": "input/example",
            "Region": "ap-chongqing",
        },
        "Operation": dict(operation) if operation is not None else {},
        **job,
    }
    body = json.dumps({"EventName": "TaskFinish", "JobsDetail": [detail]}).encode()
    [event] = parse_body(body, content_type="application/json")
    return event
