"""The HTTP ingress: make each callback body durable in RabbitMQ, answer at once.

What lives here: the aiohttp app and its request path (``app``, ``body``, ``guard``, ``auth``,
``clientnet``, ``ratelimit``, ``server``), the group-commit publisher (``publisher``,
``publishing``) and the local spool (``spool``, ``spoolfile``). The ingress never parses a
body. Import direction: ``ingress`` imports the infrastructure of ``shared`` (never
``shared.callbacks``, never ``workers``); nothing in ``shared`` imports ``ingress``.
"""

from ingress.app import create_app
from ingress.groupcommit import AmqpPublisher, Publisher, RawMeta

__all__ = ["AmqpPublisher", "Publisher", "RawMeta", "create_app"]
