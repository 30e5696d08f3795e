"""The router role: raw bodies in, one event per job out, by routing key.

``service`` runs the role (consume ``<prefix>.raw``, parse, publish, park, ack);
``rawbodies`` reads a raw delivery as the bodies it carries (one, or a group-commit batch);
``outbox`` groups the events that share a routing key into one confirmed message.
"""

from workers.router.service import RouterService

__all__ = ["RouterService"]
