"""The HTTP ingress: make each callback body durable in RabbitMQ, answer at once."""

from ingress.app import create_app
from ingress.publisher import AmqpPublisher, Publisher, RawMeta

__all__ = ["AmqpPublisher", "Publisher", "RawMeta", "create_app"]
