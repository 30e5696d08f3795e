"""The model of the vendor's callbacks and its parser: pure code, no I/O.

One callback body (XML or JSON, in any of the shapes the vendor sends) becomes a list of
:class:`CallbackEvent`, one per job, through :func:`parse_callback`. This package imports
nothing of the project but :mod:`shared.errors`, and nothing of aiohttp, aio-pika, the settings
or logging, so it is usable on its own::

    from shared.callbacks import parse_callback, CallbackEvent

    for event in parse_callback(body, content_type="application/xml"):
        print(event.routing_key, event.job_id, event.state)

Modules, from the bottom up: ``vendor`` (the vendor's scalar conventions), ``objects``,
``workflow``, ``operations`` (one typed result per task type), ``moderation``, ``routing``
(routing keys and idempotency keys), ``events`` (the event and its envelope), ``catalogue``
(the vendor's known names, for closed sets such as metric labels), ``xmlsafe`` and
``jsonrepair`` (the two readers), ``parser``.
"""

from shared.callbacks.events import (
    OPERATION_MODELS,
    CallbackEvent,
    Envelope,
    EventFamily,
    Operation,
)
from shared.callbacks.moderation import ModerationResult, Verdict
from shared.callbacks.operations import BaseOperation, GenericOperation
from shared.callbacks.parser import DEFAULT_MAX_BYTES, parse_callback
from shared.callbacks.routing import routing_key
from shared.errors import ParseError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "OPERATION_MODELS",
    "BaseOperation",
    "CallbackEvent",
    "Envelope",
    "EventFamily",
    "GenericOperation",
    "ModerationResult",
    "Operation",
    "ParseError",
    "Verdict",
    "parse_callback",
    "routing_key",
]
