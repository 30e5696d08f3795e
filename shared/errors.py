"""The project's one exception tree.

Everything callback-fanout raises on purpose derives from :class:`FanoutError`. Two of them
are control flow that a consumer may raise from its handler: :class:`Retry` (try again later)
and :class:`GiveUp` (do not retry: park the event now).
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "ConsumerDeclarationError",
    "FanoutError",
    "GiveUp",
    "ParseError",
    "Retry",
]


class FanoutError(Exception):
    """Base of every error callback-fanout raises on purpose."""


class ConfigError(FanoutError):
    """A setting or a command-line value is invalid."""


class ConsumerDeclarationError(ConfigError):
    """A consumer's declaration (name, routes, policy) is invalid or cannot be loaded."""


class BrokerUnavailable(FanoutError):
    """RabbitMQ did not accept or confirm a message in time."""


class ParseError(FanoutError):
    """A callback body cannot be turned into events.

    ``reason`` says what is wrong; ``location`` says where (``line 3, column 7`` or a path
    such as ``JobsDetail[0].Operation``) when it is known.
    """

    def __init__(self, reason: str, location: str | None = None) -> None:
        self.reason = reason
        self.location = location
        super().__init__(f"{reason} (at {location})" if location else reason)


class Retry(FanoutError):
    """Raised by a consumer: retry this event later (``delay`` seconds, or the policy's)."""

    def __init__(self, reason: str = "retry requested", delay: float | None = None) -> None:
        self.delay = delay
        super().__init__(reason)


class GiveUp(FanoutError):
    """Raised by a consumer: do not retry; move the event to the dead queue now."""
