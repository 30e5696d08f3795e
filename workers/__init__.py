"""Routers and consumer workers, and the one import path for writing consumers.

Everything a consumer author needs comes from here::

    from workers import CallbackEvent, Consumer, Delivery, GiveUp, Retry, consumer
    from workers import SnapshotOperation  # any typed operation or moderation result

    @consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"], concurrency=16)
    async def handle(event: CallbackEvent[SnapshotOperation], delivery: Delivery) -> None:
        ...  # event.operation is a SnapshotOperation; delivery.attempt, delivery.log, ...

and ``Middleware`` (with ``CallNext``) for what runs around every handler of a worker.

What lives here: the author API at the top (``consumer``, ``delivery``, ``middleware``;
consumer loading in ``loader``, and ``configured`` for the configuration file), the router
(``router/``), the consumer runtime (``runtime/``: the worker, handling, retry, dedupe,
acks), the built-in consumers (``builtin/``, by name in ``builtin.registry``) and the test
kit for consumer authors (``testing/``). Import direction: ``workers`` imports ``shared``
(the callback model and the infrastructure), never ``ingress``; ``shared`` never imports
``workers``.
"""

from shared.callbacks import moderation as _moderation
from shared.callbacks import operations as _operations
from shared.callbacks.events import CallbackEvent, Envelope, EventFamily, Operation
from shared.callbacks.moderation import *  # noqa: F403
from shared.callbacks.operations import *  # noqa: F403
from shared.errors import GiveUp, Retry
from workers.consumer import Breaker, Consumer, ConsumerSpec, consumer
from workers.delivery import Delivery
from workers.middleware import CallNext, Middleware

__all__ = [
    "Breaker",
    "CallNext",
    "CallbackEvent",
    "Consumer",
    "ConsumerSpec",
    "Delivery",
    "Envelope",
    "EventFamily",
    "GiveUp",
    "Middleware",
    "Operation",
    "Retry",
    "consumer",
]
__all__ += _operations.__all__
__all__ += _moderation.__all__
