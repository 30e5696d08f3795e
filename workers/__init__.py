"""Routers and consumer workers, and the one import path for writing consumers.

Everything a consumer author needs comes from here::

    from workers import CallbackEvent, Consumer, GiveUp, Retry, consumer
    from workers import TranscodeOperation  # any typed operation or moderation result

    @consumer(name="thumbnails", routes=["TaskFinish.Snapshot.*"], concurrency=16)
    async def handle(event: CallbackEvent) -> None:
        ...

What lives here: the consumer contract (``consumer``), the router (``router``), the consumer
runtime (``runtime``, ``handling``, ``retry``, ``parking``, ``dedupe``), consumer loading
(``loader``, and ``configured`` for the configuration file), the built-in consumers
(``builtin/``, by name in ``builtin.registry``), the test kit for consumer authors
(``testing``) and the AsyncAPI document of the events exchange (``asyncapi``). Import
direction: ``workers`` imports ``shared`` (the callback model and the infrastructure), never
``ingress``; ``shared`` never imports ``workers``.
"""

from shared.callbacks import moderation as _moderation
from shared.callbacks import operations as _operations
from shared.callbacks.events import CallbackEvent, Envelope, EventFamily, Operation
from shared.callbacks.moderation import *  # noqa: F403
from shared.callbacks.operations import *  # noqa: F403
from shared.errors import GiveUp, Retry
from workers.consumer import Consumer, ConsumerSpec, consumer

__all__ = [
    "CallbackEvent",
    "Consumer",
    "ConsumerSpec",
    "Envelope",
    "EventFamily",
    "GiveUp",
    "Operation",
    "Retry",
    "consumer",
]
__all__ += _operations.__all__
__all__ += _moderation.__all__
