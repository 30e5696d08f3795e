"""The consumer runtime: a consumer's delivery from its queue to ack, retry or park.

``worker`` runs the role (one :class:`ConsumerRunner` per consumer, each on its own channel,
prefetch and concurrency); ``handling`` runs the handler of one event and decides its
outcome; ``retry`` (the policy and its delays), ``dedupe`` (the duplicate filter) and
``acks`` (acknowledging deliveries in groups) are its parts.
"""

from workers.runtime.worker import ConsumerRunner, WorkerService

__all__ = ["ConsumerRunner", "WorkerService"]
